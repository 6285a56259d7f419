"""The one metadata filter model: parsed once, evaluated here for core indexes, translated for Qdrant.

A filter is ``None`` or a JSON-like dict in the "Mongo style" LangChain's vector stores take:

==========================================  ====================================================
``{}`` / ``None``                           everything matches
``{"f": v}`` / ``{"f": {"$eq": v}}``        equality; ``v`` is str, int, float or bool
``{"f": {"$ne": v}}``                       not ``$eq``
``{"f": {"$gt" | "$gte" | "$lt" | "$lte": x}}``  numeric range (int/float ``x``; bool refused)
``{"f": {"$in" | "$nin": [v, ...]}}``       any of / none of (non-empty list of scalars)
``{"f": {"$all": [v, ...]}}``               the (list) field holds every one of them
``{"f": {"$exists": bool}}``                present, not None and not an empty list (Qdrant's IsEmpty)
``{"f": {"$text": s}}``                     ``s`` is a substring of the (str) field, case-sensitive
``{"f": {"$itext": s}}``                    the same, case-insensitive (core stores only, below)
``{"$and" | "$or": [f, ...]}``, ``{"$not": f}``  nest; plain fields beside them are ANDed
==========================================  ====================================================

Several fields (or several operators on one field) in one dict are ANDed, each condition on its
own: ``{"n": {"$gt": 1, "$lt": 5}}`` on ``{"n": [0, 10]}`` holds (10 > 1 and 0 < 5).

Semantics (Qdrant's, so the core evaluator and the Qdrant translation give the same ids):

- Type-strict: ``True`` matches only ``True``, never ``1``; numbers compare numerically
  (``1 == 1.0``); a bool is not a number and a str never equals a number.
- List-valued metadata: a condition holds when ANY element satisfies it; ``$ne`` / ``$nin`` are
  the negation of ``$eq`` / ``$in``, so ``{"tags": {"$ne": "a"}}`` does not match ``["a", "b"]``.
- A missing field (or None, or ``[]``): ``$eq`` / ``$in`` / ``$all`` / ranges / ``$text`` are
  false; ``$ne`` / ``$nin`` are true; ``$exists`` is false.
- Ranges on a non-number and ``$text`` on a non-str are false (no error at search time).
- Dotted keys (``"a.b"``) address nested dicts, as in Qdrant; an array on the way (``a`` a list of
  dicts) is not looked into (Qdrant needs ``a[].b`` for that, which this model does not offer).

Deviations from the shared spec (``FILTERS.md``), and why:

- ``$itext`` has no Qdrant equivalent: a ``MatchText`` without a full-text payload index is a
  case-sensitive substring match, and with one it is a token match (not a substring). The
  Qdrant translator refuses ``$itext`` with :class:`InvalidInputError` (before any search)
  rather than silently answering differently; core stores evaluate it.
- ``$text`` is translated to Qdrant's ``MatchSubstring``, not ``MatchText``: without a full-text
  index ``MatchText`` matches whole lower-cased words in any order, with one it uses the index's
  tokenizer; neither is a substring. Empty strings are refused as ``$text`` / ``$itext`` operands.
- Integers beyond +-2**53 are refused as operands: Qdrant compares numbers as float64, so
  ``2**53 + 1`` could not be told from ``2**53`` there.
- ``$exists`` follows Qdrant's ``IsEmpty`` exactly: ``[None]`` is a present (non-empty) value.
- Lists nested in lists never match a scalar condition (only one level of list is looked into,
  as in Qdrant); arrays of dicts on a dotted path are not looked into.

Malformed filters (unknown ``$op``, wrong operand type, empty ``$in``, None value, non-str or empty
key) raise :class:`~lateint_plugins.core.errors.InvalidInputError` naming the offending part and
the fix, before any search runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._checks import is_utf8
from .errors import InvalidInputError

__all__ = [
    "COMPARISONS",
    "And",
    "Condition",
    "Filter",
    "Not",
    "Or",
    "Scalar",
    "field_values",
    "matches",
    "parse_filter",
]

Scalar = str | int | float | bool

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$all", "$exists", "$text", "$itext")
"""Every operator a field condition may use."""
_RANGES = ("$gt", "$gte", "$lt", "$lte")
_LISTS = ("$in", "$nin", "$all")
_LOGICAL = ("$and", "$or", "$not")


@dataclass(frozen=True)
class Condition:
    """One operator on one field: ``key`` as given (dotted), ``path`` its segments, ``operand`` checked.

    ``operand`` is a scalar, a tuple of scalars (``$in`` / ``$nin`` / ``$all``) or a bool (``$exists``).
    """

    key: str
    path: tuple[str, ...]
    op: str
    operand: Any


@dataclass(frozen=True)
class And:
    """Every item holds (``And(())`` matches everything)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    """At least one item holds."""

    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    """The item does not hold."""

    item: Filter


Filter = Condition | And | Or | Not


# ---------------------------------------------------------------------------------------- parsing
def parse_filter(filter: object, name: str = "filter") -> Filter | None:
    """Validate a filter dict and return its immutable tree (None when it matches everything).

    Args:
        filter: None, a dict as described in the module docstring, or an already parsed tree.
        name: the caller's argument name, used in error messages (``filter["year"]["$gt"]: ...``).

    Raises:
        InvalidInputError: the filter is malformed; the message names the offending part and the fix.
    """
    if filter is None or isinstance(filter, (Condition, And, Or, Not)):
        return filter
    if not isinstance(filter, Mapping):
        raise InvalidInputError(
            f"{name} must be a dict such as {{'year': {{'$gte': 2020}}}} (or None), got {type(filter).__name__}."
        )
    if not filter:
        return None
    return _parse_dict(filter, name)


def _parse_dict(filter: Mapping[Any, Any], where: str) -> Filter:
    nodes: list[Filter] = []
    for key, value in filter.items():
        at = f"{where}[{key!r}]"
        if not isinstance(key, str):
            raise InvalidInputError(
                f"{where} has the key {key!r} of type {type(key).__name__}; filter keys must be str metadata keys "
                "or '$and' / '$or' / '$not'."
            )
        if not is_utf8(key):
            raise InvalidInputError(
                f"{where} has the key {_show(key)}, which cannot be encoded as UTF-8 (a lone surrogate); fix the key."
            )
        if key.startswith("$"):
            nodes.append(_parse_logical(key, value, at))
        else:
            nodes.extend(_parse_field(key, value, at))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _parse_logical(op: str, value: object, at: str) -> Filter:
    if op == "$not":
        if not isinstance(value, Mapping):
            raise InvalidInputError(
                f"{at} must be a filter dict, got {type(value).__name__}; e.g. {{'$not': {{'a': 1}}}}."
            )
        return Not(_parse_dict(value, at) if value else And(()))
    if op in ("$and", "$or"):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value:
            raise InvalidInputError(
                f"{at} must be a non-empty list of filter dicts, got {_show(value)}; e.g. {{{op!r}: [{{'a': 1}}, "
                "{'b': 2}]}."
            )
        items = []
        for i, sub in enumerate(value):
            if not isinstance(sub, Mapping):
                raise InvalidInputError(f"{at}[{i}] must be a filter dict, got {type(sub).__name__}.")
            items.append(_parse_dict(sub, f"{at}[{i}]") if sub else And(()))
        return And(tuple(items)) if op == "$and" else Or(tuple(items))
    raise InvalidInputError(
        f"{at}: unknown logical operator {op!r}; use one of {list(_LOGICAL)} at this level, or put comparison "
        f"operators under a field: {{'field': {{{op!r}: ...}}}}."
    )


def _parse_field(key: str, value: object, at: str) -> list[Filter]:
    path = tuple(key.split("."))
    if not key or any(not part for part in path):
        raise InvalidInputError(
            f"{at}: metadata key {key!r} is empty or has an empty part; use 'name' or dotted 'outer.inner'."
        )
    if isinstance(value, Mapping):
        if not value:
            raise InvalidInputError(f"{at} is an empty operator dict; use e.g. {{'$eq': ...}} or {{'$exists': True}}.")
        return [_parse_operator(key, path, op, operand, f"{at}[{op!r}]") for op, operand in value.items()]
    if value is None:
        raise InvalidInputError(
            f"{at} is None; to find documents without the field use {{{key!r}: {{'$exists': False}}}}."
        )
    if not _is_scalar(value):
        hint = f"{{{key!r}: {{'$in': [...]}}}}" if isinstance(value, (list, tuple)) else "a str, int, float or bool"
        raise InvalidInputError(f"{at} = {_show(value)} cannot be matched; use {hint}.")
    if isinstance(value, str) and not is_utf8(value):
        raise InvalidInputError(f"{at} = {_show(value)} cannot be encoded as UTF-8; fix the string.")
    return [Condition(key, path, "$eq", value)]


def _parse_operator(key: str, path: tuple[str, ...], op: object, operand: object, at: str) -> Condition:
    if not isinstance(op, str) or op not in COMPARISONS:
        raise InvalidInputError(f"{at}: unknown operator {op!r}; use one of {list(COMPARISONS)}.")
    if op in ("$eq", "$ne"):
        if not _is_scalar(operand):
            raise InvalidInputError(
                f"{at} must be a str, int (within +-2**53), finite float or bool, got {_show(operand)}"
                + ("; use {'$exists': False} for missing fields." if operand is None else ".")
            )
    elif op in _RANGES:
        if isinstance(operand, (bool, str)) or not _is_scalar(operand):
            raise InvalidInputError(f"{at} must be a finite int or float (ints within +-2**53), got {_show(operand)}.")
    elif op in _LISTS:
        if isinstance(operand, (str, bytes, Mapping)) or not isinstance(operand, Sequence) or not operand:
            raise InvalidInputError(f"{at} must be a non-empty list of str, int, float or bool, got {_show(operand)}.")
        bad = [v for v in operand if not _is_scalar(v)]
        if bad:
            raise InvalidInputError(f"{at} holds {_show(bad[0])}; list items must be str, int, finite float or bool.")
        operand = tuple(operand)
    elif op == "$exists":
        if not isinstance(operand, bool):
            raise InvalidInputError(f"{at} must be True or False, got {_show(operand)}.")
    elif not isinstance(operand, str) or not operand:
        raise InvalidInputError(f"{at} must be a non-empty str (the substring to look for), got {_show(operand)}.")
    for item in operand if isinstance(operand, tuple) else (operand,):
        if isinstance(item, str) and not is_utf8(item):
            raise InvalidInputError(f"{at} holds {_show(item)}, which cannot be encoded as UTF-8; fix the string.")
    return Condition(key, path, op, operand)


_MAX_EXACT_INT = 2**53


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= _MAX_EXACT_INT
    return isinstance(value, (str, bool))


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------- evaluation
def matches(filter: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` satisfies the parsed ``filter`` (None matches everything)."""
    if filter is None:
        return True
    if isinstance(filter, Condition):
        if filter.op == "$exists":
            return _present(metadata, filter.path) == filter.operand
        return _holds(filter, field_values(metadata, filter.path))
    if isinstance(filter, And):
        return all(matches(item, metadata) for item in filter.items)
    if isinstance(filter, Or):
        return any(matches(item, metadata) for item in filter.items)
    return not matches(filter.item, metadata)


def field_values(metadata: Mapping[str, Any], path: Sequence[str]) -> list[Any]:
    """The values a condition on ``path`` looks at: the field's value, or its elements when it is a list.

    None values are dropped, so a missing field, None and ``[]`` all give ``[]``.
    """
    value: Any = metadata
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return []
        value = value[part]
    items = value if isinstance(value, list) else [value]
    return [v for v in items if v is not None]


def _present(metadata: Mapping[str, Any], path: Sequence[str]) -> bool:
    """Whether ``path`` resolves to a value that is neither None nor ``[]`` (Qdrant's "not IsEmpty")."""
    value: Any = metadata
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return value is not None and value != []


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(value: object, operand: Scalar) -> bool:
    if isinstance(operand, bool):
        return isinstance(value, bool) and value == operand
    if isinstance(operand, str):
        return isinstance(value, str) and value == operand
    return _is_number(value) and value == operand


def _holds(cond: Condition, values: list[Any]) -> bool:
    op, operand = cond.op, cond.operand
    if op == "$eq":
        return any(_equal(v, operand) for v in values)
    if op == "$ne":
        return not any(_equal(v, operand) for v in values)
    if op == "$in":
        return any(_equal(v, o) for v in values for o in operand)
    if op == "$nin":
        return not any(_equal(v, o) for v in values for o in operand)
    if op == "$all":
        return all(any(_equal(v, o) for v in values) for o in operand)
    if op == "$text":
        return any(isinstance(v, str) and operand in v for v in values)
    if op == "$itext":
        needle = operand.casefold()
        return any(isinstance(v, str) and needle in v.casefold() for v in values)
    numbers = [v for v in values if _is_number(v)]
    if op == "$gt":
        return any(v > operand for v in numbers)
    if op == "$gte":
        return any(v >= operand for v in numbers)
    if op == "$lt":
        return any(v < operand for v in numbers)
    return any(v <= operand for v in numbers)
