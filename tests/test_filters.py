"""The one filter model: parsing errors, the semantics table, and core evaluator == Qdrant translation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lateint_plugins.core.errors import InvalidInputError
from lateint_plugins.core.filters import And, Condition, Not, Or, matches, parse_filter

from lateint_plugins.testing import FILTER_CASES, FILTER_DOCUMENTS

# ---------------------------------------------------------------------------------------- parsing


def test_empty_filters_match_everything() -> None:
    assert parse_filter(None) is None and parse_filter({}) is None
    assert matches(None, {"a": 1})


def test_parse_builds_an_immutable_tree() -> None:
    tree = parse_filter({"a": 1, "$or": [{"b": {"$in": ["x", "y"]}}, {"$not": {"c.d": {"$gt": 2}}}]})
    assert tree == And(
        (
            Condition("a", ("a",), "$eq", 1),
            Or((Condition("b", ("b",), "$in", ("x", "y")), Not(Condition("c.d", ("c", "d"), "$gt", 2)))),
        )
    )
    assert parse_filter(tree) is tree
    with pytest.raises(AttributeError):
        tree.items = ()  # type: ignore[misc, union-attr]


@pytest.mark.parametrize(
    ("filter", "names"),
    [
        ("a", "must be a dict"),
        ({1: "x"}, "the key 1"),
        ({"": 1}, "empty"),
        ({"a..b": 1}, "empty part"),
        ({"a": None}, "'$exists': False"),
        ({"a": [1, 2]}, "'$in'"),
        ({"a": {"x": 1}}, "unknown operator 'x'"),
        ({"a": {}}, "empty operator dict"),
        ({"a": {"$regex": "x"}}, "unknown operator '$regex'"),
        ({"a": {"$gt": "3"}}, "filter['a']['$gt'] must be a finite int or float"),
        ({"a": {"$gt": True}}, "finite int or float"),
        ({"a": {"$gt": float("nan")}}, "finite int or float"),
        ({"a": {"$eq": 2**60}}, "2**53"),
        ({"a": {"$eq": None}}, "'$exists': False"),
        ({"a": {"$in": []}}, "non-empty list"),
        ({"a": {"$in": "ab"}}, "non-empty list"),
        ({"a": {"$nin": [1, None]}}, "holds None"),
        ({"a": {"$exists": 1}}, "True or False"),
        ({"a": {"$text": ""}}, "non-empty str"),
        ({"a": {"$itext": 3}}, "non-empty str"),
        ({"$and": []}, "non-empty list of filter dicts"),
        ({"$or": {"a": 1}}, "non-empty list of filter dicts"),
        ({"$or": [1]}, "filter['$or'][0] must be a filter dict"),
        ({"$not": [{"a": 1}]}, "must be a filter dict"),
        ({"$nor": [{"a": 1}]}, "unknown logical operator '$nor'"),
        ({"$and": [{"a": {"$lt": "x"}}]}, "filter['$and'][0]['a']['$lt']"),
        ({"\ud800": 1}, "UTF-8"),
        ({"a": "x\ud800"}, "UTF-8"),
        ({"a": {"$in": ["ok", "\ud800"]}}, "UTF-8"),
    ],
)
def test_malformed_filters_name_the_part_and_the_fix(filter: Any, names: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as info:
        parse_filter(filter)
    assert names in str(info.value)


def test_errors_use_the_callers_argument_name() -> None:
    with pytest.raises(InvalidInputError, match=r"search_kwargs\['filter'\]\['a'\]"):
        parse_filter({"a": {"$bad": 1}}, "search_kwargs['filter']")


# ---------------------------------------------------------------------------------------- semantics


@pytest.mark.parametrize(("filter", "expected"), FILTER_CASES, ids=[repr(f) for f, _ in FILTER_CASES])
def test_semantics_table(filter: dict[str, Any], expected: list[str]) -> None:
    tree = parse_filter(filter)
    assert [d for d, meta in FILTER_DOCUMENTS.items() if matches(tree, meta)] == expected


def test_itext_is_case_insensitive_in_core() -> None:
    tree = parse_filter({"title": {"$itext": "PARIS"}})
    assert matches(tree, {"title": "Visit paris"}) and not matches(tree, {"title": "Rome"})


# ---------------------------------------------------------------------------------------- vs Qdrant
qdrant_client = pytest.importorskip("qdrant_client", reason="needs the qdrant extra")
from qdrant_client import QdrantClient, models  # noqa: E402

from lateint_plugins.qdrant import CollectionConfig, to_qdrant_filter  # noqa: E402

KEYS = ["a", "b", "n.x"]
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, 1.5, -2.5]),
    st.sampled_from(["a", "b", "ab", "Ab", "b a"]),
)
VALUES = st.one_of(SCALARS, st.none(), st.lists(st.one_of(SCALARS, st.none()), max_size=3))


@st.composite
def metadata(draw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key in ("a", "b"):
        if draw(st.booleans()):
            meta[key] = draw(VALUES)
    nested = draw(st.sampled_from(["missing", "dict", "scalar", "list"]))
    if nested == "dict":
        meta["n"] = {"x": draw(VALUES)} if draw(st.booleans()) else {}
    elif nested == "scalar":
        meta["n"] = draw(SCALARS)
    elif nested == "list":
        meta["n"] = [{"x": draw(SCALARS)}]
    return meta


def _condition() -> st.SearchStrategy[dict[str, Any]]:
    number = st.one_of(st.integers(-2, 2), st.sampled_from([0.5, 1.0, 1.5, -2.5]))
    ops = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), SCALARS),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), number),
        st.tuples(st.sampled_from(["$in", "$nin", "$all"]), st.lists(SCALARS, min_size=1, max_size=3)),
        st.tuples(st.just("$exists"), st.booleans()),
        st.tuples(st.just("$text"), st.sampled_from(["a", "b", "A", "b a"])),
    )
    key = st.sampled_from(KEYS)
    plain = st.builds(lambda k, v: {k: v}, key, SCALARS)
    operators = st.builds(lambda k, items: {k: dict(items)}, key, st.lists(ops, min_size=1, max_size=2))
    return st.one_of(plain, operators)


FILTERS = st.recursive(
    _condition(),
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"$not": f}, inner),
        st.builds(lambda f, g: {**f, **g}, inner, inner),
    ),
    max_leaves=6,
)

N_DOCS = 8


@pytest.fixture(scope="module")
def collection() -> QdrantClient:
    client = QdrantClient(":memory:")
    client.create_collection("filters", vectors_config={})
    return client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(metadata(), min_size=N_DOCS, max_size=N_DOCS), filter=FILTERS)
def test_core_evaluator_and_qdrant_translation_select_the_same_ids(
    collection: QdrantClient, docs: list[dict[str, Any]], filter: dict[str, Any]
) -> None:
    points = [models.PointStruct(id=i, vector={}, payload={"metadata": m}) for i, m in enumerate(docs)]
    collection.upsert("filters", points=points)
    tree = parse_filter(filter)
    core = [i for i, m in enumerate(docs) if matches(tree, m)]
    found, _ = collection.scroll("filters", scroll_filter=to_qdrant_filter(filter), limit=N_DOCS + 1)
    assert sorted(int(p.id) for p in found) == core, (filter, docs)


def test_semantics_table_through_qdrant(collection: QdrantClient) -> None:
    ids = list(FILTER_DOCUMENTS)
    metas = list(FILTER_DOCUMENTS.values())
    points = [models.PointStruct(id=i, vector={}, payload={"metadata": m}) for i, m in enumerate(metas)]
    collection.create_collection("table", vectors_config={})
    collection.upsert("table", points=points)
    for filter, expected in FILTER_CASES:
        found, _ = collection.scroll("table", scroll_filter=to_qdrant_filter(filter), limit=len(ids) + 1)
        assert sorted(ids[int(p.id)] for p in found) == sorted(expected), filter


def test_translation_is_unambiguous_for_the_server() -> None:
    built = to_qdrant_filter({"f": 1.5, "g": True, "h": 2, "s": "x", "t": {"$text": "ab"}})
    assert built is not None and built.must is not None
    f, g, h, s, t = built.must
    assert f.range == models.Range(gte=1.5, lte=1.5) and f.match is None  # MatchValue takes no floats
    assert h.range == models.Range(gte=2.0, lte=2.0)  # numbers compare numerically: 2 == 2.0
    assert g.match == models.MatchValue(value=True) and s.match == models.MatchValue(value="x")
    assert t.match == models.MatchSubstring(substring="ab")  # MatchText is a word match
    assert [c.key for c in built.must] == ["metadata.f", "metadata.g", "metadata.h", "metadata.s", "metadata.t"]


def test_translation_quotes_odd_keys_and_passes_qdrant_filters_through() -> None:
    built = to_qdrant_filter({"a.file name": "x"})
    assert built is not None and built.must is not None and built.must[0].key == 'metadata.a."file name"'
    raw = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="x"))])
    assert to_qdrant_filter(raw) is raw
    with pytest.raises(InvalidInputError, match="double quote"):
        to_qdrant_filter({'a"b': 1})


def test_itext_is_refused_for_qdrant_with_the_fix() -> None:
    with pytest.raises(InvalidInputError, match=r"filter\['title'\]\['\$itext'\].*'\$text'"):
        to_qdrant_filter({"title": {"$itext": "paris"}})


def test_payload_indexes_are_validated() -> None:
    assert dict(CollectionConfig(payload_indexes={"year": "integer", "a.b": "keyword"}).payload_indexes) == {
        "year": "integer",
        "a.b": "keyword",
    }
    with pytest.raises(InvalidInputError, match=r"payload_indexes\['year'\] = 'int'"):
        CollectionConfig(payload_indexes={"year": "int"})
    with pytest.raises(InvalidInputError, match="metadata keys"):
        CollectionConfig(payload_indexes={"": "keyword"})
