"""What the LlamaIndex retriever and vector store share: nodes to store records and back, filters, queries.

* A node goes into a :class:`~lateint_plugins.core.store.DocumentStore` as the text that is encoded
  (``node.get_content(metadata_mode)``: by default ``EMBED``, what LlamaIndex's embedding models see,
  and what :class:`LateInteractionRerank` scores) and a metadata dict holding the node's own metadata
  at the top level (so filters see it) plus the whole node as JSON (``_node_content``, written by
  ``llama_index.core.vector_stores.utils.node_to_metadata_dict`` as the official vector stores do), so
  id, text, ``ref_doc_id``, relationships and excluded-metadata keys come back unchanged.
* ``MetadataFilters`` map onto the project's one filter model (the dict of ``FILTERS.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, MetadataMode, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from lateint_plugins.core._checks import check_ids, check_metadata, check_sequence, check_text
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError
from lateint_plugins.core.filters import matches, parse_filter
from lateint_plugins.core.store import SearchResult

NODE_CONTENT_KEY = "_node_content"
REF_DOC_ID_KEY = "ref_doc_id"  # written by node_to_metadata_dict ("None" when the node has no source)

# LlamaIndex operator -> the filter model's operator (FILTERS.md, "Mappings onto it").
_OPERATORS: dict[FilterOperator, str] = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$in",
    FilterOperator.ALL: "$all",
    FilterOperator.CONTAINS: "$eq",  # on a list field: any element equals the value
    FilterOperator.TEXT_MATCH: "$text",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$itext",
    FilterOperator.IS_EMPTY: "$exists",
}
_LIST_OPERATORS = {"$in", "$nin", "$all"}


def check_metadata_mode(mode: object, name: str = "metadata_mode") -> MetadataMode:
    """A LlamaIndex ``MetadataMode`` (or its value, e.g. ``"embed"``)."""
    try:
        return MetadataMode(mode)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in MetadataMode)
        raise InvalidInputError(f"{name} must be a llama_index MetadataMode ({choices}), got {mode!r}.") from None


def node_records(
    nodes: Sequence[BaseNode], metadata_mode: MetadataMode, name: str = "nodes"
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The id, the text to encode and the metadata to store for each node (see the module docstring)."""
    if isinstance(nodes, BaseNode):
        raise InvalidInputError(f"{name} must be a list of nodes; wrap a single node in a list.")
    nodes = check_sequence(nodes, name, "nodes", "node")
    texts, metadatas = [], []
    for i, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            raise InvalidInputError(f"{name}[{i}] must be a LlamaIndex node, got {type(node).__name__}.")
        # Checked before serialising, so an error names the node's metadata or text, not our JSON.
        check_metadata(node.metadata, f"{name}[{i}].metadata")
        texts.append(check_text(node.get_content(metadata_mode=metadata_mode), f"{name}[{i}].text", allow_empty=True))
        record = node_to_metadata_dict(node, remove_text=False, flat_metadata=False)
        metadatas.append(check_metadata(record, f"{name}[{i}]"))
    ids = check_ids([node.node_id for node in nodes], "node_ids" if name == "nodes" else f"{name} ids")
    return ids, texts, metadatas


def result_node(result: SearchResult) -> BaseNode:
    """The node stored as ``result``: restored whole when it went in through this adapter, else a ``TextNode``."""
    content = result.metadata.get(NODE_CONTENT_KEY)
    if not isinstance(content, str):  # added by another adapter or the core store directly
        return TextNode(id_=result.id, text=result.text, metadata=dict(result.metadata))
    try:
        node = metadata_dict_to_node(dict(result.metadata))
    except ValueError as exc:  # malformed JSON or a node that does not validate (pydantic's error is a ValueError)
        raise CorruptIndexError(f"document {result.id!r}: its stored LlamaIndex node cannot be read ({exc}).") from exc
    node.id_ = result.id  # the store's id is the truth (a node copied under a new id keeps its new one)
    return node


def ref_doc_id_of(metadata: Mapping[str, Any]) -> str | None:
    """The ``ref_doc_id`` recorded for a stored node (None for documents added outside this adapter)."""
    value = metadata.get(REF_DOC_ID_KEY)
    return value if isinstance(value, str) and value != "None" else None


# ---------------------------------------------------------------------- filters
def metadata_filters_to_dict(
    filters: MetadataFilters | Mapping[str, Any] | None, name: str = "filters"
) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` (or a filter dict, passed through) as the project's filter dict.

    Every ``FilterOperator`` and condition maps (``FILTERS.md``): EQ/CONTAINS -> ``$eq``, NE -> ``$ne``,
    GT/GTE/LT/LTE -> ranges, IN/ANY -> ``$in``, NIN -> ``$nin``, ALL -> ``$all``, TEXT_MATCH -> ``$text``,
    TEXT_MATCH_INSENSITIVE -> ``$itext``, IS_EMPTY -> ``$exists: False``; AND/OR/NOT -> ``$and``/``$or``/
    ``$not`` (NOT over several filters is NOT of their AND). Equalities joined by AND come out as a plain
    ``{key: value}`` dict. Empty filters give None (everything matches).

    Example:
        >>> metadata_filters_to_dict(MetadataFilters(filters=[MetadataFilter(key="year", value=2020,
        ...     operator=FilterOperator.GTE)]))
        {'year': {'$gte': 2020}}
    """
    if filters is None:
        return None
    if isinstance(filters, MetadataFilters):
        out = _convert(filters, name)
    elif isinstance(filters, Mapping):
        bad = [k for k in filters if not isinstance(k, str)]
        if bad:
            raise InvalidInputError(f"{name} keys must be str metadata keys, got {bad[:5]!r}.")
        out = dict(filters)
    else:
        raise InvalidInputError(
            f"{name} must be llama_index MetadataFilters or a filter dict (e.g. {{'topic': 'medicine'}}), "
            f"got {type(filters).__name__}."
        )
    return out or None


def _convert(filters: MetadataFilters, path: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for i, item in enumerate(filters.filters):
        where = f"{path}.filters[{i}]"
        if isinstance(item, MetadataFilters):
            parts.append(_convert(item, where))
        elif isinstance(item, MetadataFilter):
            parts.append(_leaf(item, where))
        else:
            raise InvalidInputError(f"{where} must be a MetadataFilter or MetadataFilters, got {type(item).__name__}.")
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if not parts:  # as llama-index's own build_metadata_filter_fn: no filters match everything
        return {}
    if condition == FilterCondition.OR:
        if any(not p for p in parts):  # an empty alternative matches everything
            return {}
        return parts[0] if len(parts) == 1 else {"$or": parts}
    inner = _and(parts)
    if condition == FilterCondition.NOT:
        if not inner:
            raise InvalidInputError(
                f"{path}: condition 'not' over empty filters would match nothing; drop the filter or give it filters."
            )
        return {"$not": inner}
    return inner


def _leaf(item: MetadataFilter, where: str) -> dict[str, Any]:
    operator = FilterOperator(item.operator)
    op = _OPERATORS.get(operator)
    if op is None:  # a FilterOperator added after this adapter was written
        raise InvalidInputError(f"{where}: operator {operator.value!r} on key {item.key!r} is not supported.")
    value: Any = item.value
    if operator == FilterOperator.IS_EMPTY:
        return {item.key: {"$exists": False}}
    if operator == FilterOperator.EQ:
        return {item.key: value}
    if op in _LIST_OPERATORS and not isinstance(value, list):
        value = [value]  # LlamaIndex accepts a single value for IN/NIN/ANY/ALL
    return {item.key: {op: value}}


def _and(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """AND of filter dicts: merged into one dict when no key repeats (the readable form), else ``$and``."""
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key in merged and merged[key] != value:
                return {"$and": parts}
            merged[key] = value
    return merged


def and_filters(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """AND of filter dicts (None entries ignored); None when nothing is left."""
    return _and([f for f in filters if f]) or None


def check_query_str(query: object, name: str = "query") -> str:
    """A non-empty, valid UTF-8 query, given as a str or a ``QueryBundle``; returns the text."""
    if isinstance(query, QueryBundle):
        return check_text(query.query_str, f"{name}.query_str")
    if not isinstance(query, str):
        raise InvalidInputError(f"{name} must be a str or a QueryBundle, got {type(query).__name__}.")
    return check_text(query, name)


def default_splitter(encoder: ColBERTEncoder) -> SentenceSplitter:
    """Sentence-aware chunks measured in the encoder's own tokens, as long as one encoded document."""
    chunk_size = max(encoder.config.document_length - 3, 1)  # room left by [CLS], the [D] marker and [SEP]
    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_size // 8,
        tokenizer=encoder.tokenizer.tokenize,
        # Nodes must inherit their document's metadata; the splitter then also reserves room for the
        # metadata that MetadataMode.EMBED puts in front of each chunk, so encoded chunks are not cut off.
        include_metadata=True,
    )


def check_store_filter(filter: dict[str, Any] | None, name: str = "filters") -> dict[str, Any] | None:
    """Validate a filter dict before any search runs; raises :class:`InvalidInputError` naming the bad part."""
    if not filter:
        return None
    parse_filter(filter, name)
    return filter


def filter_matches(filter: dict[str, Any] | None, metadata: Mapping[str, Any]) -> bool:
    """Whether stored ``metadata`` satisfies a (checked) filter dict, as the store's search would decide."""
    return matches(parse_filter(filter), metadata)
