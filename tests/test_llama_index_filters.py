"""MetadataFilters -> the project's filter dict (FILTERS.md): every FilterOperator and condition, nested.

The mapping is checked as dicts here; the core evaluator and the Qdrant translator apply those dicts
(and have their own tests). End to end, equality filters are exercised in test_llama_index*.py.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from lateint_plugins.core.errors import InvalidInputError
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from lateint_plugins.llama_index import metadata_filters_to_dict

F = FilterOperator
AND, OR, NOT = FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT

# operator, value, expected dict for key "k"
LEAVES: list[tuple[FilterOperator, Any, dict[str, Any]]] = [
    (F.EQ, "a", {"k": "a"}),
    (F.EQ, 3, {"k": 3}),
    (F.NE, "a", {"k": {"$ne": "a"}}),
    (F.GT, 1, {"k": {"$gt": 1}}),
    (F.GTE, 1.5, {"k": {"$gte": 1.5}}),
    (F.LT, 2, {"k": {"$lt": 2}}),
    (F.LTE, 2, {"k": {"$lte": 2}}),
    (F.IN, ["a", "b"], {"k": {"$in": ["a", "b"]}}),
    (F.IN, "a", {"k": {"$in": ["a"]}}),  # LlamaIndex also takes a single value
    (F.NIN, [1, 2], {"k": {"$nin": [1, 2]}}),
    (F.ANY, ["a", "b"], {"k": {"$in": ["a", "b"]}}),
    (F.ALL, ["a", "b"], {"k": {"$all": ["a", "b"]}}),
    (F.ALL, "a", {"k": {"$all": ["a"]}}),
    (F.CONTAINS, "a", {"k": {"$eq": "a"}}),  # any element of the list field equals it
    (F.TEXT_MATCH, "stat", {"k": {"$text": "stat"}}),
    (F.TEXT_MATCH_INSENSITIVE, "Stat", {"k": {"$itext": "Stat"}}),
    (F.IS_EMPTY, None, {"k": {"$exists": False}}),
]


def _leaf(operator: FilterOperator, value: Any, key: str = "k") -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=operator)


def test_every_operator_is_mapped() -> None:
    assert {op for op, _, _ in LEAVES} == set(FilterOperator)


@pytest.mark.parametrize(("operator", "value", "want"), LEAVES, ids=[f"{op.name}-{v!r}" for op, v, _ in LEAVES])
def test_each_operator(operator: FilterOperator, value: Any, want: dict[str, Any]) -> None:
    assert metadata_filters_to_dict(MetadataFilters(filters=[_leaf(operator, value)])) == want
    for condition in (AND, OR):  # one filter: the condition does not matter
        assert metadata_filters_to_dict(MetadataFilters(filters=[_leaf(operator, value)], condition=condition)) == want
    assert metadata_filters_to_dict(MetadataFilters(filters=[_leaf(operator, value)], condition=NOT)) == {"$not": want}


@pytest.mark.parametrize(
    ("filters", "want"),
    [
        (None, None),
        ({}, None),
        (MetadataFilters(filters=[]), None),
        (MetadataFilters(filters=[], condition=NOT), None),  # as llama-index: no filters match everything
        ({"topic": "x", "n": {"$gt": 1}}, {"topic": "x", "n": {"$gt": 1}}),  # a dict passes through
        # AND of different keys: one readable dict (fields at top level are ANDed)
        (
            MetadataFilters(filters=[_leaf(F.EQ, "med", "topic"), _leaf(F.GTE, 2000, "year")]),
            {"topic": "med", "year": {"$gte": 2000}},
        ),
        # AND on one key twice (a range, a contradiction): kept apart in $and
        (
            MetadataFilters(filters=[_leaf(F.GT, 1, "n"), _leaf(F.LT, 5, "n")]),
            {"$and": [{"n": {"$gt": 1}}, {"n": {"$lt": 5}}]},
        ),
        (
            MetadataFilters(filters=[_leaf(F.EQ, "a", "t"), _leaf(F.EQ, "b", "t")]),
            {"$and": [{"t": "a"}, {"t": "b"}]},
        ),
        (MetadataFilters(filters=[_leaf(F.EQ, "a", "t"), _leaf(F.EQ, "a", "t")]), {"t": "a"}),  # a repeat is one
        (
            MetadataFilters(filters=[_leaf(F.EQ, 1, "n"), _leaf(F.EQ, 2, "n")], condition=OR),
            {"$or": [{"n": 1}, {"n": 2}]},
        ),
        # NOT over several filters is NOT of their AND (as llama-index-vector-stores-qdrant)
        (
            MetadataFilters(filters=[_leaf(F.EQ, "a", "t"), _leaf(F.IN, [1, 2], "n")], condition=NOT),
            {"$not": {"t": "a", "n": {"$in": [1, 2]}}},
        ),
        # nested: AND(topic, OR(year range, NOT(tag)))
        (
            MetadataFilters(
                filters=[
                    _leaf(F.EQ, "med", "topic"),
                    MetadataFilters(
                        filters=[
                            _leaf(F.LT, 1990, "year"),
                            MetadataFilters(filters=[_leaf(F.CONTAINS, "old", "tags")], condition=NOT),
                        ],
                        condition=OR,
                    ),
                ]
            ),
            {"topic": "med", "$or": [{"year": {"$lt": 1990}}, {"$not": {"tags": {"$eq": "old"}}}]},
        ),
        # two ORs side by side cannot share one dict
        (
            MetadataFilters(
                filters=[
                    MetadataFilters(filters=[_leaf(F.EQ, 1, "a"), _leaf(F.EQ, 2, "a")], condition=OR),
                    MetadataFilters(filters=[_leaf(F.EQ, 1, "b"), _leaf(F.EQ, 2, "b")], condition=OR),
                ]
            ),
            {"$and": [{"$or": [{"a": 1}, {"a": 2}]}, {"$or": [{"b": 1}, {"b": 2}]}]},
        ),
        # an empty alternative in an OR matches everything; an empty part of an AND is dropped
        (MetadataFilters(filters=[_leaf(F.EQ, 1, "a"), MetadataFilters(filters=[])], condition=OR), None),
        (MetadataFilters(filters=[_leaf(F.EQ, 1, "a"), MetadataFilters(filters=[])]), {"a": 1}),
        # dotted keys address nested metadata and pass through unchanged
        (MetadataFilters(filters=[_leaf(F.NE, "x", "author.name")]), {"author.name": {"$ne": "x"}}),
    ],
)
def test_conditions_and_nesting(filters: Any, want: dict[str, Any] | None) -> None:
    assert metadata_filters_to_dict(filters) == want


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ("topic=med", "MetadataFilters or a filter dict"),
        ({1: "x"}, "str metadata keys"),
        (MetadataFilters(filters=[MetadataFilters(filters=[])], condition=NOT), "'not' over empty filters"),
    ],
)
def test_malformed_filters_raise(filters: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        metadata_filters_to_dict(filters)


def test_mapped_filters_parse_under_the_filter_model() -> None:
    from lateint_plugins.core import filters as filters_module

    for operator, _value, want in LEAVES:
        assert filters_module.parse_filter(want) is not None, operator
    nested = metadata_filters_to_dict(
        MetadataFilters(
            filters=[
                _leaf(F.EQ, "med", "topic"),
                MetadataFilters(filters=[_leaf(F.LT, 1990, "year"), _leaf(F.IS_EMPTY, None, "tags")], condition=OR),
                MetadataFilters(filters=[_leaf(F.TEXT_MATCH, "x", "t"), _leaf(F.NIN, [1], "n")], condition=NOT),
            ]
        )
    )
    tree = filters_module.parse_filter(nested)
    assert filters_module.matches(tree, {"topic": "med", "year": 1980, "t": "y", "n": 2})
    assert not filters_module.matches(tree, {"topic": "med", "year": 2000, "tags": ["a"], "t": "y", "n": 2})
    assert not filters_module.matches(tree, {"topic": "med", "year": 1980, "t": "x!", "n": 2})


def test_get_and_delete_nodes_apply_operator_filters(tiny_encoder: Any) -> None:
    from lateint_plugins.core.store import LateInteractionStore
    from llama_index.core.schema import TextNode

    from lateint_plugins.llama_index import LateInteractionVectorStore

    vector_store = LateInteractionVectorStore(LateInteractionStore(tiny_encoder))
    vector_store.add(
        [
            TextNode(id_=f"n{i}", text=f"Node {i}.", metadata={"year": 2000 + i, "tags": ["a"] if i % 2 else []})
            for i in range(6)
        ]
    )
    recent = MetadataFilters(filters=[_leaf(F.GTE, 2003, "year")])
    assert [n.node_id for n in vector_store.get_nodes(filters=recent)] == ["n3", "n4", "n5"]
    searched = vector_store.query(VectorStoreQuery(query_str="Node", similarity_top_k=6, filters=recent))
    assert sorted(searched.ids or []) == ["n3", "n4", "n5"]  # applied by the store's search, not after it
    untagged_or_old = MetadataFilters(
        filters=[_leaf(F.IS_EMPTY, None, "tags"), _leaf(F.LT, 2002, "year")], condition=OR
    )
    vector_store.delete_nodes(filters=untagged_or_old)
    assert [n.node_id for n in vector_store.get_nodes()] == ["n3", "n5"]
