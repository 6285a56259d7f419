"""Local mode read from its arrays (lateint_plugins.qdrant._local) gives exactly what the public API gives.

Every search here runs twice on one collection, once with the array reads and once through the public
client API (``store._read_arrays = False``), and the two must agree to the bit: same candidates, same
ids, same scores. The fallbacks (an untested qdrant-client version, internals that moved) are checked
to take the public API.
"""

from __future__ import annotations

import logging
import random
import uuid
from pathlib import Path

import pytest
from _texts import WORDS as ALL_WORDS
from lateint_plugins.core import ColBERTEncoder
from qdrant_client import QdrantClient, models

from lateint_plugins.qdrant import CollectionConfig, QdrantLateInteractionStore, _local, bm25_vector
from lateint_plugins.qdrant.layout import LEXICAL, POOLED

WORDS = ALL_WORDS[:16]  # the first 16 of the shared vocabulary
QUERIES = ["protein cell signal", "cancer drug trial", "immune virus vaccine", "brain neuron", "zzz unknown"]


def corpus(n: int = 30, seed: int = 1) -> tuple[list[str], list[str], list[dict]]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 25))) for _ in range(n)]
    return [f"d{i}" for i in range(n)], texts, [{"year": rng.randint(2000, 2003)} for _ in range(n)]


@pytest.fixture(params=["memory", "path"])
def client(request: pytest.FixtureRequest, tmp_path: Path):
    c = QdrantClient(":memory:") if request.param == "memory" else QdrantClient(path=str(tmp_path / "q"))
    yield c
    c.close()


FP16 = CollectionConfig(token_layout="fp16")


def make_store(client: QdrantClient, encoder: ColBERTEncoder, **kwargs) -> QdrantLateInteractionStore:
    ids, texts, metas = corpus()
    store = QdrantLateInteractionStore(client, f"t-{uuid.uuid4().hex[:8]}", encoder, device="cpu", **kwargs)
    store.add_texts(texts, metas, ids)
    return store


def both_ways(store: QdrantLateInteractionStore, **kwargs) -> tuple[list, list]:
    store._read_arrays = True
    arrays = store.search_batch(QUERIES, **kwargs)
    store._read_arrays = False
    public = store.search_batch(QUERIES, **kwargs)
    store._read_arrays = True
    return arrays, public


def assert_identical(arrays: list, public: list) -> None:
    assert [[(h.id, h.score, h.text, h.metadata) for h in row] for row in arrays] == [
        [(h.id, h.score, h.text, h.metadata) for h in row] for row in public
    ]


@pytest.mark.parametrize("depth", [3, 1000])
@pytest.mark.parametrize("layout", ["fp16", "plaid"])  # plaid: the default, fp16 tokens before its codec
def test_array_reads_equal_the_public_api(client, tiny_encoder, depth, layout) -> None:
    store = make_store(client, tiny_encoder, candidate_depth=depth, config=CollectionConfig(token_layout=layout))
    assert _local.local_collection(client, store.collection_name) is not None
    arrays, public = both_ways(store, k=5)
    assert all(arrays)
    assert_identical(arrays, public)
    assert_identical(*both_ways(store, k=5, filter={"year": {"$gte": 2002}}))


@pytest.mark.parametrize("depth", [3, 1000])
@pytest.mark.parametrize("quantizer", ["pq", "rq"])
def test_the_plaid_layout_reads_its_candidates_from_arrays_too(client, tiny_encoder, depth, quantizer) -> None:
    config = CollectionConfig(token_layout="plaid", nbits=4, quantizer=quantizer, codec_training_tokens=0)
    store = make_store(client, tiny_encoder, config=config, candidate_depth=depth, max_tokens_per_point=8)
    arrays, public = both_ways(store, k=5)
    assert all(arrays[:-1])
    assert_identical(arrays, public)
    assert_identical(*both_ways(store, k=5, filter={"year": {"$gte": 2002}}))


def test_split_documents_and_pooled_multivectors_read_from_arrays(tiny_encoder) -> None:
    windows = make_store(QdrantClient(":memory:"), tiny_encoder, max_tokens_per_point=4, candidate_depth=6, config=FP16)
    assert_identical(*both_ways(windows, k=6))
    pooled = make_store(
        QdrantClient(":memory:"), tiny_encoder, config=CollectionConfig(pooled_vectors=3, token_layout="fp16")
    )
    assert_identical(*both_ways(pooled, k=6))
    embeddings = windows.get_embeddings(["d0", "d1"])
    windows._read_arrays = False
    assert {k: v.tolist() for k, v in embeddings.items()} == {
        k: v.tolist() for k, v in windows.get_embeddings(["d0", "d1"]).items()
    }


@pytest.mark.parametrize("layout", ["fp16", "plaid"])
def test_unfiltered_local_search_makes_no_query_request(tiny_encoder, monkeypatch, layout) -> None:
    store = make_store(QdrantClient(":memory:"), tiny_encoder, config=CollectionConfig(token_layout=layout))

    def refuse(*args, **kwargs):
        raise AssertionError("the candidates should come from local mode's arrays")

    monkeypatch.setattr(store.client, "query_batch_points", refuse)
    assert store.search("protein cell", k=3)


def test_prefetch_rankings_match_local_mode_to_the_bit(tiny_encoder) -> None:
    store = make_store(QdrantClient(":memory:"), tiny_encoder)
    collection = _local.local_collection(store.client, store.collection_name)
    ids = {v: k for k, v in collection.ids.items()}
    for text in QUERIES[:4]:
        terms = sorted(set(store._lexical_ids([text])[0]))
        pooled = store._pooled_query(tiny_encoder.encode_queries(text))
        for depth in (1, 4, 30):
            want = store.client.query_points(store.collection_name, query=pooled, using=POOLED, limit=depth).points
            got = _local.top_pooled(collection, POOLED, pooled, depth)
            assert [ids[i] for i in got] == [str(p.id) for p in want]
            sparse = models.SparseVector(indices=terms, values=[1.0] * len(terms))
            want = store.client.query_points(store.collection_name, query=sparse, using=LEXICAL, limit=depth).points
            got = _local.top_sparse(collection, LEXICAL, terms, depth)
            assert [ids[i] for i in got] == [str(p.id) for p in want]


def test_the_inverted_index_follows_writes(client, tiny_encoder) -> None:
    store = make_store(client, tiny_encoder, candidate_depth=2, config=FP16)
    before = store.search("zeppelin protein", k=3)  # builds the inverted index
    other = QdrantLateInteractionStore(client, store.collection_name, tiny_encoder, device="cpu", create=False)
    other.add_texts(["zeppelin zeppelin"], ids=["new"])  # a write through another store object
    other.add_texts(["zeppelin heart"], ids=["d3"], replace=True)  # an update in place
    other.delete(["d5"])
    arrays, public = both_ways(store, k=3)
    assert_identical(arrays, public)
    # BM25 brings the documents holding the term among the candidates (the tiny model may rank them low).
    terms = store._lexical_ids(["zeppelin"])
    q = [tiny_encoder.encode_queries("zeppelin")]
    local = _local.local_collection(client, store.collection_name)
    for points in (store._local_candidates(local, q, terms, 2)[0], store._query_candidates(None, q, terms, 2, None)[0]):
        docs = {p.payload["doc_id"] for p in points}
        assert {"new", "d3"} <= docs and "d5" not in docs
    assert "new" not in {h.id for h in before}
    # A sparse vector written by hand (the postings compare the stored objects, not their count).
    client.upsert(
        store.collection_name,
        points=[models.PointStruct(id=str(uuid.uuid4()), vector={LEXICAL: bm25_vector([7])}, payload={})],
    )
    assert_identical(*both_ways(store, k=3))


def test_untested_client_versions_take_the_public_api(tiny_encoder, monkeypatch) -> None:
    store = make_store(QdrantClient(":memory:"), tiny_encoder)
    monkeypatch.setattr(_local, "_version_ok", lambda: False)
    assert _local.local_collection(store.client, store.collection_name) is None
    assert store.search("protein", k=2)


def test_internals_that_moved_fall_back_with_a_warning(tiny_encoder, monkeypatch, caplog) -> None:
    store = make_store(QdrantClient(":memory:"), tiny_encoder)
    want = store.search_batch(QUERIES, k=4)

    def moved(*args, **kwargs):
        raise AttributeError("'LocalCollection' object has no attribute 'multivectors'")

    monkeypatch.setattr(_local, "read_points", moved)
    with caplog.at_level(logging.WARNING, logger="lateint_plugins.qdrant.reading"):
        got = store.search_batch(QUERIES, k=4)
    assert "public API" in caplog.text and store._read_arrays is False
    assert_identical(got, want)


def test_servers_and_other_objects_are_not_local(tiny_encoder) -> None:
    assert _local.local_collection(object(), "x") is None
    assert _local.local_collection(QdrantClient(":memory:"), "missing") is None
