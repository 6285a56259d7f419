"""The ``token_layout="plaid"`` collection layout: PLAID codes in the payload, the codec in codec points.

Pure functions of a codec or of codes; nothing here talks to Qdrant.

**Per point** (every window), next to the usual payload: ``centroid_ids``, the base64 of the
window's centroid ids (int16, little-endian); ``centroid_set``, the base64 of its distinct ids,
sorted, as LEB128 varints of their differences (what centroid interaction needs: a maximum over a
document's centroids does not count repeats; ~0.25 KB for a 236-token SciFact document against
~0.6 KB of ids); and ``residuals``, the base64 of its packed residuals (``dim * nbits / 8`` bytes
per token, :class:`~lateint_plugins.core.codec.ResidualCodec`). A query reads the set of every
candidate, then the ids and residuals (~7.5 KB at 96-d, 2 bits) of the few it scores exactly.
Points written before ``centroid_set`` existed are read through their ids. A residual
quantiser's codes (``quantizer="rq"``, stages of 2 bits) are split: ``residuals`` holds the first
stage's bytes and ``residuals_2`` the later stages', read for the fewer candidates scored on the full
codes. Before the collection has a codec (``codec_training_tokens``) a window carries
``tokens_fp16`` instead: the base64 of its float16 token matrix. Base64 costs 4/3 of the raw
bytes, in JSON and in protobuf alike (a string), and keeps the payload plain JSON.

**The codec** (centroids in fp16, codebooks, rotation, levels: ~0.9 MB at 4096 x 96-d centroids) is
serialised with safetensors, base64-encoded and split over *codec points*: points without vectors
whose payload is ``{"lateint_codec": <id>, "part": i, "n_parts": n, "data": <base64>}``, at
``uuid5`` ids of ``(id, i)``. The collection's metadata marker records ``{"codec": {"id", "n_parts",
...}}`` once every part landed, so a half-written codec is never read. Not in the metadata
itself: Qdrant merges collection metadata into the collection's configuration (replicated through
consensus on a cluster, returned by every ``get_collection``), no place for a megabyte. Codec
points have no ``doc_id`` nor ``window``, so no document read, count or delete ever sees them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from lateint_plugins.core.codec import ResidualCodec, default_n_centroids, train_codec
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError
from lateint_plugins.qdrant.layout import CENTROID_IDS, CENTROID_SET, REFINEMENT, RESIDUALS, TOKENS_FP16

logger = logging.getLogger(__name__)

CODEC_FIELD = "lateint_codec"
_CODEC_NAMESPACE = uuid.UUID("0b6c2f4e-3d1a-5e8b-9c7f-1a2b3c4d5e6f")
_PART_CHARS = 1 << 20  # base64 characters per codec point (768 KiB of codec)
MAX_TRAINING_TOKENS = 131_072
"""Token vectors sampled to train a collection's codec (as :class:`~lateint_plugins.core.plaid.PLAIDConfig`)."""
FEW_TRAINING_TOKENS = 16_384
"""A first write of fewer tokens trains a codec with a warning: later documents compress as well as they resemble it."""


@dataclass(frozen=True)
class CodedTokens:
    """One document's tokens as PLAID codes: what :meth:`QdrantLateInteractionStore.add_codes` writes as is.

    Attributes:
        codes: ``(n,)`` centroid ids (any integer dtype; stored as int16).
        residuals: ``(n, bytes_per_token)`` uint8 packed residuals.
        dim: the vectors' dimension (``shape`` reads ``(n, dim)``, like the matrix they encode).
    """

    codes: torch.Tensor
    residuals: torch.Tensor
    dim: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), self.dim)


def check_codes(codes: Any, residuals: Any, codec: ResidualCodec, name: str) -> CodedTokens:
    """``codes (n,)`` and ``residuals (n, bytes_per_token)`` of one document, checked against ``codec``."""
    c, r = torch.as_tensor(codes), torch.as_tensor(residuals)
    if c.ndim != 1 or c.shape[0] < 1 or c.dtype.is_floating_point or c.dtype == torch.bool:
        raise InvalidInputError(f"{name}: codes must be a non-empty 1-d integer tensor, got {tuple(c.shape)} {c.dtype}")
    if int(c.min()) < 0 or int(c.max()) >= codec.n_centroids:
        raise InvalidInputError(
            f"{name}: centroid ids must be in [0, {codec.n_centroids}) (the collection codec's centroids); "
            "were they made by another codec?"
        )
    if r.dtype != torch.uint8 or tuple(r.shape) != (c.shape[0], codec.bytes_per_token):
        raise InvalidInputError(
            f"{name}: residuals must be uint8 of shape ({c.shape[0]}, {codec.bytes_per_token}), got "
            f"{tuple(r.shape)} {r.dtype}."
        )
    return CodedTokens(c.to("cpu", torch.int16), r.to("cpu"), codec.dim)


def encode_ids(codes: torch.Tensor) -> str:
    """Centroid ids -> the base64 of their int16 little-endian bytes."""
    return base64.b64encode(codes.to("cpu", torch.int16).numpy().astype("<i2").tobytes()).decode("ascii")


def decode_ids(text: str) -> torch.Tensor:
    """Inverse of :func:`encode_ids`: ``(n,)`` int16."""
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<i2").astype(np.int16))


def encode_centroid_set(codes: torch.Tensor) -> str:
    """Centroid ids -> the base64 of their distinct values, sorted, as LEB128 varints of the differences."""
    values = np.unique(codes.to("cpu", torch.int64).numpy())
    deltas = np.diff(values, prepend=0)
    # Little-endian groups of 7 bits, the high bit set on every byte but a number's last.
    n_bytes = np.ones_like(deltas)
    for bits in (7, 14, 21, 28):
        n_bytes += deltas >= 1 << bits
    last = np.cumsum(n_bytes) - 1  # each number's last byte
    owner = np.repeat(np.arange(deltas.size), n_bytes)
    shift = 7 * (np.arange(owner.size) - (last - n_bytes + 1)[owner])
    out = ((deltas[owner] >> shift) & 0x7F).astype(np.uint8)
    out[np.arange(owner.size) != last[owner]] |= 0x80
    return base64.b64encode(out.tobytes()).decode("ascii")


def decode_centroid_set(text: str) -> torch.Tensor:
    """Inverse of :func:`encode_centroid_set`: the distinct ids ``(m,)`` int64, ascending."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if not raw.size or raw[-1] & 0x80:
        raise CorruptIndexError("a centroid_set field is empty or ends inside a number; the collection is damaged.")
    ends = np.flatnonzero(raw < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1])
    shift = 7 * (np.arange(raw.size) - np.repeat(starts, ends - starts + 1))
    return torch.from_numpy(np.cumsum(np.add.reduceat((raw & 0x7F).astype(np.int64) << shift, starts)))


def encode_residuals(residuals: torch.Tensor) -> str:
    """Packed residuals ``(n, bytes_per_token)`` uint8 -> base64 (row-major)."""
    return base64.b64encode(residuals.to("cpu", torch.uint8).contiguous().numpy().tobytes()).decode("ascii")


def decode_residuals(text: str, bytes_per_token: int) -> torch.Tensor:
    """Inverse of :func:`encode_residuals`: ``(n, bytes_per_token)`` uint8."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if raw.size % bytes_per_token:
        raise CorruptIndexError(f"a residuals field holds {raw.size} bytes, not a multiple of {bytes_per_token}.")
    return torch.from_numpy(raw.reshape(-1, bytes_per_token).copy())


def encode_fp16(tokens: torch.Tensor) -> str:
    """Token vectors ``(n, dim)`` -> the base64 of their float16 little-endian bytes (row-major)."""
    values = tokens.detach().to("cpu", torch.float16).contiguous().numpy().astype("<f2")
    return base64.b64encode(values.tobytes()).decode("ascii")


def decode_fp16(text: str, dim: int) -> torch.Tensor:
    """Inverse of :func:`encode_fp16`: ``(n, dim)`` float32."""
    raw = np.frombuffer(base64.b64decode(text), dtype="<f2")
    if raw.size % dim or not raw.size:
        raise CorruptIndexError(f"a {TOKENS_FP16} field holds {raw.size} numbers, not a positive multiple of {dim}.")
    return torch.from_numpy(raw.astype(np.float32).reshape(-1, dim))


def residual_fields(codec: ResidualCodec) -> tuple[tuple[str, int], ...]:
    """The payload fields a window's residuals are stored in, with their bytes per token.

    One field, or for a codec of several stages two: the first stage's bytes, then the others'.
    """
    if codec.stages == 1:
        return ((RESIDUALS, codec.bytes_per_token),)
    return (RESIDUALS, codec.bytes_per_stage), (REFINEMENT, codec.bytes_per_token - codec.bytes_per_stage)


def code_fields(codec: ResidualCodec) -> list[str]:
    """Every payload field of a window's codes: the centroid ids and the residual fields."""
    return [CENTROID_IDS, *(name for name, _ in residual_fields(codec))]


def encode_residual_fields(residuals: torch.Tensor, codec: ResidualCodec) -> dict[str, str]:
    """Packed residuals ``(n, bytes_per_token)`` -> their payload fields (:func:`residual_fields`)."""
    out, start = {}, 0
    for name, width in residual_fields(codec):
        out[name] = encode_residuals(residuals[:, start : start + width])
        start += width
    return out


def code_payload(codes: torch.Tensor, residuals: torch.Tensor, codec: ResidualCodec) -> dict[str, str]:
    """A window's payload fields of its codes ``(n,)`` and residuals ``(n, bytes_per_token)``: ids, set, residuals."""
    return {
        CENTROID_IDS: encode_ids(codes),
        CENTROID_SET: encode_centroid_set(codes),
        **encode_residual_fields(residuals, codec),
    }


def decode_residual_fields(payload: Mapping[str, Any], codec: ResidualCodec) -> torch.Tensor:
    """Inverse of :func:`encode_residual_fields`: ``(n, bytes_per_token)`` uint8."""
    names = [name for name, _ in residual_fields(codec)]
    parts = [decode_residuals(payload[name], width) for name, width in residual_fields(codec)]
    if any(part.shape[0] != parts[0].shape[0] for part in parts):
        raise CorruptIndexError(f"the residual fields {names} of a point hold different numbers of tokens.")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def train(
    samples: Sequence[torch.Tensor],
    nbits: int,
    n_centroids: int | None,
    *,
    quantizer: Literal["pq", "rq"] = "pq",
    seed: int = 42,
) -> ResidualCodec:
    """A codec for a collection from the first documents written (``(n_tokens, dim)`` each).

    Samples up to :data:`MAX_TRAINING_TOKENS` tokens; the number of centroids defaults from all
    the tokens given, at most a quarter of the sample (as ``PLAIDIndex.train``).
    """
    lengths = torch.tensor([s.shape[0] for s in samples])
    n_tokens = int(lengths.sum())
    if n_tokens > MAX_TRAINING_TOKENS:
        # A uniform token sample, gathered document by document: the corpus is never concatenated.
        picked = torch.randperm(n_tokens, generator=torch.Generator().manual_seed(seed))[:MAX_TRAINING_TOKENS]
        owner = torch.searchsorted(torch.cumsum(lengths, 0), picked, right=True)
        rows = picked - (torch.cumsum(lengths, 0) - lengths)[owner]
        tokens = torch.cat([samples[int(d)][rows[owner == d]].detach().to("cpu", torch.float32)
                            for d in torch.unique(owner)])  # fmt: skip
    else:
        tokens = torch.cat([s.detach().to("cpu", torch.float32) for s in samples])
    wanted = n_centroids or default_n_centroids(n_tokens, nbits)
    n_centroids = min(wanted, max(1, tokens.shape[0] // 4))
    if n_tokens < FEW_TRAINING_TOKENS:
        logger.warning(
            "Training the collection's codec on the first write's %d tokens (%d centroids): every later document is "
            "compressed with it, as well as it resembles these. Write a representative first batch (thousands of "
            "documents), or pass codec= (e.g. a PLAIDIndex's trained on your corpus).",
            n_tokens,
            n_centroids,
        )
    return train_codec(tokens, n_centroids=n_centroids, nbits=nbits, quantizer=quantizer, seed=seed)


def codec_bytes(codec: ResidualCodec) -> bytes:
    """The codec as safetensors bytes (centroids fp16, as indexes save them; the rest float32)."""
    from safetensors.torch import save

    tensors = {
        "centroids": codec.centroids.detach().to("cpu", torch.float16).contiguous(),
        "codebooks": codec.codebooks.detach().to("cpu", torch.float32).contiguous(),
        "rotation": codec.rotation.detach().to("cpu", torch.float32).contiguous(),
    }
    if codec.levels is not None:
        tensors["levels"] = codec.levels.detach().to("cpu", torch.float32).contiguous()
    if codec.stages > 1:
        tensors["stages"] = torch.tensor([codec.stages])
    # One metadata key: safetensors writes several in no fixed order, and the bytes name the codec.
    return save(tensors, metadata={"nbits": str(codec.nbits)})


def codec_from_bytes(blob: bytes) -> ResidualCodec:
    """Inverse of :func:`codec_bytes`."""
    import json

    from safetensors.torch import load

    try:
        header_len = int.from_bytes(blob[:8], "little")
        nbits = int(json.loads(blob[8 : 8 + header_len])["__metadata__"]["nbits"])
        tensors = load(blob)
        stages = int(tensors["stages"][0]) if "stages" in tensors else 1
        return ResidualCodec(
            tensors["centroids"].float(),
            tensors["codebooks"],
            tensors["rotation"],
            nbits,
            tensors.get("levels"),
            stages,
        )
    except (KeyError, ValueError, TypeError, InvalidInputError) as exc:
        raise CorruptIndexError(f"the collection's codec does not decode ({exc}); re-create the collection.") from exc


def codec_id(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:32]


def codec_points(codec: ResidualCodec) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The marker entry of ``codec`` and its codec points as ``(point id, payload)``."""
    blob = codec_bytes(codec)
    ident = codec_id(blob)
    text = base64.b64encode(blob).decode("ascii")
    n_parts = max(1, math.ceil(len(text) / _PART_CHARS))
    points = [
        (codec_point_id(ident, i), {CODEC_FIELD: ident, "part": i, "n_parts": n_parts,
                                    "data": text[i * _PART_CHARS : (i + 1) * _PART_CHARS]})
        for i in range(n_parts)
    ]  # fmt: skip
    entry = {"id": ident, "n_parts": n_parts, "nbits": codec.nbits, "n_centroids": codec.n_centroids,
             "quantizer": codec.quantizer}  # fmt: skip
    return entry, points


def codec_point_id(ident: str, part: int) -> str:
    return str(uuid.uuid5(_CODEC_NAMESPACE, f"{ident}:{part}"))


def codec_from_parts(entry: Mapping[str, Any], payloads: Mapping[int, Mapping[str, Any]]) -> ResidualCodec:
    """The codec the marker ``entry`` names, from its codec points' payloads (part -> payload)."""
    n_parts = int(entry["n_parts"])
    missing = [i for i in range(n_parts) if i not in payloads]
    if missing:
        raise CorruptIndexError(
            f"codec {entry['id']} misses codec points {missing[:5]}; the collection is damaged (re-create it)."
        )
    blob = base64.b64decode("".join(str(payloads[i]["data"]) for i in range(n_parts)))
    if codec_id(blob) != entry["id"]:
        raise CorruptIndexError(f"codec {entry['id']}: its codec points do not hash to it; the collection is damaged.")
    return codec_from_bytes(blob)
