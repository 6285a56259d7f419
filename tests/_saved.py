"""Helpers shared by the persistence, crash, corruption and race tests: content snapshots and resealing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from lateint_plugins.core import _io
from lateint_plugins.core.index import ExactIndex, Index
from lateint_plugins.core.plaid import PLAIDIndex
from lateint_plugins.core.store import LateInteractionStore


def random_documents(n: int, dim: int = 16, seed: int = 0, prefix: str = "d") -> tuple[list[str], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    ids = [f"{prefix}{i}" for i in range(n)]
    docs = []
    for i in range(n):
        x = torch.randn(3 + (i * 7) % 11, dim, generator=generator)
        docs.append(x / x.norm(dim=1, keepdim=True))
    return ids, docs


def snapshot(thing: Index | LateInteractionStore) -> tuple[Any, ...]:
    """Everything a save holds, as comparable values (ids, metadata, texts, a digest of the vectors)."""
    if isinstance(thing, LateInteractionStore):
        return (*snapshot(thing.index), tuple(sorted(thing._texts.items())))
    digest = hashlib.sha256()
    if isinstance(thing, ExactIndex):
        tokens, lengths = thing._store()
        parts = [tokens, lengths]
    else:
        assert isinstance(thing, PLAIDIndex)
        thing.compact()
        parts = [thing._codes, thing._residuals, thing._lengths]
        if thing.codec is not None:
            parts += [thing.codec.centroids, thing.codec.codebooks, thing.codec.rotation]
    for part in parts:
        digest.update(part.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if part.numel() else b"")
        digest.update(str(tuple(part.shape)).encode())
    metadata = json.dumps([thing.metadata(i) for i in thing.ids], sort_keys=True)
    return type(thing).__name__, thing.dim, tuple(thing.ids), metadata, digest.hexdigest()


def reseal(folder: Path) -> None:
    """Recompute the checksums of ``folder`` and of every saved folder above it, as if damage had been saved.

    Lets a test reach the checks behind the checksums (headers, schema, ranges).
    """
    folder = Path(folder)
    while (folder / _io.MANIFEST).is_file():
        try:
            manifest = json.loads((folder / _io.MANIFEST).read_text())
        except ValueError:  # the manifest itself is what was damaged
            return
        if isinstance(manifest, dict) and "files" in manifest:
            manifest["files"] = _io._list_files(folder)
            manifest["checksum"] = _io._manifest_checksum(manifest)
            (folder / _io.MANIFEST).write_text(json.dumps(manifest))
        folder = folder.parent
