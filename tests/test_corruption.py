"""Corruption fuzzer: damaged and hostile saved folders give typed errors, never a silently different index.

Seeded and bounded. Each case copies a saved folder (exact index, PLAID with a product or a scalar
quantiser and fp16 vectors, a store, a LlamaIndex persist folder), damages it (truncation, byte flips,
``.npy`` header edits, manifest edits, missing, extra and empty files, links, JSONL rows) and loads it:

* as damaged: load raises :class:`CorruptIndexError` / :class:`IndexNotFoundError`, or returns content
  equal to the original (the damage did not matter) - never another exception, never other content;
* damaged and then *resealed* (checksums recomputed, as if the damage had been saved): the checks
  behind the checksums (schema, headers, ranges) must hold - a typed error, or an index that searches
  without error.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _saved import random_documents, reseal, snapshot
from lateint_plugins.core import _io
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import CorruptIndexError, IndexNotFoundError, ModelMismatchError
from lateint_plugins.core.index import ExactIndex, load_index
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
from lateint_plugins.core.store import LateInteractionStore

CASES_PER_FOLDER = 70  # x2 (as damaged, and resealed) x5 folders

_HEADER_EDITS: list[dict[str, Any]] = [
    {"descr": "<f4"},
    {"descr": "<f2"},
    {"descr": ">f2"},
    {"descr": "<i8"},
    {"descr": "|u1"},
    {"descr": "|O"},
    {"descr": [("a", "<f2")]},
    {"fortran_order": True},
    {"shape": (10**12,)},
    {"shape": (10**9, 10**9)},
    {"shape": ()},
    {"shape": (0,)},
    {"shape": (1, 2, 3)},
]
_WRONG_VALUES: list[Any] = ["12", 12, -1, 1.5, True, None, [], {}, float("nan"), "x" * 3]
_NOT_OBJECTS = ["[]", "1", '"manifest"', "null", "true", '[{"format": "lateint-plugins"}]']


def _rewrite_header(path: Path, changes: dict[str, Any]) -> None:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        data = f.read()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape, **changes}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _seal_manifest(path: Path) -> None:
    """Recompute a manifest's own checksum after an edit (and the checksums of the folders above it)."""
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return
    if isinstance(manifest, dict):
        manifest["checksum"] = _io._manifest_checksum(manifest)
        path.write_text(json.dumps(manifest))
    if (path.parent.parent / _io.MANIFEST).is_file():
        reseal(path.parent.parent)


def _edit_manifest(path: Path, rng: random.Random) -> str:
    manifest = json.loads(path.read_text())
    choice = rng.randrange(5)
    if choice == 0:
        path.write_text(rng.choice(_NOT_OBJECTS))
        return "manifest is not an object"
    # A field of the manifest, or of a dict inside it (config, search_config, fingerprint, files entry).
    holder, where = manifest, "manifest"
    nested = [k for k, v in manifest.items() if isinstance(v, dict) and v]
    if nested and rng.random() < 0.4:
        key = rng.choice(nested)
        holder, where = manifest[key], f"manifest[{key!r}]"
        if key == "files":
            name = rng.choice(sorted(holder))
            holder, where = holder[name], f"manifest['files'][{name!r}]"
    field = rng.choice(sorted(holder))
    if choice == 1:
        del holder[field]
        what = f"{where}: deleted {field!r}"
    else:
        holder[field] = value = rng.choice(_WRONG_VALUES)
        what = f"{where}[{field!r}] = {value!r}"
    path.write_text(json.dumps(manifest))
    return what


def _damage(folder: Path, rng: random.Random, resealed: bool) -> str:
    files = _files(folder)
    target = rng.choice(files)
    name = str(target.relative_to(folder))
    kind = rng.choice(
        ["truncate", "flip", "flip", "header", "manifest", "manifest", "missing", "extra", "empty", "link", "jsonl"]
    )
    if kind == "header":
        candidates = [f for f in files if f.suffix == ".npy"]
        if candidates:
            target = rng.choice(candidates)
            name = str(target.relative_to(folder))
            changes = rng.choice(_HEADER_EDITS)
            _rewrite_header(target, changes)
            what = f"{name}: header {changes}"
        else:
            kind = "flip"
    if kind == "manifest":
        target = rng.choice([f for f in files if f.name == _io.MANIFEST])
        what = _edit_manifest(target, rng)
        if resealed:
            _seal_manifest(target)
        return f"{target.relative_to(folder)}: {what}"
    if kind == "jsonl":
        candidates = [f for f in files if f.suffix == ".jsonl" and f.stat().st_size]
        if candidates:
            target = rng.choice(candidates)
            lines = target.read_text().splitlines()
            row = rng.randrange(len(lines))
            lines[row] = rng.choice(
                ["{", "[]", "null", '{"id": 5}', '{"id": "", "text": "", "metadata": {}}', '{"text": "t"}', "\ud800"]
            )
            target.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
            what = f"{target.relative_to(folder)}:{row + 1} rewritten"
        else:
            kind = "truncate"
    if kind == "truncate":
        size = target.stat().st_size
        cut = rng.randrange(size) if size else 0
        with open(target, "r+b") as f:
            f.truncate(cut)
        what = f"{name}: truncated to {cut} of {size} bytes"
    elif kind == "flip":
        data = bytearray(target.read_bytes())
        if not data:
            return "nothing to flip"
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(data))
        what = f"{name}: bit flipped at byte {at}"
    elif kind == "missing":
        target.unlink()
        what = f"{name}: deleted"
    elif kind == "extra":
        (target.parent / "stray.npy").write_bytes(b"\x93NUMPY")
        what = f"{target.parent.relative_to(folder)}/stray.npy added"
    elif kind == "empty":
        target.write_bytes(b"")
        what = f"{name}: emptied"
    elif kind == "link":
        if rng.random() < 0.3 and (folder / "index").is_dir():
            shutil.copytree(folder / "index", folder.parent / "elsewhere")
            shutil.rmtree(folder / "index")
            (folder / "index").symlink_to(folder.parent / "elsewhere", target_is_directory=True)
            return "index/ replaced by a link to a copy"
        shutil.copy(target, folder.parent / "elsewhere-file")
        target.unlink()
        target.symlink_to(folder.parent / "elsewhere-file")
        what = f"{name}: replaced by a link to a copy"
    if resealed and kind != "link":
        reseal(target.parent)
    return what


def _build_folders(root: Path, encoder: ColBERTEncoder) -> dict[str, tuple[Path, Callable[[Path], Any], Any]]:
    ids, docs = random_documents(60, seed=3)
    metadata = [{"n": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(60)]
    exact = ExactIndex(device="cpu")
    exact.add(ids[:15], docs[:15], metadata[:15])
    pq = PLAIDIndex(config=PLAIDConfig(n_centroids=8, kmeans_niters=2), device="cpu")
    pq.add(ids, docs, metadata)
    pq.remove(ids[:3])
    scalar = PLAIDIndex(
        config=PLAIDConfig(n_centroids=8, kmeans_niters=2, quantizer="scalar", keep_fp16=True, nbits=4),
        search_config=None,
        device="cpu",
    )
    scalar.add(ids, docs, metadata)
    store = LateInteractionStore(encoder, ExactIndex(device="cpu"))
    store.add_embeddings([f"text {i}" for i in ids[:12]], docs[:12], metadata[:12], ids[:12])

    def load_store(path: Path) -> LateInteractionStore:
        return LateInteractionStore.load(path, encoder=encoder)

    folders: dict[str, tuple[Path, Callable[[Path], Any], Any]] = {}
    for name, thing in [("exact", exact), ("plaid-pq", pq), ("plaid-scalar-fp16", scalar)]:
        thing.save(root / name)
        folders[name] = (root / name, lambda p: load_index(p, device="cpu"), snapshot(load_index(root / name)))
    store.save(root / "store")
    folders["store"] = (root / "store", load_store, snapshot(load_store(root / "store")))
    try:
        from lateint_plugins.llama_index import LateInteractionRetriever
    except ImportError:  # pragma: no cover - llama-index is in the test extra
        return folders
    LateInteractionRetriever(store, similarity_top_k=3).persist(root / "llama")

    def load_llama(path: Path) -> Any:
        return LateInteractionRetriever.from_persist_dir(path, encoder=encoder)

    folders["llama"] = (root / "llama", load_llama, (3, snapshot(store)))
    return folders


def _content(loaded: Any) -> Any:
    if hasattr(loaded, "similarity_top_k"):
        return loaded.similarity_top_k, snapshot(loaded.store)
    return snapshot(loaded)


def _search_works(loaded: Any) -> None:
    """A loaded index must search without error (damage surfaces at load, not at the first search)."""
    if hasattr(loaded, "retrieve"):
        loaded.retrieve("a query")
        return
    if isinstance(loaded, LateInteractionStore):
        for row in loaded.search_batch(["a query", "another"], k=5, filter={"n": 1}):
            assert all(r.id in loaded for r in row)
        return
    query = torch.randn(5, loaded.dim or 16)
    hits = loaded.search(query, k=7)
    assert len(hits) <= 7 and all(h.id in loaded for h in hits)
    loaded.search(query, k=3, filter={"tag": "even"})


@pytest.mark.parametrize("resealed", [False, True], ids=["as-damaged", "resealed"])
def test_damaged_folders_give_typed_errors_or_the_original(
    resealed: bool, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: ColBERTEncoder
) -> None:
    root = tmp_path_factory.mktemp("originals")
    folders = _build_folders(root, tiny_encoder)
    failures: list[str] = []
    outcomes = {"error": 0, "same": 0, "loaded": 0}
    for folder_name, (original, load, want) in folders.items():
        for case in range(CASES_PER_FOLDER):
            rng = random.Random(f"{folder_name}-{case}-{resealed}")
            work = tmp_path_factory.mktemp("case")
            damaged = work / original.name
            shutil.copytree(original, damaged, symlinks=True)
            what = _damage(damaged, rng, resealed)
            label = f"{folder_name} #{case}: {what}"
            try:
                loaded = load(damaged)
            except (CorruptIndexError, IndexNotFoundError):
                outcomes["error"] += 1
                continue
            except ModelMismatchError:  # a resealed edit of the recorded fingerprint
                if not resealed:
                    failures.append(f"{label}: ModelMismatchError without resealing")
                outcomes["error"] += 1
                continue
            except Exception as exc:
                failures.append(f"{label}: untyped {type(exc).__name__}: {exc}")
                continue
            if _content(loaded) == want:
                outcomes["same"] += 1
            elif not resealed:
                failures.append(f"{label}: loaded silently different content")
                continue
            else:
                outcomes["loaded"] += 1
            try:
                _search_works(loaded)
            except Exception as exc:
                failures.append(f"{label}: loaded, then search raised {type(exc).__name__}: {exc}")
            shutil.rmtree(work, ignore_errors=True)
    assert not failures, "\n".join(failures)
    # The fuzzer must actually damage things: most cases are caught.
    assert outcomes["error"] > len(folders) * CASES_PER_FOLDER // 2, outcomes
