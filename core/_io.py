"""Disk layout shared by indexes and stores: crash-safe folder writes, checked manifests, arrays, JSONL.

Nothing here unpickles: arrays are ``.npy`` read with ``allow_pickle=False`` after their header has been
checked, everything else is JSON.

**Commit marker.** Every saved folder has a ``manifest.json``, written last, that lists each file of the
folder with its size and sha256 (a sub-folder, such as a store's ``index/``, is listed by its own
manifest, which lists its files: a hash tree) and carries a ``checksum`` of itself. A folder is
*complete* when its manifest and every file it lists (recursively) check out. Loading verifies the
files of each level before reading them, so a damaged byte is a :class:`CorruptIndexError`, never a
silently different index.

**Crash safety.** :func:`atomic_directory` writes into a temporary sibling ``.NAME.tmp-*`` (fsynced,
files then folders), moves the previous save aside to ``.NAME.old-*``, renames the new one in and
fsyncs the parent. Whatever a crash (or several in a row) leaves behind, :func:`existing_directory`
restores the newest complete save among every leftover (``.old-*``, and ``.tmp-*`` saves that only
missed their final rename) and removes the rest. A live writer holds a shared ``flock`` on its
temporary folder, so other processes never take or delete a save in progress.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ._checks import check_path
from .errors import CorruptIndexError, IndexNotFoundError, InvalidInputError

try:  # POSIX: liveness locks on folders being written; elsewhere every leftover counts as abandoned
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FORMAT = "lateint-plugins"
MANIFEST = "manifest.json"

T = TypeVar("T")

_HASH_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SWAP_ATTEMPTS = 50  # tries at the two renames of a save while other processes save to the same path
_RESTORE_WAIT_S = 2.0  # how long a reader waits for a live writer to finish its two renames

# ---------------------------------------------------------------------- manifest schema
# Every saved folder's manifest: the common fields, then the fields of its kind. A type is "str",
# "int", "float", "bool", "dict" or "list", with "|null" when None is allowed and "?" (trailing)
# when the field may be absent (folders written before it existed).
_COMMON_FIELDS = {"format": "str", "kind": "str", "version": "int", "saved_at": "int?", "files": "dict?"}
_KIND_FIELDS: dict[str, dict[str, str]] = {
    "exact": {"dim": "int|null", "n_documents": "int", "n_tokens": "int", "dtype": "str"},
    "plaid": {
        "dim": "int|null",
        "n_documents": "int",
        "n_tokens": "int",
        "config": "dict",
        "search_config": "dict",
        "trained": "bool",
        "trained_error": "float?",
        "added_error_sum": "float?",
        "added_tokens": "int?",
    },
    "store": {
        "model": "str",
        "encoder_config": "dict",
        "dim": "int|null",
        "n_documents": "int",
        "fingerprint": "dict|null?",
    },
    "llama-index-retriever": {
        "similarity_top_k": "int",
        "metadata_filters": "dict|null?",
        "filter": "dict|null?",
        "fingerprint": "dict|null?",
    },
}
_NON_NEGATIVE = {"n_documents", "n_tokens", "added_tokens", "similarity_top_k", "saved_at"}
_POSITIVE = {"dim"}
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
}


@functools.cache
def _parse_type(kind: str) -> tuple[str, bool, bool]:
    """``"int|null?"`` -> ``("int", nullable=True, optional=True)``."""
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    return kind.removesuffix("|null"), kind.endswith("|null"), optional


def check_fields(value: Mapping[str, Any], spec: Mapping[str, str], where: str) -> None:
    """Raise :class:`CorruptIndexError` naming ``where`` and the field when ``value`` does not fit ``spec``.

    ``spec`` maps field names to types as in the manifest schema (``"int|null?"`` etc.).
    """
    for name, kind in spec.items():
        base, nullable, optional = _parse_type(kind)
        if name not in value:
            if optional:
                continue
            raise CorruptIndexError(f"{where}: field {name!r} is missing; the saved folder is damaged.")
        item = value[name]
        if item is None and nullable:
            continue
        ok = isinstance(item, _TYPES[base]) and (base in ("bool",) or not isinstance(item, bool))
        if ok and base == "float":
            ok = math.isfinite(item)
        if ok and base == "int":
            ok = not ((name in _NON_NEGATIVE and item < 0) or (name in _POSITIVE and item < 1))
        if not ok:
            raise CorruptIndexError(
                f"{where}: field {name!r} must be {base}{' or null' if nullable else ''}"
                f"{' >= 0' if name in _NON_NEGATIVE else ' >= 1' if name in _POSITIVE else ''}, got {item!r}; "
                "the saved folder is damaged."
            )


# ---------------------------------------------------------------------- atomic folders
@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success it replaces ``path`` by renames.

    A crash at any point leaves either the previous save or the new one complete, never a mix, and
    :func:`existing_directory` finds it (even after crashes in two saves in a row). The files and
    folders are fsynced before the renames and the parent folder after them, so a returned save
    survives a power loss. Write the manifest (:func:`write_manifest`) last, into the yielded folder.
    """
    target = check_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInputError(
            f"path {str(target)!r} cannot be created: a file stands where one of its parent folders should be."
        ) from None
    if not target.parent.is_dir():
        raise InvalidInputError(f"path {str(target)!r} cannot be created: its parent is not a folder.")
    if not target.exists() and not target.is_symlink():
        _recover(target, wait=False)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InvalidInputError(f"path {str(target)!r} is a file or a link; pass a folder path to save into.")
    if _foreign_folder(target):
        raise InvalidInputError(
            f"path {str(target)!r} is a non-empty folder that is not a saved lateint-plugins index or store; "
            "refusing to replace it. Pass a new or empty folder."
        )
    tmp, hold = _new_tmp(target)
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise CorruptIndexError(f"internal error: nothing wrote {MANIFEST} into {tmp}")
        _fsync_tree(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if hold is not None:
            os.close(hold)
    _clean_leftovers(target)


def _foreign_folder(target: Path) -> bool:
    """True when ``target`` is a non-empty folder without a manifest (not ours to replace).

    Another process's save may swap the folder while we look; only an answer given while the same
    folder stayed at ``target`` counts.
    """
    for _ in range(10):
        before = _identity(target)
        try:
            foreign = target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file()
        except FileNotFoundError:  # moved aside meanwhile
            continue
        if not foreign or _identity(target) == before:
            return foreign
    return False


def existing_directory(path: str | os.PathLike[str]) -> Path:
    """``path`` as a saved folder, restoring the newest complete save left by interrupted saves if needed."""
    target = check_path(path)
    if not target.exists():
        _recover(target, wait=True)
    if not target.is_dir():
        raise IndexNotFoundError(f"No saved index or store at {str(target)!r}; check the path or build one first.")
    return target


def read_consistently(path: str | os.PathLike[str], read: Callable[[Path], T]) -> T:
    """``read(folder)`` for the saved folder at ``path``, retried if a save replaces the folder meanwhile.

    A reader in another thread or process could otherwise see the old manifest and the new files
    (paths resolve to whichever folder holds the name at that moment). The folder's identity is
    compared before and after; if it changed, the read is repeated on the new save.
    """
    path = check_path(path)
    for attempt in range(5):
        folder = existing_directory(path)
        before = _identity(folder)
        try:
            value = read(folder)
        except (CorruptIndexError, IndexNotFoundError, OSError):
            if attempt == 4 or _identity(Path(path)) == before:
                raise
            continue
        if _identity(Path(path)) == before:
            return value
    raise CorruptIndexError(f"{str(path)!r} kept being replaced while it was read; retry when saving stops.")


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename the complete folder ``tmp`` to ``target``, moving a previous ``target`` aside first.

    Another process may move or fill ``target`` between our two renames (a concurrent save, or a
    reader restoring a leftover): the step is retried, so every save completes and the last one wins.
    """
    for attempt in range(_SWAP_ATTEMPTS):
        old = None
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
            try:
                os.replace(target, old)
            except FileNotFoundError:  # another process moved it meanwhile
                old = None
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process put a save there in the gap; move it aside again.
            if attempt < _SWAP_ATTEMPTS - 1 and target.exists():
                time.sleep(0.001 * (attempt % 8))
                continue
            if old is not None and not target.exists():
                os.replace(old, target)
            raise
        _fsync(target.parent)
        if old is not None:
            _discard(old)
        return


def _recover(target: Path, *, wait: bool) -> None:
    """If ``target`` is missing, move the newest complete leftover save there and discard the others."""
    deadline = time.monotonic() + (_RESTORE_WAIT_S if wait else 0.0)
    while True:
        claims, live = _claim_all(_leftovers(target))
        if not live or time.monotonic() >= deadline:
            break
        _release(claims)
        time.sleep(0.02)  # a writer is between its two renames (or writing): give it the chance to finish
        if target.exists():
            return
    try:
        complete = [(_saved_at(f), f.name, f) for f in claims if not verify_folder(f)]
        if not complete:
            return
        _, _, best = max(complete)
        logger.warning("Restoring %s from %s left by an interrupted save.", target, best.name)
        try:
            os.replace(best, target)
        except OSError:
            if target.exists():  # another process restored it first
                return
            raise
        _fsync(target.parent)
        for folder in claims:
            if folder is not best:
                _discard(folder)
    finally:
        _release(claims)


def _clean_leftovers(target: Path) -> None:
    """Remove every abandoned leftover of ``target`` (called once a save is in place)."""
    claims, _ = _claim_all(_leftovers(target))
    try:
        for folder in claims:
            _discard(folder)
    finally:
        _release(claims)


def _leftovers(target: Path) -> list[Path]:
    names = (f".{target.name}.old-", f".{target.name}.tmp-")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.name.startswith(names) and e.is_dir(follow_symlinks=False)]


def _discard(folder: Path) -> None:
    """Delete a folder, its manifest first, so that a crash half-way never leaves it looking complete."""
    with suppress(OSError):
        os.unlink(folder / MANIFEST)
    shutil.rmtree(folder, ignore_errors=True)


def _hold(folder: Path) -> int | None:
    """Take a shared lock on ``folder`` for as long as the returned descriptor stays open."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:  # pragma: no cover - file systems without flock
        os.close(fd)
        return None
    return fd


def _new_tmp(target: Path) -> tuple[Path, int | None]:
    """A new temporary folder for a save of ``target``, held (see :func:`_hold`) before anyone may discard it.

    Between ``mkdtemp`` and the lock, another process cleaning leftovers can claim and delete the
    folder; it holds its claim until the folder is gone, so once our lock is granted we check that
    the folder is still there, and start again if not.
    """
    for _ in range(100):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        hold = _hold(tmp)
        try:
            held = hold is not None and os.path.samestat(os.fstat(hold), os.stat(tmp))
            if held or (hold is None and tmp.is_dir()):
                return tmp, hold
        except FileNotFoundError:
            pass
        if hold is not None:
            os.close(hold)
    raise InvalidInputError(f"cannot create a temporary folder next to {str(target)!r}: it keeps being removed.")


def _claim_all(folders: list[Path]) -> tuple[dict[Path, int | None], set[Path]]:
    """Claim every leftover no writer holds: ``({folder: descriptor holding it}, live folders)``.

    A claim is an exclusive lock held until :func:`_release`, so a writer that created the folder
    but has not locked it yet waits, then sees it gone (:func:`_new_tmp`).
    """
    claims: dict[Path, int | None] = {}
    live: set[Path] = set()
    for folder in folders:
        if fcntl is None or ".tmp-" not in folder.name:
            claims[folder] = None
            continue
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue  # gone already
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            live.add(folder)
            continue
        except OSError:  # pragma: no cover - file systems without flock
            os.close(fd)
            fd = None  # type: ignore[assignment]
        claims[folder] = fd
    return claims, live


def _release(claims: Mapping[Path, int | None]) -> None:
    for fd in claims.values():
        if fd is not None:
            os.close(fd)


def _saved_at(folder: Path) -> int:
    try:
        value = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("saved_at")
        if isinstance(value, int):
            return value
        return (folder / MANIFEST).stat().st_mtime_ns
    except (OSError, ValueError, AttributeError):
        return 0


# ---------------------------------------------------------------------- manifests
def write_manifest(folder: Path, kind: str, version: int, **fields: Any) -> None:
    """Write ``manifest.json`` into ``folder``: the commit marker, so call it after every other file is written.

    It lists every file (and every sub-folder's manifest) with its size and sha256, and a checksum
    of itself.
    """
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "version": version,
        **fields,
        "saved_at": time.time_ns(),
        "files": _list_files(folder),
    }
    manifest["checksum"] = _manifest_checksum(manifest)
    write_json(folder / MANIFEST, manifest)


def read_manifest(folder: Path, kinds: Iterable[str] | None = None, max_version: int | None = None) -> dict[str, Any]:
    """Read, type-check and verify ``manifest.json``; ``kinds`` restricts what may be loaded from this folder.

    Every file the manifest lists at this level is checked (no links, size, sha256) before the caller
    reads it; sub-folders are checked when they are loaded.
    """
    manifest_path = folder / MANIFEST
    if not manifest_path.exists() and not manifest_path.is_symlink():
        raise IndexNotFoundError(
            f"{str(folder)!r} has no {MANIFEST}: it is not a saved lateint-plugins index or store."
        )
    manifest = _parse_manifest(folder, list(kinds) if kinds is not None else None, max_version)
    problems = _verify_level(folder, manifest)
    if problems:
        raise CorruptIndexError(f"{folder} is damaged: files do not match its manifest ({'; '.join(problems[:5])}).")
    return manifest


def _parse_manifest(folder: Path, kinds: list[str] | None = None, max_version: int | None = None) -> dict[str, Any]:
    """The manifest of ``folder``, schema-checked (raises :class:`CorruptIndexError`)."""
    manifest_path = folder / MANIFEST
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise CorruptIndexError(f"{manifest_path} is not a regular file; links are refused inside saved folders.")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise CorruptIndexError(
            f"{manifest_path} must hold a JSON object, got {type(manifest).__name__}; the saved folder is damaged."
        )
    if manifest.get("format") != FORMAT:
        raise CorruptIndexError(f"{manifest_path} is not a lateint-plugins manifest (field 'format').")
    check_fields(manifest, _COMMON_FIELDS, str(manifest_path))
    if kinds is not None and manifest["kind"] not in kinds:
        raise CorruptIndexError(
            f"{str(folder)!r} holds a {manifest['kind']!r}, but a {' or '.join(map(repr, kinds))} was expected."
        )
    if max_version is not None and manifest["version"] > max_version:
        raise CorruptIndexError(
            f"{str(folder)!r} was written by a newer lateint-plugins (format version {manifest['version']}, this "
            f"version reads up to {max_version}); upgrade lateint-plugins."
        )
    fields = _KIND_FIELDS.get(manifest["kind"])
    if fields is None:
        raise CorruptIndexError(f"{manifest_path}: field 'kind' has an unknown value {manifest['kind']!r}.")
    check_fields(manifest, fields, str(manifest_path))
    if "files" in manifest:  # written with checksums: the manifest must check out against itself
        if manifest.get("checksum") != _manifest_checksum(manifest):
            raise CorruptIndexError(f"{manifest_path}: field 'checksum' does not match its content; it was edited.")
        for name, entry in manifest["files"].items():
            if not _safe_name(name):
                raise CorruptIndexError(f"{manifest_path}: field 'files' lists an unsafe path {name!r}.")
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("size"), int)
                and not isinstance(entry.get("size"), bool)
                and entry["size"] >= 0
                and isinstance(entry.get("sha256"), str)
                and _SHA256.fullmatch(entry["sha256"])
            ):
                raise CorruptIndexError(f"{manifest_path}: field 'files' has a malformed entry for {name!r}.")
    return manifest


def verify_folder(folder: Path, *, deep: bool = True) -> list[str]:
    """Every problem with the saved folder ``folder`` (empty when it is complete and intact).

    Checks the manifest's schema and checksum, that no entry is a link, and the size and sha256 of
    every listed file; with ``deep``, sub-folders too.
    """
    try:
        if not folder.is_dir() or folder.is_symlink():
            return [f"{folder} is not a folder"]
        manifest = _parse_manifest(folder)
    except (CorruptIndexError, OSError) as exc:
        return [str(exc)]
    problems = _verify_level(folder, manifest)
    if deep and not problems:
        for name in manifest.get("files", {}):
            if "/" in name:
                problems += verify_folder(folder / name.split("/")[0], deep=True)
    return problems


def _verify_level(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    problems = []
    files: dict[str, Any] | None = manifest.get("files")
    listed_tops = {name.split("/")[0] for name in files} if files is not None else set()
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        return [f"cannot list {folder} ({exc})"]
    for entry in entries:
        if entry.is_symlink():
            problems.append(f"{entry.name} is a link; links are refused inside saved folders")
        elif files is not None and entry.name not in {*listed_tops, MANIFEST} and not entry.name.startswith("."):
            problems.append(f"{entry.name} is not listed in {MANIFEST}")
    for name, entry in (files or {}).items():
        path = folder / name
        try:
            parts = [folder / name.split("/")[0], path] if "/" in name else [path]
            if any(p.is_symlink() for p in parts):
                problems.append(f"{name} is a link; links are refused inside saved folders")
                continue
            info = os.lstat(path)
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{name} is not a regular file")
        elif info.st_size != entry["size"]:
            problems.append(f"{name} has {info.st_size} bytes, the manifest says {entry['size']}")
        else:
            try:
                digest = sha256_file(path)
            except OSError:  # removed since the lstat (a save discarding the folder it moved aside)
                problems.append(f"{name} is missing")
                continue
            if digest != entry["sha256"]:
                problems.append(f"{name} does not match its sha256 in {MANIFEST}")
    return problems


def _list_files(folder: Path) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name == MANIFEST:
            continue
        if entry.is_symlink():
            raise CorruptIndexError(f"{entry.path} is a link; saved folders hold only regular files.")
        if entry.is_dir():
            name, path = f"{entry.name}/{MANIFEST}", Path(entry.path) / MANIFEST
            if not path.is_file():
                raise CorruptIndexError(f"internal error: sub-folder {entry.path} has no {MANIFEST}")
        else:
            name, path = entry.name, Path(entry.path)
        files[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def _safe_name(name: object) -> bool:
    if not isinstance(name, str) or not name or name.startswith((".", "/")) or "\\" in name or "\x00" in name:
        return False
    parts = name.split("/")
    return (len(parts) == 1 and parts[0] != MANIFEST) or (
        len(parts) == 2 and parts[1] == MANIFEST and parts[0] not in ("", ".", "..")
    )


def _manifest_checksum(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


# ---------------------------------------------------------------------- JSON and JSONL
def write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)


def _check_regular(path: Path) -> None:
    """Raise :class:`CorruptIndexError` unless ``path`` is a regular file (not a link, folder, FIFO or device).

    Opening a FIFO would block forever, so folders written before manifests listed their files
    (where nothing else vouches for the entry) are checked here, before any file is opened.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except OSError as exc:
        raise CorruptIndexError(f"{path} cannot be read ({exc}); the saved folder is damaged.") from exc
    if not stat.S_ISREG(info.st_mode):
        what = "a link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise CorruptIndexError(f"{path} is {what}; saved folders hold only regular files.")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_utf8_strings(row: Any, where: str) -> None:
    """Reject decoded strings UTF-8 cannot encode (``"\\ud800"`` escapes): they would make every later save fail."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise CorruptIndexError(
            f"{where} holds a string with a lone surrogate (an escaped '\\ud800'); the saved folder is damaged."
        ) from None


def read_json(path: Path) -> Any:
    _check_regular(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptIndexError(f"{path} is not valid JSON ({exc}); the saved folder is damaged.") from exc
    except OSError as exc:
        raise CorruptIndexError(f"{path} cannot be read ({exc}); the saved folder is damaged.") from exc


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Write one JSON document per line (UTF-8); a row that UTF-8 cannot encode is an :class:`InvalidInputError`."""
    with open(path, "w", encoding="utf-8") as f:
        for number, row in enumerate(rows, 1):
            line = json.dumps(row, ensure_ascii=False)
            try:
                f.write(line + "\n")
            except UnicodeEncodeError as exc:
                what = f"document {row['id']!r}" if isinstance(row, dict) and "id" in row else f"row {number}"
                raise InvalidInputError(
                    f"Cannot save {what}: its id, text or metadata holds a string UTF-8 cannot encode "
                    f"(a lone surrogate such as '\\ud800'); delete or fix that document, then save again."
                ) from exc


def read_jsonl(path: Path, fields: Mapping[str, str] | None = None) -> list[Any]:
    """Rows of a JSON-lines file; with ``fields`` every row must be an object fitting that schema.

    Errors are :class:`CorruptIndexError` naming ``path:line``.
    """
    rows = []
    _check_regular(path)
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line, parse_constant=_no_constant)
                except (json.JSONDecodeError, ValueError, RecursionError) as exc:
                    raise CorruptIndexError(f"{path}:{number} is not valid JSON ({exc}); the file is damaged.") from exc
                if "\\u" in line:  # only an escape can decode to a lone surrogate
                    _check_utf8_strings(row, f"{path}:{number}")
                if fields is not None:
                    if not isinstance(row, dict):
                        raise CorruptIndexError(
                            f"{path}:{number} must be a JSON object, got {type(row).__name__}; the file is damaged."
                        )
                    check_fields(row, fields, f"{path}:{number}")
                rows.append(row)
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except UnicodeDecodeError as exc:
        raise CorruptIndexError(f"{path} is not UTF-8 ({exc}); the saved folder is damaged.") from exc
    except OSError as exc:
        raise CorruptIndexError(f"{path} cannot be read ({exc}); the saved folder is damaged.") from exc
    return rows


# ---------------------------------------------------------------------- arrays
def save_array(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def read_array_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any], bool, int]:
    """``(shape, dtype, fortran_order, data offset)`` of an ``.npy`` file, read without touching its data."""
    _check_regular(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
    except FileNotFoundError as exc:
        raise CorruptIndexError(f"{path} is missing; the saved folder is incomplete.") from exc
    except Exception as exc:  # numpy parses the header with ast/tokenize: damage can raise many types
        raise CorruptIndexError(f"{path} has a damaged .npy header ({type(exc).__name__}: {exc}).") from exc
    return tuple(shape), dtype, bool(fortran), offset


def load_array(
    folder: Path,
    name: str,
    *,
    dtype: Any = None,
    shape: tuple[int | None, ...] | None = None,
    mmap: bool = False,
) -> np.ndarray:
    """Read ``NAME.npy`` after checking its header against ``dtype`` and ``shape`` (None = any size there).

    The header is checked before any data is read or allocated: dtype, C order, shape, and the file
    size the header implies. Raises :class:`CorruptIndexError` naming the file and what differs.
    """
    path = folder / f"{name}.npy"
    if path.is_symlink():
        raise CorruptIndexError(f"{path} is a link; links are refused inside saved folders.")
    found_shape, found_dtype, fortran, offset = read_array_header(path)
    problems = []
    if found_dtype.hasobject or (dtype is not None and found_dtype != np.dtype(dtype)):
        problems.append(f"dtype {found_dtype} (expected {np.dtype(dtype) if dtype is not None else 'plain data'})")
    if fortran:
        problems.append("Fortran order (expected C order)")
    if shape is not None and (
        len(found_shape) != len(shape) or any(e is not None and e != f for e, f in zip(shape, found_shape, strict=True))
    ):
        problems.append(f"shape {found_shape} (expected {tuple('*' if e is None else e for e in shape)})")
    if not problems:
        expected_size = offset + _count(found_shape) * found_dtype.itemsize
        size = path.stat().st_size
        if size != expected_size:
            problems.append(f"{size} bytes where its header implies {expected_size}")
    if problems:
        raise CorruptIndexError(f"{path} does not match the manifest: {', '.join(problems)}; the index is damaged.")
    try:
        return np.load(path, mmap_mode="r" if mmap and _count(found_shape) else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptIndexError(f"{path} cannot be read ({exc}); the saved folder is damaged.") from exc


def has_non_finite(array: np.ndarray, chunk: int = 1 << 22) -> bool:
    """True if a float array holds NaN or an infinity (float16 tested on its exponent bits: 2x faster)."""
    flat = array.reshape(-1)
    for start in range(0, flat.size, chunk):
        part = flat[start : start + chunk]
        if part.dtype == np.float16:
            if ((part.view(np.uint16) & 0x7C00) == 0x7C00).any():
                return True
        elif not np.isfinite(part).all():
            return True
    return False


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# ---------------------------------------------------------------------- durability
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
