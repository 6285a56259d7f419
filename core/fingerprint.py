"""Model fingerprints: which model (and which document settings) produced the vectors in a saved folder.

A fingerprint is recorded in every store manifest, LlamaIndex persist folder and Qdrant collection, and
checked when they are opened again, so vectors from two models never mix silently. Two encoders match
when their weights hash equal and every setting that shapes *document* vectors is equal; the model's
name or folder is informational only (a moved folder with the same weights loads), and query-side
settings (``query_length``, expansion) may differ: they change queries, not what is stored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .errors import ModelMismatchError

logger = logging.getLogger(__name__)

__all__ = ["DOCUMENT_FIELDS", "ModelFingerprint", "check_fingerprint", "hash_weights"]

FINGERPRINT_VERSION = 1

DOCUMENT_FIELDS = (
    "document_prefix",
    "document_prompt",
    "lowercase",
    "document_length",
    "skiplist_words",
    "truncate_dim",
    "long_documents",
    "window_overlap",
)
"""Encoder settings that change document vectors; a mismatch in any of them is a model mismatch."""


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the model behind a set of vectors.

    Args:
        source: the Hub id or local folder the model was loaded from (informational).
        revision: the resolved Hub commit, when loaded from the Hub.
        weights_sha256: sha256 over the backbone and projection tensors (names, shapes, dtypes, bytes).
        dim: output vector width.
        config: the full encoder configuration (:class:`EncoderConfig` as a JSON dict).
    """

    source: str
    weights_sha256: str
    dim: int
    revision: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": FINGERPRINT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> ModelFingerprint:
        """Read a recorded fingerprint; raises ``ValueError`` (callers wrap it) when malformed."""
        if not isinstance(value, Mapping):
            raise ValueError(f"a model fingerprint must be a JSON object, got {type(value).__name__}")
        try:
            fingerprint = cls(
                source=str(value["source"]),
                weights_sha256=str(value["weights_sha256"]),
                dim=int(value["dim"]),
                revision=None if value.get("revision") is None else str(value["revision"]),
                config=dict(value.get("config") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a model fingerprint is missing or mistypes a field ({exc})") from exc
        return fingerprint

    def differences(self, other: ModelFingerprint) -> list[str]:
        """Human-readable reasons why vectors of ``other`` cannot be mixed with ours (empty if they can)."""
        reasons = []
        if self.weights_sha256 != other.weights_sha256:
            reasons.append(
                f"weights differ (sha256 {self.weights_sha256[:12]}… from {self.source!r} vs "
                f"{other.weights_sha256[:12]}… from {other.source!r})"
            )
        if self.dim != other.dim:
            reasons.append(f"dim {self.dim} vs {other.dim}")
        for name in DOCUMENT_FIELDS:
            ours, theirs = _normal(self.config.get(name)), _normal(other.config.get(name))
            if name in self.config and name in other.config and ours != theirs:
                reasons.append(f"{name} {ours!r} vs {theirs!r}")
        return reasons


def hash_weights(modules: Iterable[torch.nn.Module]) -> str:
    """sha256 of every parameter and buffer of ``modules``: names, shapes, dtypes and bytes, in name order."""
    digest = hashlib.sha256()
    for m, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{m}.{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
            digest.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    return digest.hexdigest()


def check_fingerprint(
    recorded: Mapping[str, Any] | None,
    current: ModelFingerprint,
    *,
    where: str,
    allow_mismatch: bool = False,
) -> None:
    """Raise :class:`ModelMismatchError` when ``current`` cannot read vectors recorded as ``recorded``.

    ``recorded`` is the dict stored at save time (None for folders saved before fingerprints existed,
    which are accepted with a warning). ``allow_mismatch=True`` downgrades the error to a warning.
    """
    if recorded is None:
        logger.warning("%s records no model fingerprint (saved by an older version); cannot check the model.", where)
        return
    try:
        saved = ModelFingerprint.from_dict(recorded)
    except ValueError as exc:
        raise ModelMismatchError(f"{where}: the recorded model fingerprint is unreadable ({exc}).") from exc
    reasons = saved.differences(current)
    if not reasons:
        return
    message = (
        f"{where} was built with another model or other document settings: {'; '.join(reasons)}. "
        "Open it with the model it was built with, or pass allow_model_mismatch=True to override "
        "(scores then mix two vector spaces)."
    )
    if allow_mismatch:
        logger.warning(message)
        return
    raise ModelMismatchError(message)


def _normal(value: Any) -> Any:
    """JSON round-trips turn tuples into lists; compare them as lists."""
    return list(value) if isinstance(value, (tuple, list)) else value
