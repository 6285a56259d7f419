"""Input checks shared by every public entry point, so "valid" means the same thing everywhere.

Each check raises :class:`~.errors.InvalidInputError` (or a subclass) whose message names the
caller's argument (``embeddings[3]``, ``query``, ``metadatas[0]['a']``), the offending value and the
fix, and returns the input in the one form the engine works with. Nothing here changes any state,
so an entry point that runs its checks first fails before anything changes.

The checks are cheap: vectors are checked with one vectorised pass (``torch.isfinite(x).all()``),
strings with ``str.isascii`` before the slower UTF-8 encode.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DimensionMismatchError, DuplicateIdError, InvalidInputError

__all__ = [
    "check_device",
    "check_encoder",
    "check_filter",
    "check_ids",
    "check_k",
    "check_matrices",
    "check_matrix",
    "check_metadata",
    "check_metadatas",
    "check_non_negative",
    "check_path",
    "check_sequence",
    "check_tensor",
    "check_text",
    "check_texts",
    "is_utf8",
]


def _show(value: object, limit: int = 60) -> str:
    """A short ``repr`` for messages (hostile inputs can be huge)."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_utf8(text: str) -> bool:
    """True when ``text`` can be encoded as UTF-8 (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_utf8(name: str, text: str) -> InvalidInputError:
    return InvalidInputError(
        f"{name} cannot be encoded as UTF-8 (it holds a lone surrogate such as '\\ud800'): {_show(text)}; "
        "decode your input with errors='replace' or drop those characters."
    )


# ---------------------------------------------------------------------------------------- containers
def check_sequence(value: object, name: str, what: str = "items", one: str = "item") -> list[Any]:
    """``value`` as a list: any ordered iterable except a bare ``str``/``bytes``, a mapping or a set.

    A bare string is rejected rather than read as a sequence of characters (``ids="ab"`` is not
    ``["a", "b"]``).
    """
    if isinstance(value, (str, bytes, bytearray)):
        raise InvalidInputError(
            f"{name} must be a list of {what}, got a bare {type(value).__name__} {_show(value)}; "
            f"wrap a single {one} in a list."
        )
    if value is None or isinstance(value, (Mapping, AbstractSet)) or not isinstance(value, Iterable):
        raise InvalidInputError(f"{name} must be a list of {what}, got {type(value).__name__}.")
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        raise InvalidInputError(f"{name} must be a list of {what}, got a 0-d {type(value).__name__}.")
    return list(value)


# ---------------------------------------------------------------------------------------- numbers
def check_tensor(x: object, name: str) -> torch.Tensor:
    """``x`` (a tensor or NumPy array of real floats, all finite) as a ``torch.Tensor``; any rank.

    NumPy arrays are wrapped without a copy when they are contiguous.
    """
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f" or x.dtype.itemsize > 8:
            raise InvalidInputError(
                f"{name} must hold real floats (float16/32/64), got dtype {x.dtype}; convert with .astype('float32')."
            )
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor or numpy array of floats, got {type(x).__name__}.")
    elif x.layout != torch.strided:
        raise InvalidInputError(f"{name} must be a dense tensor, got layout {x.layout}; call .to_dense().")
    elif not x.is_floating_point():
        raise InvalidInputError(
            f"{name} must hold real floats (float16/bfloat16/float32/float64), got {x.dtype}; convert with .float()."
        )
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise InvalidInputError(
            f"{name} holds NaN or infinite values; every vector component must be finite "
            "(check the model output or the file the vectors came from)."
        )
    return x


def check_matrix(
    x: object, name: str, dim: int | None = None, *, allow_empty: bool = False, max_abs: float | None = None
) -> torch.Tensor:
    """``x`` as a finite float tensor of shape ``(n, dim)``: ``n >= 1`` (``>= 0`` with ``allow_empty``).

    Args:
        x: a ``torch.Tensor`` or NumPy array.
        name: the caller's name for it in messages (``embeddings[3]``, ``query_embeddings``).
        dim: required width; None accepts any width ``>= 1``.
        allow_empty: accept a matrix with no rows (a document with no tokens scores 0 in MaxSim).
        max_abs: reject values whose magnitude exceeds it (e.g. float16's 65504, for a store that
            keeps float16 and would otherwise turn them into infinities).

    Raises:
        InvalidInputError: wrong type, dtype (integer, bool, complex, object), rank, an empty
            matrix, or a NaN/inf value.
        DimensionMismatchError: the width is not ``dim``.
    """
    t = check_tensor(x, name)
    if t.dim() != 2 or t.shape[1] == 0 or (t.shape[0] == 0 and not allow_empty):
        raise InvalidInputError(
            f"{name} must be a {'' if allow_empty else 'non-empty '}2-D (n_tokens, dim) matrix, "
            f"got shape {tuple(t.shape)}."
        )
    if dim is not None and t.shape[1] != dim:
        raise DimensionMismatchError(
            f"{name} has dimension {t.shape[1]} but {dim}-d vectors are expected; "
            "encode with the model the index (or the other inputs) were built with."
        )
    if max_abs is not None and t.numel() and float(t.abs().max()) > max_abs:
        raise InvalidInputError(
            f"{name} holds values beyond |x| <= {max_abs:g}, which would be stored as infinite; "
            "token vectors should be unit-normalised."
        )
    return t


def check_matrices(x: object, name: str) -> list[Any]:
    """``x`` as a list with one ``(n_tokens, dim)`` matrix per item (each checked by :func:`check_matrix`).

    One bare 2-D matrix (a common slip) is an error, not a list of its rows.
    """
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim == 2:
        raise InvalidInputError(
            f"{name} must be a list of (n_tokens, dim) matrices, one per item, got one matrix of shape "
            f"{tuple(x.shape)}; wrap a single matrix in a list."
        )
    return check_sequence(x, name, "(n_tokens, dim) matrices", "matrix")


def check_k(k: object, name: str = "k") -> int:
    """A positive int (NumPy integers accepted; ``bool`` rejected)."""
    return _int_at_least(k, name, 1, "a positive int")


def check_non_negative(value: object, name: str) -> int:
    """An int ``>= 0`` (NumPy integers accepted; ``bool`` rejected)."""
    return _int_at_least(value, name, 0, "an int >= 0")


def _int_at_least(k: object, name: str, low: int, what: str) -> int:
    if isinstance(k, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be {what}, got the bool {k!r}.")
    try:
        value = operator.index(k)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError(f"{name} must be {what}, got {type(k).__name__} {_show(k)}.") from None
    if value < low:
        raise InvalidInputError(f"{name} must be {what}, got {value}.")
    return int(value)


def check_device(device: object, name: str = "device") -> torch.device:
    """``device`` (a ``torch.device``, a name such as ``"cpu"`` or ``"cuda:0"``, or an ordinal) as a torch.device."""
    if isinstance(device, torch.device):
        return device
    bad_str = isinstance(device, str) and not is_utf8(device)
    if isinstance(device, bool) or not isinstance(device, (str, int)) or bad_str:
        raise InvalidInputError(
            f"{name} must be a torch device or a device name such as 'cpu' or 'cuda', got {_show(device)}."
        )
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a torch device such as 'cpu' or 'cuda', got {device!r}.") from exc


def check_encoder(encoder: object, name: str = "encoder") -> Any:
    """``encoder`` if it can encode (a :class:`~.encoder.ColBERTEncoder` or anything with its ``dim``,
    ``encode_queries`` and ``encode_documents``); None or another object is an error naming ``name``."""
    dim = getattr(encoder, "dim", None)
    if (
        isinstance(dim, bool)
        or not isinstance(dim, int)
        or dim < 1
        or not callable(getattr(encoder, "encode_queries", None))
        or not callable(getattr(encoder, "encode_documents", None))
    ):
        raise InvalidInputError(
            f"{name} must be a ColBERTEncoder (e.g. ColBERTEncoder.from_pretrained(...)), got {type(encoder).__name__}."
        )
    return encoder


# ---------------------------------------------------------------------------------------- paths
def check_path(path: object, name: str = "path") -> Path:
    """``path`` (a ``str`` or ``os.PathLike`` of str) as a ``Path``; None, bytes, numbers and ``""`` are errors."""
    if isinstance(path, os.PathLike) and not isinstance(path, Path):
        path = os.fspath(path)
    if not isinstance(path, (str, Path)):
        raise InvalidInputError(f"{name} must be a folder path (str or pathlib.Path), got {type(path).__name__}.")
    text = str(path)
    if not text or "\x00" in text:
        raise InvalidInputError(f"{name} must be a non-empty folder path without NUL characters, got {text!r}.")
    return Path(path)


# ---------------------------------------------------------------------------------------- text
def check_text(text: object, name: str, *, allow_empty: bool = False) -> str:
    """One ``str`` that is valid UTF-8 and, unless ``allow_empty``, not empty or whitespace."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{name} must be a str, got {type(text).__name__}: {_show(text)}.")
    if not is_utf8(text):
        raise _not_utf8(name, text)
    if not allow_empty and not text.strip():
        raise InvalidInputError(f"{name} is empty or whitespace; give it some text.")
    return text


def check_texts(texts: object, name: str = "texts", *, allow_empty: bool = True) -> list[str]:
    """A list of valid UTF-8 ``str`` (an empty list is fine; the caller decides).

    ``allow_empty`` is about each item: documents may be empty (they encode to their marker
    tokens), queries may not.
    """
    items = check_sequence(texts, name, "str", "text")
    for i, text in enumerate(items):
        check_text(text, f"{name}[{i}]", allow_empty=allow_empty)
    return items


# ---------------------------------------------------------------------------------------- ids
def check_ids(ids: object, name: str = "ids", *, unique: bool = True) -> list[str]:
    """A list of non-empty, valid UTF-8 ``str`` ids; repeated ids raise :class:`DuplicateIdError` when ``unique``."""
    out = check_sequence(ids, name, "str ids", "id")
    for i, doc_id in enumerate(out):
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidInputError(f"{name}[{i}] must be a non-empty str, got {_show(doc_id)}.")
        if not is_utf8(doc_id):
            raise _not_utf8(f"{name}[{i}]", doc_id)
    if unique and len(set(out)) != len(out):
        seen: set[str] = set()
        dupes = sorted({d for d in out if d in seen or seen.add(d)})  # type: ignore[func-returns-value]
        raise DuplicateIdError(f"{name} repeats {dupes[:5]}; each id may appear once.")
    return out


# ---------------------------------------------------------------------------------------- metadata
def check_metadata(meta: object, name: str = "metadata") -> dict[str, Any]:
    """A JSON-serialisable dict with str keys (None gives ``{}``), returned as a deep copy.

    Values may be None, bool, int, finite float, valid UTF-8 str, lists/tuples and dicts of those.
    The copy is what JSON gives back, so tuples come back as lists; nothing else is converted.
    """
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"{name} must be a dict or None, got {type(meta).__name__}.")
    try:
        encoded = json.dumps(dict(meta), allow_nan=False, ensure_ascii=False)
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        _find_bad_string(meta, name)  # names the value
        raise InvalidInputError(f"{name} holds a string that cannot be encoded as UTF-8.") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(
            f"{name} must be JSON-serialisable (None, bool, int, finite float, str, lists and dicts with str keys) "
            f"so it can be saved: {exc}."
        ) from None
    _check_keys(meta, name)
    copy: dict[str, Any] = json.loads(encoded)
    return copy


def check_metadatas(metadatas: object, n: int, name: str = "metadatas") -> list[dict[str, Any]]:
    """One checked metadata dict per document (``None`` gives ``n`` empty dicts)."""
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, Mapping):
        raise InvalidInputError(
            f"{name} must be a list with one dict (or None) per document, got a single {type(metadatas).__name__}; "
            "wrap it in a list."
        )
    items = check_sequence(metadatas, name, "dicts", "dict")
    if len(items) != n:
        raise InvalidInputError(f"Got {n} documents but {len(items)} {name}; pass one dict (or None) per document.")
    return [check_metadata(m, f"{name}[{i}]") for i, m in enumerate(items)]


def check_filter(filter: object, name: str = "filter") -> Any:
    """A metadata filter parsed and validated by :func:`~lateint_plugins.core.filters.parse_filter`.

    Returns the immutable filter tree, or None when the filter matches everything (None or ``{}``).
    """
    from .filters import parse_filter

    return parse_filter(filter, name)


def _check_keys(value: object, name: str) -> None:
    """Raise unless every dict inside ``value`` has str keys (JSON would silently turn 1 into "1")."""
    stack: list[tuple[object, str]] = [(value, name)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise InvalidInputError(
                        f"{where} has the key {_show(key)} of type {type(key).__name__}; metadata keys must be str "
                        "(JSON would turn it into a string)."
                    )
                stack.append((sub, f"{where}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, f"{where}[{i}]") for i, sub in enumerate(item))


def _find_bad_string(value: object, name: str) -> None:
    """Raise naming the first key or str value inside ``value`` that is not valid UTF-8."""
    stack: list[tuple[object, str]] = [(value, name)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str) and not is_utf8(item):
            raise _not_utf8(where, item)
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if isinstance(key, str) and not is_utf8(key):
                    raise _not_utf8(f"a key of {where}", key)
                stack.append((sub, f"{where}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, f"{where}[{i}]") for i, sub in enumerate(item))
