"""A reusable test suite for the store contract (:class:`~lateint_plugins.core.store.DocumentStore`).

In the spirit of ``langchain_tests``: subclass :class:`DocumentStoreTests` in a pytest module, provide
a ``store`` fixture that returns a new, empty store, and pytest runs one test per point of the
contract (written down in the :class:`~lateint_plugins.core.store.DocumentStore` docstring) plus the
filter-semantics table :data:`FILTER_CASES`. Needs ``pytest`` (a test dependency, not a runtime one).

Example::

    import pytest
    from qdrant_client import QdrantClient
    from lateint_plugins.qdrant import QdrantLateInteractionStore
    from lateint_plugins.testing import DocumentStoreTests

    class TestMyQdrantStore(DocumentStoreTests):
        supports_itext = False  # Qdrant has no case-insensitive substring match

        @pytest.fixture
        def store(self, encoder):
            return QdrantLateInteractionStore(QdrantClient(":memory:"), "contract", encoder)

The encoder should be small (a tiny random BERT is enough: the suite checks bookkeeping and
filters, not ranking quality); the suite adds a few dozen short texts in total.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from lateint_plugins.core.errors import DuplicateIdError, InvalidInputError
from lateint_plugins.core.store import DocumentStore

__all__ = ["FILTER_CASES", "FILTER_DOCUMENTS", "DocumentStoreTests"]

FILTER_DOCUMENTS: dict[str, dict[str, Any]] = {
    "d1": {
        "lang": "en",
        "year": 2020,
        "score": 1.0,
        "flag": True,
        "tags": ["a", "b"],
        "meta": {"src": "wiki"},
        "title": "Paris in spring",
    },
    "d2": {"lang": "fr", "year": 2021, "score": 2.5, "flag": False, "tags": ["b"], "title": "Rome"},
    "d3": {"lang": "en", "year": 2019, "flag": 1, "tags": [], "meta": {"src": "news"}},
    "d4": {"lang": None, "year": "2020", "score": 1},
    "d5": {},
}
"""Metadata of the documents the filter table runs over (their texts do not matter)."""

FILTER_CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"lang": "en"}, ["d1", "d3"]),
    ({"lang": {"$eq": "en"}}, ["d1", "d3"]),
    ({"flag": True}, ["d1"]),  # type-strict: 1 is not True
    ({"flag": 1}, ["d3"]),  # ... and True is not 1
    ({"score": 1}, ["d1", "d4"]),  # numbers compare numerically: 1 == 1.0
    ({"score": 2.5}, ["d2"]),
    ({"year": 2020}, ["d1"]),  # the str "2020" is not a number
    ({"tags": "b"}, ["d1", "d2"]),  # list fields: any element
    ({"tags": {"$ne": "a"}}, ["d2", "d3", "d4", "d5"]),  # $ne is not-$eq: ["a", "b"] fails
    ({"lang": {"$ne": "en"}}, ["d2", "d4", "d5"]),  # missing or None: $ne holds
    ({"year": {"$gte": 2020}}, ["d1", "d2"]),  # ranges skip non-numbers
    ({"year": {"$gt": 2019, "$lt": 2021}}, ["d1"]),
    ({"score": {"$lte": 1}}, ["d1", "d4"]),
    ({"flag": {"$gte": 0}}, ["d3"]),  # a bool is not a number
    ({"lang": {"$in": ["fr", "de"]}}, ["d2"]),
    ({"lang": {"$nin": ["en"]}}, ["d2", "d4", "d5"]),
    ({"flag": {"$in": [True, 1]}}, ["d1", "d3"]),
    ({"tags": {"$all": ["a", "b"]}}, ["d1"]),
    ({"tags": {"$exists": True}}, ["d1", "d2"]),  # [] does not exist
    ({"lang": {"$exists": False}}, ["d4", "d5"]),  # None does not exist
    ({"title": {"$text": "Paris"}}, ["d1"]),
    ({"title": {"$text": "aris in"}}, ["d1"]),  # a substring, not a word match
    ({"title": {"$text": "paris"}}, []),  # case-sensitive
    ({"meta.src": "wiki"}, ["d1"]),  # dotted keys address nested dicts
    ({"$or": [{"lang": "fr"}, {"year": 2019}]}, ["d2", "d3"]),
    ({"$not": {"lang": "en"}}, ["d2", "d4", "d5"]),
    ({"lang": "en", "$not": {"tags": "a"}}, ["d3"]),
    ({"$and": [{"lang": "en"}, {"year": {"$lt": 2020}}]}, ["d3"]),
    ({"missing": {"$nin": [1]}, "year": {"$exists": True}}, ["d1", "d2", "d3", "d4"]),
]
"""``(filter, ids of FILTER_DOCUMENTS it selects, in insertion order)``: the semantics every store shares."""

ITEXT_CASE: tuple[dict[str, Any], list[str]] = ({"title": {"$itext": "paris"}}, ["d1"])
"""``$itext`` (case-insensitive substring): core stores evaluate it; Qdrant refuses it."""

TEXTS = {
    "a": "the cat sat on the mat",
    "b": "a dog chased the ball in the park",
    "c": "quantum computers use qubits",
    "d": "the stock market fell today",
}


class DocumentStoreTests:
    """The store contract as pytest tests: subclass it and provide a ``store`` fixture (a new, empty store).

    Class attributes a subclass may set:
        supports_itext: whether the store evaluates ``$itext`` (False: it must raise
            :class:`~lateint_plugins.core.errors.InvalidInputError` instead, before searching).
    """

    supports_itext: bool = True

    @pytest.fixture
    def store(self) -> DocumentStore:
        """A new, empty store; override in the subclass."""
        raise NotImplementedError("Subclasses of DocumentStoreTests must provide a `store` fixture.")

    @pytest.fixture
    def filled(self, store: DocumentStore) -> DocumentStore:
        store.add_texts(list(TEXTS.values()), [{"n": i} for i in range(len(TEXTS))], list(TEXTS))
        return store

    # ------------------------------------------------------------------ the protocol
    def test_is_a_document_store(self, store: DocumentStore) -> None:
        assert isinstance(store, DocumentStore)
        assert len(store) == 0 and store.ids() == []

    def test_add_texts_returns_ids_and_generates_unique_ones(self, store: DocumentStore) -> None:
        assert store.add_texts(["one", "two"], ids=["x", "y"]) == ["x", "y"]
        generated = store.add_texts(["three", "four"])
        assert len(generated) == 2 and len(set(generated)) == 2 and all(isinstance(i, str) and i for i in generated)
        assert sorted(store.ids()) == sorted(["x", "y", *generated]) and len(store) == 4

    # ------------------------------------------------------------------ replace
    def test_replace_defaults_to_false_everywhere(self, store: DocumentStore) -> None:
        for method in (store.add_texts, store.add_embeddings):
            assert inspect.signature(method).parameters["replace"].default is False, method.__name__

    def test_existing_id_without_replace_raises_and_writes_nothing(self, filled: DocumentStore) -> None:
        with pytest.raises(DuplicateIdError):
            filled.add_texts(["new text", "another"], ids=["new", "a"])
        assert "new" not in filled and len(filled) == len(TEXTS)
        assert filled.get(["a"])[0].text == TEXTS["a"]
        with pytest.raises(DuplicateIdError):
            filled.add_texts(["twice", "twice"], ids=["z", "z"])
        assert "z" not in filled

    def test_replace_true_upserts(self, filled: DocumentStore) -> None:
        assert filled.add_texts(["a new text", "fresh"], [{"v": 2}, None], ["a", "e"], replace=True) == ["a", "e"]
        got = filled.get(["a", "e"])
        assert [(r.id, r.text, r.metadata) for r in got] == [("a", "a new text", {"v": 2}), ("e", "fresh", {})]
        assert len(filled) == len(TEXTS) + 1

    # ------------------------------------------------------------------ add_embeddings
    def test_add_embeddings_takes_texts_embeddings_metadatas_ids(self, store: DocumentStore) -> None:
        names = list(inspect.signature(store.add_embeddings).parameters)
        assert names[:4] == ["texts", "embeddings", "metadatas", "ids"]
        texts = [TEXTS["a"], TEXTS["c"]]
        vectors = store.encoder.encode_documents(texts)
        assert store.add_embeddings(texts, vectors, [{"k": 1}, None], ["a", "c"]) == ["a", "c"]
        assert [(r.id, r.text, r.metadata) for r in store.get(["a", "c"])] == [
            ("a", texts[0], {"k": 1}),
            ("c", texts[1], {}),
        ]
        with pytest.raises(DuplicateIdError):
            store.add_embeddings(texts[:1], vectors[:1], ids=["a"])
        assert store.add_embeddings(["changed"], vectors[:1], ids=["a"], replace=True) == ["a"]
        assert store.get(["a"])[0].text == "changed"
        with pytest.raises(InvalidInputError):
            store.add_embeddings(texts, vectors[:1])

    # ------------------------------------------------------------------ delete
    def test_delete_ignores_unknown_ids(self, filled: DocumentStore) -> None:
        filled.delete(["a", "not-there", "a"])
        assert "a" not in filled and len(filled) == len(TEXTS) - 1
        filled.delete(["not-there"])
        assert len(filled) == len(TEXTS) - 1
        assert all(r.id != "a" for r in filled.search("cat on a mat", k=10))

    # ------------------------------------------------------------------ empty batches
    def test_empty_batches_are_no_ops(self, filled: DocumentStore) -> None:
        assert filled.add_texts([]) == []
        assert filled.add_embeddings([], []) == []
        filled.delete([])
        assert filled.search_batch([]) == []
        assert filled.search_batch([], k=3, filter={"n": 1}) == []
        assert filled.get([]) == []
        assert len(filled) == len(TEXTS)

    # ------------------------------------------------------------------ reading
    def test_get_keeps_the_order_asked_and_skips_missing(self, filled: DocumentStore) -> None:
        got = filled.get(["c", "missing", "a", "c"])
        assert [r.id for r in got] == ["c", "a", "c"]
        assert [r.text for r in got] == [TEXTS["c"], TEXTS["a"], TEXTS["c"]]
        assert got[0].metadata == {"n": 2} and all(r.score == 0.0 for r in got)

    def test_contains(self, filled: DocumentStore) -> None:
        assert "a" in filled and "d" in filled
        assert "zz" not in filled and 1 not in filled and None not in filled

    def test_ids_and_len(self, filled: DocumentStore) -> None:
        assert sorted(filled.ids()) == sorted(TEXTS) and len(filled) == len(TEXTS)

    # ------------------------------------------------------------------ search
    def test_search_returns_k_hits_best_first(self, filled: DocumentStore) -> None:
        hits = filled.search("a cat on the mat", k=3)
        assert len(hits) == 3 and len({h.id for h in hits}) == 3
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert all((h.text, h.metadata) == (TEXTS[h.id], {"n": list(TEXTS).index(h.id)}) for h in hits)
        assert len(filled.search("a cat on the mat", k=10)) == len(TEXTS)
        batch = filled.search_batch(["a cat on the mat", "qubits"], k=2)
        assert [[h.id for h in row] for row in batch] == [
            [h.id for h in filled.search(q, k=2)] for q in ("a cat on the mat", "qubits")
        ]

    def test_filtered_search_returns_k_hits_when_they_exist(self, filled: DocumentStore) -> None:
        # The best documents for the query do not match: a store that filtered after ranking
        # would come back short.
        extra = [f"stock market report number {i}" for i in range(6)]
        filled.add_texts(extra, [{"kind": "report"}] * 6, [f"r{i}" for i in range(6)])
        hits = filled.search("a cat on the mat", k=4, filter={"kind": "report"})
        assert len(hits) == 4 and all(h.metadata == {"kind": "report"} for h in hits)
        assert len(filled.search("a cat", k=10, filter={"kind": "report"})) == 6
        assert filled.search("a cat", k=3, filter={"kind": "none such"}) == []

    def test_empty_filter_matches_everything(self, filled: DocumentStore) -> None:
        unfiltered = [h.id for h in filled.search("qubits", k=10)]
        assert [h.id for h in filled.search("qubits", k=10, filter={})] == unfiltered
        assert [h.id for h in filled.search("qubits", k=10, filter=None)] == unfiltered
        assert len(unfiltered) == len(TEXTS)

    def test_malformed_filter_raises_before_searching(self, filled: DocumentStore) -> None:
        malformed: list[Any] = [{"n": {"$regex": "x"}}, {"n": None}, {"n": {"$in": []}}, {1: "x"}, "n"]
        for bad in malformed:
            with pytest.raises(InvalidInputError):
                filled.search("cat", filter=bad)
            with pytest.raises(InvalidInputError):
                filled.search_batch([], filter=bad)

    def test_search_options_are_declared_and_accepted(self, filled: DocumentStore) -> None:
        options = filled.search_options
        assert isinstance(options, Mapping) and all(isinstance(name, str) for name in options)
        expected = [h.id for h in filled.search("qubits", k=2)]
        assert [h.id for h in filled.search("qubits", k=2, **options)] == expected
        assert [[h.id for h in row] for row in filled.search_batch(["qubits"], k=2, **options)] == [expected]
        with pytest.raises(InvalidInputError, match="search option"):
            filled.search("qubits", k=2, no_such_option=1)
        with pytest.raises(InvalidInputError, match="search option"):
            filled.search_batch([], no_such_option=1)

    # ------------------------------------------------------------------ filters
    def test_filter_semantics_table(self, store: DocumentStore) -> None:
        ids = list(FILTER_DOCUMENTS)
        store.add_texts([f"document {i}" for i in ids], list(FILTER_DOCUMENTS.values()), ids)
        for filter, expected in FILTER_CASES:
            found = {h.id for h in store.search("document", k=len(ids), filter=filter)}
            assert found == set(expected), filter
        filter, expected = ITEXT_CASE
        if self.supports_itext:
            assert {h.id for h in store.search("document", k=len(ids), filter=filter)} == set(expected)
        else:
            with pytest.raises(InvalidInputError, match="itext"):
                store.search("document", k=len(ids), filter=filter)
