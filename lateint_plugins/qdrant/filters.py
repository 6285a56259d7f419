"""The one filter model (:mod:`lateint_plugins.core.filters`) translated to Qdrant filters on ``metadata.<key>``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lateint_plugins.core.errors import (
    InvalidInputError,
)
from lateint_plugins.core.filters import And, Filter, Not, Or, parse_filter

if TYPE_CHECKING:
    from qdrant_client import models

from lateint_plugins.qdrant.layout import _KEY


def to_qdrant_filter(
    filter: Mapping[str, Any] | Filter | models.Filter | None, *, metadata_key: str = "metadata"
) -> models.Filter | None:
    """A metadata filter (:mod:`lateint_plugins.core.filters`) as a Qdrant ``Filter`` on ``<metadata_key>.<key>``.

    ``metadata_key`` is the payload key holding the metadata (:attr:`PayloadKeys.metadata`).

    The translation gives the same documents as the core evaluator
    (:func:`~lateint_plugins.core.filters.matches`), on local mode and on a server, and is
    unambiguous for both: numbers compare as closed ``Range`` s (``MatchValue`` takes no floats, and
    a range compares ``1`` and ``1.0`` numerically while never matching a bool), bools and str as
    ``MatchValue`` / ``MatchAny``, ``$ne`` / ``$nin`` as ``must_not``, ``$exists`` as
    ``IsEmptyCondition``, ``$text`` as ``MatchSubstring`` (``MatchText`` is a word match, not a
    substring). Each operator is its own condition, so on list fields each holds for any element.
    ``$itext`` is refused: Qdrant has no case-insensitive substring match.

    A ``qdrant_client.models.Filter`` passes through unchanged (full Qdrant semantics, any payload key).

    Raises:
        InvalidInputError: the filter is malformed, or uses ``$itext`` (before anything is sent).
    """
    from qdrant_client import models

    if isinstance(filter, models.Filter):
        return filter
    tree = parse_filter(filter)
    if tree is None:
        return None
    condition = _translate(tree, metadata_key)
    return condition if isinstance(condition, models.Filter) else models.Filter(must=[condition])


def _translate(node: Filter, prefix: str) -> Any:
    """One node of a parsed filter as a Qdrant condition (a nested ``Filter`` for the logical ones)."""
    from qdrant_client import models

    if isinstance(node, And):
        return models.Filter(must=[_translate(item, prefix) for item in node.items])
    if isinstance(node, Or):
        return models.Filter(should=[_translate(item, prefix) for item in node.items])
    if isinstance(node, Not):
        return models.Filter(must_not=[_translate(node.item, prefix)])
    key = _metadata_key(node.path, prefix)
    op, operand = node.op, node.operand
    if op == "$eq":
        return _equal(key, operand)
    if op == "$ne":
        return models.Filter(must_not=[_equal(key, operand)])
    if op == "$in":
        return _any_of(key, operand)
    if op == "$nin":
        return models.Filter(must_not=[_any_of(key, operand)])
    if op == "$all":
        return models.Filter(must=[_equal(key, v) for v in operand])
    if op == "$exists":
        empty = models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
        return models.Filter(must_not=[empty]) if operand else empty
    if op == "$text":
        if not hasattr(models, "MatchSubstring"):
            raise InvalidInputError(
                f"filter[{node.key!r}]['$text'] needs Qdrant's MatchSubstring, which this qdrant-client lacks; "
                "upgrade qdrant-client (and the server) to 1.20 or later."
            )
        return models.FieldCondition(key=key, match=models.MatchSubstring(substring=operand))
    if op == "$itext":
        raise InvalidInputError(
            f"filter[{node.key!r}]['$itext']: Qdrant has no case-insensitive substring match; use '$text' "
            "(case-sensitive), or store a lower-cased copy of the field and filter on it with '$text'."
        )
    bound = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}[op]
    return models.FieldCondition(key=key, range=models.Range(**{bound: float(operand)}))


def _metadata_key(path: Sequence[str], prefix: str) -> str:
    """The payload key of a metadata path: ``<prefix>.a.b``, parts other than ``[A-Za-z0-9_-]+`` quoted."""
    bad = [part for part in path if '"' in part]
    if bad:
        raise InvalidInputError(
            f"metadata key part {bad[0]!r} holds a double quote, which Qdrant's key paths cannot express; "
            "rename the metadata key."
        )
    return prefix + "." + ".".join(part if _KEY.match(part) else f'"{part}"' for part in path)


def _equal(key: str, value: Any) -> Any:
    """``key`` equals the scalar ``value``, type-strict: a bool or str ``MatchValue``, a number a closed range."""
    from qdrant_client import models

    if isinstance(value, (bool, str)):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    return models.FieldCondition(key=key, range=models.Range(gte=float(value), lte=float(value)))


def _any_of(key: str, values: Sequence[Any]) -> Any:
    """``key`` equals one of ``values``: the str in one ``MatchAny``, bools and numbers one condition each."""
    from qdrant_client import models

    words = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    others = [v for v in values if not isinstance(v, str)]  # not deduplicated: True == 1 as dict keys
    conditions: list[Any] = [models.FieldCondition(key=key, match=models.MatchAny(any=words))] if words else []
    conditions += [_equal(key, v) for v in others]
    return conditions[0] if len(conditions) == 1 else models.Filter(should=conditions)
