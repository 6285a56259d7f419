"""Disk layout shared by indexes and stores: atomic folder writes, versioned manifests, arrays, JSONL.

Nothing here unpickles: arrays are ``.npy`` read with ``allow_pickle=False``, everything else is JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptIndexError, IndexNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)

FORMAT = "lateint-plugins"
MANIFEST = "manifest.json"


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success it replaces ``path`` by renames.

    A crash before the end leaves ``path`` untouched. The one window between moving the old folder
    aside and moving the new one in is covered by :func:`existing_directory`, which restores the
    old folder if it finds ``path`` missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"path {str(target)!r} is a file; pass a folder path to save into.")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise InvalidInputError(
            f"path {str(target)!r} is a non-empty folder that is not a saved lateint-plugins index or store; "
            "refusing to replace it. Pass a new or empty folder."
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def existing_directory(path: str | os.PathLike[str]) -> Path:
    """``path`` as a saved folder, restoring it from an interrupted :func:`atomic_directory` if needed."""
    target = Path(path)
    if not target.exists():
        leftovers = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if leftovers and (leftovers[-1] / MANIFEST).is_file():
            logger.warning("Restoring %s from %s left by an interrupted save.", target, leftovers[-1])
            os.replace(leftovers[-1], target)
    if not target.is_dir():
        raise IndexNotFoundError(f"No saved index or store at {str(target)!r}; check the path or build one first.")
    return target


def write_manifest(folder: Path, kind: str, version: int, **fields: Any) -> None:
    write_json(folder / MANIFEST, {"format": FORMAT, "kind": kind, "version": version, **fields})


def read_manifest(folder: Path, kinds: Iterable[str] | None = None, max_version: int | None = None) -> dict[str, Any]:
    """Read and check ``manifest.json``; ``kinds`` restricts what may be loaded from this folder."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise IndexNotFoundError(
            f"{str(folder)!r} has no {MANIFEST}: it is not a saved lateint-plugins index or store."
        )
    manifest = read_json(manifest_path)
    if manifest.get("format") != FORMAT or "kind" not in manifest or not isinstance(manifest.get("version"), int):
        raise CorruptIndexError(f"{manifest_path} is not a lateint-plugins manifest.")
    allowed = list(kinds) if kinds is not None else None
    if allowed is not None and manifest["kind"] not in allowed:
        raise CorruptIndexError(
            f"{str(folder)!r} holds a {manifest['kind']!r}, but a {' or '.join(map(repr, allowed))} was expected."
        )
    if max_version is not None and manifest["version"] > max_version:
        raise CorruptIndexError(
            f"{str(folder)!r} was written by a newer lateint-plugins (format version {manifest['version']}, this "
            f"version reads up to {max_version}); upgrade lateint-plugins."
        )
    return manifest


def write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path} is not valid JSON ({exc}); the saved folder is damaged.") from exc


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")


def read_jsonl(path: Path) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path} is not valid JSON lines ({exc}); the saved folder is damaged.") from exc


def save_array(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_array(folder: Path, name: str, *, mmap: bool = False) -> np.ndarray:
    path = folder / f"{name}.npy"
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptIndexError(f"{path} cannot be read ({exc}); the saved folder is damaged.") from exc


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; durability is best effort there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))
