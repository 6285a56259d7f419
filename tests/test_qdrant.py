"""Qdrant store: congruence with the exact index, native MAX_SIM agreement, filters, writes, sync, errors.

Runs against ``QdrantClient(":memory:")`` and ``QdrantClient(path=...)`` always, and against a real
server when ``QDRANT_URL`` is set (e.g. ``QDRANT_URL=http://localhost:6333``).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from _texts import WORDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lateint_plugins.core import ColBERTEncoder, LateInteractionStore
from lateint_plugins.core.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    ModelMismatchError,
)
from lateint_plugins.core.filters import matches, parse_filter
from lateint_plugins.core.index import ExactIndex
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import DocumentStore
from qdrant_client import QdrantClient, models

from lateint_plugins.qdrant import (
    LAYOUT_VERSION,
    MAX_MULTIVECTOR_FLOATS,
    TOKENS,
    CollectionConfig,
    CollectionMismatchError,
    CollectionNotFoundError,
    PartialWriteError,
    PayloadKeys,
    QdrantLateInteractionStore,
    QdrantUnavailableError,
    bm25_vector,
    content_hash,
    point_id,
    sync,
    sync_from_qdrant,
    to_qdrant_filter,
)
from lateint_plugins.qdrant.codes import encode_fp16
from lateint_plugins.qdrant.layout import TOKENS_FP16

TOPICS = ("bio", "med", "chem")
ATOL = 1e-4


def corpus(n: int = 24, seed: int = 0) -> tuple[list[str], list[str], list[dict]]:
    rng = random.Random(seed)
    ids = [f"doc-{i}" for i in range(n)]
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]
    metas = [{"topic": rng.choice(TOPICS), "year": rng.randint(2000, 2003), "flag": rng.random() < 0.5} for _ in ids]
    return ids, texts, metas


QUERIES = ["protein cell signal", "cancer drug trial", "immune virus vaccine", "brain neuron"]


@pytest.fixture(params=["memory", "path", "url"])
def client(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        c = QdrantClient(":memory:")
    elif request.param == "path":
        c = QdrantClient(path=str(tmp_path / "qdrant"))
    else:
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip("set QDRANT_URL to run against a Qdrant server (none runs on the CI machines)")
        c = QdrantClient(url=url)
    yield c
    c.close()


FP16 = CollectionConfig(token_layout="fp16")
"""The layout with a token multivector in Qdrant (what ``mode="native"`` rescores); the default is "plaid"."""


def collection() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def reference(tiny_encoder: ColBERTEncoder) -> LateInteractionStore:
    ids, texts, metas = corpus()
    store = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    store.add_texts(texts, metas, ids)
    return store


def filled(client: QdrantClient, encoder: ColBERTEncoder, **kwargs) -> QdrantLateInteractionStore:
    ids, texts, metas = corpus()
    kwargs.setdefault("candidate_depth", 1000)
    store = QdrantLateInteractionStore(client, collection(), encoder, device="cpu", **kwargs)
    store.add_texts(texts, metas, ids, batch_size=7)
    return store


def assert_same(got, want) -> None:
    assert [r.id for r in got] == [r.id for r in want]
    torch.testing.assert_close(
        torch.tensor([r.score for r in got]), torch.tensor([r.score for r in want]), atol=ATOL, rtol=0
    )
    assert [(r.text, r.metadata) for r in got] == [(r.text, r.metadata) for r in want]


# ---------------------------------------------------------------------- congruence
def test_local_maxsim_over_candidates_equals_exact_index(client, tiny_encoder, reference) -> None:
    store = filled(client, tiny_encoder)
    assert isinstance(store, DocumentStore)
    assert len(store) == len(reference)
    for got, want in zip(store.search_batch(QUERIES, k=7), reference.search_batch(QUERIES, k=7), strict=True):
        assert_same(got, want)
    assert_same(
        store.search(QUERIES[0], k=5, filter={"topic": "med"}), reference.search(QUERIES[0], 5, {"topic": "med"})
    )


def test_native_max_sim_rescoring_agrees_with_our_scores(client, tiny_encoder, reference) -> None:
    store = filled(client, tiny_encoder, mode="native", config=FP16)
    for got, want in zip(store.search_batch(QUERIES, k=7), reference.search_batch(QUERIES, k=7), strict=True):
        assert_same(got, want)


def test_stored_tokens_are_the_exact_index_vectors(tiny_encoder, reference) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder)
    stored = store.get_embeddings(reference.index.ids)
    for doc_id, want in zip(reference.index.ids, reference.index.embeddings(), strict=True):
        torch.testing.assert_close(stored[doc_id], want.float(), atol=0, rtol=0)


def test_shallow_candidates_score_exactly_and_rank_a_subset(tiny_encoder, reference) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder, candidate_depth=6)
    exact = {r.id: r.score for r in reference.search(QUERIES[1], k=len(reference))}
    hits = store.search(QUERIES[1], k=6)
    assert len(hits) == 6
    for hit in hits:  # whatever the candidates, their scores are exact MaxSim
        assert hit.score == pytest.approx(exact[hit.id], abs=ATOL)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_multivector_pooling_equals_exact_with_full_depth(tiny_encoder, reference) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder, config=CollectionConfig(pooled_vectors=4))
    for got, want in zip(store.search_batch(QUERIES, k=5), reference.search_batch(QUERIES, k=5), strict=True):
        assert_same(got, want)


@pytest.mark.parametrize("layout", ["fp16", "plaid"])
def test_long_documents_are_split_into_windows_and_merged(client, tiny_encoder, reference, layout) -> None:
    store = filled(client, tiny_encoder, max_tokens_per_point=5, config=CollectionConfig(token_layout=layout))
    n_points = client.count(store.collection_name, exact=True).count
    assert n_points > len(reference)  # documents of more than 5 tokens span several points
    assert len(store) == len(reference)
    for got, want in zip(store.search_batch(QUERIES, k=7), reference.search_batch(QUERIES, k=7), strict=True):
        assert_same(got, want)
    stored = store.get_embeddings(reference.index.ids)
    for doc_id, want in zip(reference.index.ids, reference.index.embeddings(), strict=True):
        torch.testing.assert_close(stored[doc_id], want.float(), atol=0, rtol=0)
    if layout == "plaid":  # before its codec: fp16 tokens in the payload, exact as above; no native mode
        return
    # Native mode scores each window on its own: a lower bound of the document's MaxSim.
    exact = {r.id: r.score for r in reference.search(QUERIES[2], k=len(reference))}
    for hit in store.search_embeddings([tiny_encoder.encode_queries(QUERIES[2])], k=5, mode="native")[0]:
        assert hit.score <= exact[hit.id] + ATOL


def test_default_window_size_is_qdrant_cap(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    assert store.max_tokens_per_point == MAX_MULTIVECTOR_FLOATS // tiny_encoder.dim
    with pytest.raises(InvalidInputError, match="max_tokens_per_point"):
        QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder, max_tokens_per_point=10**7)


def test_collection_layout(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    store = QdrantLateInteractionStore(
        client,
        "layout",
        tiny_encoder,
        config=CollectionConfig(shard_number=2, replication_factor=1, token_layout="fp16"),
    )
    info = client.get_collection("layout")
    tokens = info.config.params.vectors[TOKENS]
    assert tokens.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert tokens.distance == models.Distance.DOT and tokens.size == tiny_encoder.dim
    marker = info.config.metadata["lateint"]
    # An fp16 collection records layout 2 (older readers open it); 3 to 5 are the PLAID-codes layouts.
    assert marker["dim"] == tiny_encoder.dim and marker["layout_version"] == 2 and LAYOUT_VERSION == 5
    assert marker["fingerprint"] == tiny_encoder.fingerprint.to_dict()
    assert marker["model_name"] == Path(tiny_encoder.name_or_path).name
    assert "QdrantLateInteractionStore" in repr(store)


def test_candidates_are_the_union_of_pooled_and_lexical_prefetches(tiny_encoder) -> None:
    texts = {"rare": "protein cell gene zeppelin", **dict(zip(*corpus()[:2], strict=True))}
    stores = {}
    for lexical in (True, False):
        stores[lexical] = QdrantLateInteractionStore(
            QdrantClient(":memory:"), collection(), tiny_encoder, config=CollectionConfig(lexical=lexical), device="cpu"
        )
        stores[lexical].add_texts(list(texts.values()), ids=list(texts))
    q = tiny_encoder.encode_queries("zeppelin")
    pooled_top = stores[False].search("zeppelin", k=1)[0].id
    exact = {i: maxsim([q], [tiny_encoder.encode_documents(texts[i]).half().float()])[0, 0].item() for i in texts}
    # "rare" alone holds the term, so BM25 brings it in whatever its pooled rank.
    hit = stores[True].search("zeppelin", k=1)[0]
    assert hit.id == max({pooled_top, "rare"}, key=exact.__getitem__)
    assert hit.score == pytest.approx(exact[hit.id], abs=ATOL)
    # Without the query text (embeddings only) only the pooled vector finds candidates.
    assert stores[True].search_embeddings([q], k=1)[0][0].id == pooled_top


def test_bm25_vector() -> None:
    vector = bm25_vector([5, 7, 5])
    assert vector.indices == [5, 7]
    assert vector.values[0] > vector.values[1] > 0  # saturating in the term count


# ---------------------------------------------------------------------- filters
@pytest.fixture(scope="module")
def filter_store(tiny_encoder) -> QdrantLateInteractionStore:
    return filled(QdrantClient(":memory:"), tiny_encoder)


filters = st.dictionaries(
    st.sampled_from(["topic", "year", "flag", "missing"]),
    st.one_of(st.sampled_from(TOPICS), st.integers(1999, 2004), st.booleans()),
    max_size=3,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=filters, query=st.sampled_from(QUERIES), k=st.integers(1, 30))
def test_filtered_search_never_returns_a_failing_document(filter_store, reference, flt, query, k) -> None:
    hits = filter_store.search(query, k=k, filter=flt)
    tree = parse_filter(flt)
    assert all(matches(tree, hit.metadata) for hit in hits)
    # One filter model: the candidate set is the exact index's one (bool/int look-alikes included).
    assert [h.id for h in hits] == [h.id for h in reference.search(query, k=k, filter=flt)]


def test_filter_mapping() -> None:
    assert to_qdrant_filter(None) is None and to_qdrant_filter({}) is None
    raw = models.Filter(must=[models.FieldCondition(key="metadata.x", match=models.MatchValue(value=1))])
    assert to_qdrant_filter(raw) is raw
    built = to_qdrant_filter({"a": "x", "b": 2.5, "c.d": True})
    assert [c.key for c in built.must] == ["metadata.a", "metadata.b", "metadata.c.d"]
    with pytest.raises(InvalidInputError, match="exists"):
        to_qdrant_filter({"c": None})
    with pytest.raises(InvalidInputError, match=r"\$in"):
        to_qdrant_filter({"a": [1, 2]})
    with pytest.raises(InvalidInputError, match="filter must be"):
        to_qdrant_filter(["a"])


def test_payload_indexes_are_created_with_the_collection(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    created: list[tuple[str, object]] = []
    create = client.create_payload_index
    client.create_payload_index = lambda name, key, schema, **kw: (
        created.append((key, schema))
        or create(  # type: ignore[method-assign]
            name, key, schema, **kw
        )
    )
    config = CollectionConfig(payload_indexes={"year": "float", "src.name": "keyword"})
    QdrantLateInteractionStore(client, "indexed", tiny_encoder, config=config)
    assert ("metadata.year", models.PayloadSchemaType.FLOAT) in created
    assert ("metadata.src.name", models.PayloadSchemaType.KEYWORD) in created
    created.clear()
    QdrantLateInteractionStore(client, "indexed", tiny_encoder, config=config)  # exists: nothing created
    assert created == []


def test_payload_keys_and_indexes_are_recorded_and_read_back(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    keys = PayloadKeys(text="text", metadata="meta")
    config = CollectionConfig(payload_keys=keys, payload_indexes={"year": "float"}, token_layout="fp16")
    store = QdrantLateInteractionStore(client, "mapped", tiny_encoder, config=config)
    store.add_texts(["protein gene", "heart brain"], [{"year": 2020}, {"year": 2021}], ["a", "b"])
    payload = client.retrieve("mapped", [point_id("a")], with_payload=True)[0].payload
    assert payload["text"] == "protein gene" and payload["meta"] == {"year": 2020}
    assert "page_content" not in payload and "metadata" not in payload
    reopened = QdrantLateInteractionStore(client, "mapped", tiny_encoder)  # no config: the recorded one
    assert reopened.config.payload_keys == keys and dict(reopened.config.payload_indexes) == {"year": "float"}
    assert [(r.id, r.text, r.metadata) for r in reopened.get(["b"])] == [("b", "heart brain", {"year": 2021})]
    for mode in ("local", "native"):
        assert [r.id for r in reopened.search("protein", k=5, filter={"year": {"$gte": 2021}}, mode=mode)] == ["b"]
    assert {d.id: d.text for d in reopened.iter_documents()} == {"a": "protein gene", "b": "heart brain"}
    assert to_qdrant_filter({"year": 2020}, metadata_key="meta").must[0].key == "meta.year"


@pytest.mark.parametrize(
    "kwargs", [{"text": ""}, {"metadata": "doc_id"}, {"text": "a.b"}, {"text": "x", "metadata": "x"}, {"text": 3}]
)
def test_bad_payload_keys_are_refused(kwargs) -> None:
    with pytest.raises(InvalidInputError, match="PayloadKeys"):
        PayloadKeys(**kwargs)


def test_filtered_search_returns_k_hits_in_both_modes(filter_store, tiny_encoder) -> None:
    # No client-side re-filter: Qdrant filters inside the prefetches, so k matching hits come back.
    fp16 = filled(QdrantClient(":memory:"), tiny_encoder, config=FP16)
    for store, mode in ((filter_store, "local"), (fp16, "local"), (fp16, "native")):
        hits = store.search(QUERIES[0], k=3, filter={"topic": {"$in": TOPICS[:1]}}, mode=mode, candidate_depth=3)
        assert len(hits) == 3 and all(h.metadata["topic"] == TOPICS[0] for h in hits)
    assert set(filter_store.search_options) == {"mode", "candidate_depth"}
    with pytest.raises(InvalidInputError, match="valid ones are candidate_depth, mode"):
        filter_store.search(QUERIES[0], depth=3)


def test_qdrant_filter_object_passes_through(filter_store) -> None:
    flt = models.Filter(must=[models.FieldCondition(key="metadata.year", range=models.Range(gte=2002))])
    hits = filter_store.search(QUERIES[0], k=30, filter=flt)
    assert hits and all(h.metadata["year"] >= 2002 for h in hits)


# ---------------------------------------------------------------------- writes
def test_readding_an_id_replaces_it_and_drops_stale_windows(client, tiny_encoder) -> None:
    store = QdrantLateInteractionStore(client, collection(), tiny_encoder, max_tokens_per_point=4, device="cpu")
    long_text = " ".join(WORDS[:20])
    store.add_texts([long_text, "heart"], [{"v": 1}, None], ["a", "b"])
    before = client.count(store.collection_name, exact=True).count
    store.add_texts(["gene"], [{"v": 2}], ["a"], replace=True)
    assert len(store) == 2
    assert client.count(store.collection_name, exact=True).count < before  # old windows of "a" removed
    [doc] = store.get(["a"])
    assert (doc.text, doc.metadata) == ("gene", {"v": 2})
    assert store.get(["zzz", "b"])[0].id == "b"
    assert "a" in store and "zzz" not in store
    assert sorted(store.ids()) == ["a", "b"]
    torch.testing.assert_close(
        store.get_embeddings(["a"])["a"], tiny_encoder.encode_documents("gene").half().float(), atol=0, rtol=0
    )


def test_add_texts_validates_before_writing(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    with pytest.raises(InvalidInputError):
        store.add_texts("one text")
    with pytest.raises(InvalidInputError, match="ids"):
        store.add_texts(["a", "b"], ids=["x"])
    with pytest.raises(InvalidInputError):
        store.add_texts(["a", "b"], ids=["x", "x"])
    with pytest.raises(InvalidInputError, match="JSON"):
        store.add_texts(["a"], [{"bad": object()}])
    assert len(store) == 0
    new_ids = store.add_texts(["cell gene", "virus"], show_progress_bar=True)
    assert len(new_ids) == 2 and len(store) == 2
    assert store.add_texts([]) == []


def test_add_documents_uses_page_content_metadata_and_ids(tiny_encoder) -> None:
    from langchain_core.documents import Document

    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    ids = store.add_documents([Document("gene cell", metadata={"s": 1}, id="d1"), Document("virus", id="d2")])
    assert ids == ["d1", "d2"]
    assert store.get(["d1"])[0].metadata == {"s": 1}


def test_delete(tiny_encoder) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder, max_tokens_per_point=6)
    store.delete(["nope"])  # unknown ids are ignored (the store contract)
    assert len(store) == 24
    store.delete(["doc-1", "doc-2", "nope"])
    assert len(store) == 22
    assert not store.get(["doc-1"])
    assert store.client.count(store.collection_name, count_filter=_doc_filter("doc-1"), exact=True).count == 0
    assert all(h.id not in ("doc-1", "doc-2") for h in store.search(QUERIES[0], k=30))


def _doc_filter(doc_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])


def test_failed_writes_report_the_ids_that_did_not_land(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder, write_batch_size=2)
    store.add_texts(["gene"], ids=["kept"])
    store.client = QdrantClient(
        url="http://127.0.0.1:9", timeout=1, check_compatibility=False
    )  # a server that is not there
    store.retries = 2
    with pytest.raises(PartialWriteError) as info:
        store.add_embeddings(
            ["x", "y"],
            [torch.randn(3, tiny_encoder.dim), torch.randn(4, tiny_encoder.dim)],
            ids=["x", "y"],
            replace=True,
        )
    assert info.value.failed_ids == ["x", "y"] and info.value.written_ids == []


def _points(store: QdrantLateInteractionStore) -> list:
    return store.client.scroll(store.collection_name, limit=10_000, with_payload=True)[0]


class _Interrupt(BaseException):
    """Stands in for Ctrl-C in the middle of a write."""


def _interrupt_upsert_call(store: QdrantLateInteractionStore, call: int) -> None:
    upsert, calls = store.client.upsert, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise _Interrupt
        return upsert(*args, **kwargs)

    store.client.upsert = failing


@pytest.mark.parametrize("call", [1, 2])  # 1: while writing the later windows; 2: the commit itself
def test_a_write_interrupted_part_way_leaves_the_old_document(tiny_encoder, call) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder, max_tokens_per_point=4,
                                       device="cpu")  # fmt: skip
    old_text = " ".join(WORDS[:12])
    store.add_texts([old_text], [{"v": 1}], ["a"])
    before = store.get_embeddings(["a"])["a"]
    points = len(_points(store))
    _interrupt_upsert_call(store, call)
    with pytest.raises(_Interrupt):
        store.add_texts([" ".join(WORDS[5:20])], [{"v": 2}], ["a"], replace=True)
    [doc] = store.get(["a"])
    assert (doc.text, doc.metadata) == (old_text, {"v": 1})
    torch.testing.assert_close(store.get_embeddings(["a"])["a"], before, atol=0, rtol=0)
    hit = store.search(" ".join(WORDS[5:20]), k=1)[0]
    assert hit.id == "a" and hit.score == pytest.approx(maxsim([tiny_encoder.encode_queries(" ".join(WORDS[5:20]))],
                                                                [before])[0, 0].item(), abs=ATOL)  # fmt: skip
    # The interrupted write's windows are invisible; repair() removes them.
    extra = len(_points(store)) - points
    assert extra > 0 or call == 1
    assert store.repair() == extra
    assert len(_points(store)) == points and store.repair() == 0


@pytest.mark.parametrize("layout", ["fp16", "plaid"])
def test_stale_windows_are_ignored_by_every_reader_and_removed_by_repair(client, tiny_encoder, layout) -> None:
    store = QdrantLateInteractionStore(client, collection(), tiny_encoder, max_tokens_per_point=4, device="cpu",
                                       candidate_depth=100, config=CollectionConfig(token_layout=layout))  # fmt: skip
    texts = {"a": " ".join(WORDS[:14]), "b": "heart blood"}
    store.add_texts(list(texts.values()), [{"v": "a"}, {"v": "b"}], list(texts))
    clean = {p.id for p in _points(store)}
    want = store.get_embeddings(["a", "b"])
    # Leftovers of a killed write: windows of "a" (another write id, other vectors and metadata) and
    # windows of a document whose window 0 never landed.
    ones = torch.ones(4, tiny_encoder.dim)
    vector = {TOKENS: ones.tolist()} if layout == "fp16" else {}
    tokens = {} if layout == "fp16" else {TOKENS_FP16: encode_fp16(ones)}  # a plaid collection before its codec
    forged = [
        models.PointStruct(
            id=str(uuid.uuid4()),
            vector={**vector, "pooled": [1.0] * tiny_encoder.dim},
            payload={"doc_id": d, "window": w, "n_windows": 3, "write_id": write, "metadata": {"v": "stale"}, **tokens},
        )
        for d, write in (("a", "killed-write"), ("ghost", "never-committed"))
        for w in (1, 2)
    ]
    client.upsert(store.collection_name, points=forged, wait=True)
    q = [torch.ones(2, tiny_encoder.dim) / tiny_encoder.dim**0.5]  # the forged windows would win any search
    for mode in ("local", "native") if layout == "fp16" else ("local",):
        assert {h.id for h in store.search_embeddings(q, k=10, mode=mode)[0]} == {"a", "b"}
        assert not store.search_embeddings(q, k=10, mode=mode, filter={"v": "stale"})[0]
        flt = models.Filter(must=[models.FieldCondition(key="metadata.v", match=models.MatchValue(value="stale"))])
        assert not store.search_embeddings(q, k=10, mode=mode, filter=flt)[0]
    got = store.get_embeddings(["a", "b", "ghost"])
    assert set(got) == {"a", "b"}
    torch.testing.assert_close(got["a"], want["a"], atol=0, rtol=0)
    assert len(store) == 2 and sorted(store.ids()) == ["a", "b"]
    local = sync_from_qdrant(client, store.collection_name, tiny_encoder, device="cpu")
    assert sorted(local.index.ids) == ["a", "b"]
    assert store.repair() == 4
    assert {p.id for p in _points(store)} == clean and store.repair() == 0


def test_the_next_write_to_an_id_deletes_its_stale_windows(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder, max_tokens_per_point=4)
    store.add_texts([" ".join(WORDS[:14])], ids=["a"])
    _interrupt_upsert_call(store, 2)
    with pytest.raises(_Interrupt):
        store.add_texts([" ".join(WORDS[3:17])], ids=["a"], replace=True)
    store.client.upsert = QdrantClient.upsert.__get__(store.client)
    store.add_texts(["gene"], ids=["a"], replace=True)
    assert [p.payload["doc_id"] for p in _points(store)] == ["a"] and store.repair() == 0


def test_layout_1_collections_are_read_and_rewritten(tiny_encoder, monkeypatch) -> None:
    import lateint_plugins.qdrant as module
    from lateint_plugins.qdrant import collection, layout, writing

    client = QdrantClient(":memory:")
    for where in (layout, collection, writing):  # windows at uuid5(doc_id, window), as version 1 wrote
        monkeypatch.setattr(where, "LAYOUT_VERSION", 1)
    old = QdrantLateInteractionStore(client, "v1", tiny_encoder, max_tokens_per_point=4, device="cpu", config=FP16)
    old.add_texts([" ".join(WORDS[:14]), "heart"], ids=["a", "b"])
    assert module.point_id("a", 1) in {p.id for p in _points(old)}
    monkeypatch.undo()
    store = QdrantLateInteractionStore(client, "v1", tiny_encoder, max_tokens_per_point=4, device="cpu")
    want = tiny_encoder.encode_documents(" ".join(WORDS[:14])).half().float()
    torch.testing.assert_close(store.get_embeddings(["a"])["a"], want, atol=0, rtol=0)
    assert store.search(" ".join(WORDS[:3]), k=2)[0].score > 0 and store.repair() == 0
    assert client.get_collection("v1").config.metadata["lateint"]["layout_version"] == 1  # reading changes nothing
    store.add_texts([" ".join(WORDS[2:12])], ids=["a"], replace=True)  # rewritten in layout 2; the old windows go
    assert client.get_collection("v1").config.metadata["lateint"]["layout_version"] == 2  # older code now refuses
    assert module.point_id("a", 1) not in {p.id for p in _points(store)}
    n_windows = -(-tiny_encoder.encode_documents(" ".join(WORDS[2:12])).shape[0] // 4)
    assert len(_points(store)) == n_windows + 1 and store.repair() == 0


def test_replace_false_refuses_existing_ids_before_writing(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    store.add_texts(["gene"], ids=["a"])
    with pytest.raises(DuplicateIdError, match="replace=True"):
        store.add_texts(["virus", "heart"], ids=["new", "a"], replace=False)
    with pytest.raises(DuplicateIdError):
        store.add_embeddings(["text"], [torch.randn(3, tiny_encoder.dim)], ids=["a"], replace=False)
    assert store.ids() == ["a"] and store.get(["a"])[0].text == "gene"
    assert store.add_texts(["virus"], ids=["new"], replace=False) == ["new"]


def test_two_threads_adding_one_new_id_one_wins(tiny_encoder) -> None:
    import threading

    client = QdrantClient(":memory:")
    name = collection()
    first, second = (QdrantLateInteractionStore(client, name, tiny_encoder) for _ in range(2))
    retrieve, checking, checked = client.retrieve, threading.Event(), threading.Event()

    def slow_check(*args, **kwargs):
        result = retrieve(*args, **kwargs)
        if threading.current_thread().name == "second":
            checked.set()
        elif not checking.is_set():
            checking.set()
            # Give the other thread every chance to check too before this one writes; with the
            # collection lock it cannot, and the wait simply runs out.
            checked.wait(timeout=1.0)
        return result

    client.retrieve = slow_check
    outcome: dict[str, object] = {}

    def add(store, text, label):
        try:
            outcome[label] = store.add_texts([text], ids=["same"], replace=False)
        except DuplicateIdError as exc:
            outcome[label] = exc

    threads = [
        threading.Thread(target=add, args=(first, "gene cell", "first"), name="first"),
        threading.Thread(target=add, args=(second, "virus", "second"), name="second"),
    ]
    threads[0].start()
    assert checking.wait(timeout=60)
    threads[1].start()
    for t in threads:
        t.join(timeout=60)
    assert outcome["first"] == ["same"] and isinstance(outcome["second"], DuplicateIdError)
    assert first.get(["same"])[0].text == "gene cell" and len(first) == 1


def test_an_insert_racing_another_process_is_not_overwritten(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    name = collection()
    store = QdrantLateInteractionStore(client, name, tiny_encoder, max_tokens_per_point=4)
    other = QdrantLateInteractionStore(client, name, tiny_encoder, max_tokens_per_point=4)
    other._lock = type(other._lock)()  # another process: its own lock
    upsert = client.upsert

    def commit_meanwhile(*args, **kwargs):
        if "update_mode" in kwargs and not other.ids():
            other.add_texts(["heart blood"], ids=["x"], replace=True)  # lands between our check and our commit
        return upsert(*args, **kwargs)

    client.upsert = commit_meanwhile
    with pytest.raises(DuplicateIdError, match="another writer"):
        store.add_texts([" ".join(WORDS[:14])], ids=["x"], replace=False)
    assert store.get(["x"])[0].text == "heart blood"
    # Our uncommitted windows were removed: only the other writer's points are left.
    assert len({p.payload["write_id"] for p in _points(store)}) == 1 and store.repair() == 0


# ---------------------------------------------------------------------- bad input
def test_missing_collection(tiny_encoder) -> None:
    with pytest.raises(CollectionNotFoundError, match="create=True"):
        QdrantLateInteractionStore(QdrantClient(":memory:"), "absent", tiny_encoder, create=False)


def test_unreachable_server(tiny_encoder) -> None:
    with pytest.raises(QdrantUnavailableError, match="server is running"):
        QdrantLateInteractionStore(
            QdrantClient(url="http://127.0.0.1:9", timeout=1, check_compatibility=False), "c", tiny_encoder
        )


def test_wrong_vector_size(tiny_encoder, tiny_pylate_path) -> None:
    client = QdrantClient(":memory:")
    store = QdrantLateInteractionStore(client, "c", tiny_encoder)
    with pytest.raises(DimensionMismatchError, match="8-d vectors but collection"):
        store.add_embeddings(["x"], [torch.randn(3, 8)])
    assert len(store) == 0
    narrow = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", truncate_dim=8)
    with pytest.raises(DimensionMismatchError, match="16-d"):
        QdrantLateInteractionStore(client, "c", narrow)


def _other_weights(tiny_pylate_path: Path, folder: Path) -> Path:
    """The tiny model with another projection of the same width: same name length, other vectors."""
    from safetensors.torch import save_file

    other = shutil.copytree(tiny_pylate_path, folder)
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(7)) / 32**0.5
    save_file({"linear.weight": weight.contiguous()}, str(other / "1_Dense" / "model.safetensors"))
    return other


def test_model_fingerprint_is_checked_on_open(tiny_encoder, tiny_pylate_path, tmp_path, caplog) -> None:
    client = QdrantClient(":memory:")
    QdrantLateInteractionStore(client, "c", tiny_encoder).add_texts(["gene cell"], ids=["a"])
    # The same weights in a moved (renamed) folder: the same model, so it opens.
    moved = shutil.copytree(tiny_pylate_path, tmp_path / "moved-model")
    assert QdrantLateInteractionStore(client, "c", ColBERTEncoder.from_pretrained(moved, device="cpu")).ids() == ["a"]
    other = ColBERTEncoder.from_pretrained(_other_weights(tiny_pylate_path, tmp_path / "other"), device="cpu")
    assert other.dim == tiny_encoder.dim
    with pytest.raises(ModelMismatchError, match=r"weights differ.*allow_model_mismatch"):
        QdrantLateInteractionStore(client, "c", other)
    with caplog.at_level("WARNING", logger="lateint_plugins"):
        assert len(QdrantLateInteractionStore(client, "c", other, allow_model_mismatch=True)) == 1
    assert "weights differ" in caplog.text


def test_collections_without_a_fingerprint_open_with_a_warning(
    tiny_encoder, tiny_pylate_path, tmp_path, monkeypatch, caplog
) -> None:
    import lateint_plugins.qdrant.store as module

    client = QdrantClient(":memory:")
    marker = module._marker

    def old_marker(encoder, config):
        recorded = marker(encoder, config)
        del recorded["fingerprint"]
        return recorded

    monkeypatch.setattr(module, "_marker", old_marker)
    QdrantLateInteractionStore(client, "old", tiny_encoder)
    monkeypatch.undo()
    with caplog.at_level("WARNING", logger="lateint_plugins"):
        QdrantLateInteractionStore(client, "old", tiny_encoder)
    assert "records no model fingerprint" in caplog.text
    # Without a fingerprint only the model's name can be compared, as before.
    another = shutil.copytree(tiny_pylate_path, tmp_path / "another-model")
    with pytest.raises(CollectionMismatchError, match="another-model"):
        QdrantLateInteractionStore(client, "old", ColBERTEncoder.from_pretrained(another, device="cpu"))


def test_foreign_collection(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    client.create_collection("foreign", vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE))
    with pytest.raises(CollectionMismatchError, match="not created by lateint-plugins"):
        QdrantLateInteractionStore(client, "foreign", tiny_encoder)


def test_bad_arguments(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    with pytest.raises(InvalidInputError, match="mode"):
        QdrantLateInteractionStore(client, "c", tiny_encoder, mode="remote")
    with pytest.raises(InvalidInputError, match="candidate_depth"):
        QdrantLateInteractionStore(client, "c", tiny_encoder, candidate_depth=0)
    with pytest.raises(InvalidInputError, match="pooled_vectors"):
        CollectionConfig(pooled_vectors=0)
    store = QdrantLateInteractionStore(client, "c", tiny_encoder)
    with pytest.raises(InvalidInputError, match="k must"):
        store.search("x", k=0)
    with pytest.raises(InvalidInputError, match="list of str"):
        store.search_batch("x")
    assert store.search("anything") == []
    assert store.search_batch([]) == []


def _bad_matrices(dim: int) -> dict[str, object]:
    return {
        "nan": torch.full((3, dim), float("nan")),
        "inf": torch.full((3, dim), float("inf")),
        "-inf in one cell": torch.ones(3, dim).index_put_(
            (torch.tensor([1]), torch.tensor([2])), torch.tensor(-math.inf)
        ),
        "object dtype": np.array([[object()] * dim] * 2, dtype=object),
        "int array": np.ones((3, dim), dtype=np.int64),
        "int tensor": torch.ones(3, dim, dtype=torch.int64),
        "bool array": np.ones((3, dim), dtype=bool),
        "rank 1": torch.ones(dim),
        "rank 3": torch.ones(1, 3, dim),
        "no rows": torch.ones(0, dim),
        "wider": torch.ones(3, dim + 1),
        "beyond float16": torch.full((2, dim), 1e5),
        "nested list": [[0.1] * dim],
    }


@pytest.mark.parametrize("case", list(_bad_matrices(16)))
def test_bad_vectors_are_refused_naming_the_argument(tiny_encoder, case) -> None:
    bad = _bad_matrices(tiny_encoder.dim)[case]
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    store.add_texts(["gene cell"], ids=["kept"])
    with pytest.raises(InvalidInputError, match=r"embeddings\[0\]"):
        store.add_embeddings(["x"], [bad])
    with pytest.raises(InvalidInputError, match=r"query_embeddings\[0\]"):
        store.search_embeddings([bad])
    assert store.ids() == ["kept"] and len(_points(store)) == 1


def test_one_bare_matrix_where_a_list_is_expected_is_refused(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    matrix = torch.ones(2, tiny_encoder.dim)
    with pytest.raises(InvalidInputError, match="embeddings must be a list"):
        store.add_embeddings(["x", "y"], matrix)
    with pytest.raises(InvalidInputError, match="query_embeddings must be a list"):
        store.search_embeddings(matrix)
    assert len(store) == 0


def test_strings_that_are_not_utf8_are_refused_before_any_write(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    bad = "x\ud800"
    vector = [torch.ones(2, tiny_encoder.dim) / 4]
    with pytest.raises(InvalidInputError, match=r"texts\[1\].*UTF-8"):
        store.add_texts(["gene", bad])
    with pytest.raises(InvalidInputError, match=r"ids\[0\]"):
        store.add_texts(["gene"], ids=[bad])
    with pytest.raises(InvalidInputError, match=r"metadata.*\[0\]"):
        store.add_texts(["gene"], [{bad: 1}])
    with pytest.raises(InvalidInputError, match=r"metadata.*\[0\]"):
        store.add_texts(["gene"], [{"k": ["fine", {"deep": bad}]}])
    with pytest.raises(InvalidInputError, match=r"ids\[0\]"):
        store.add_embeddings(["x"], vector, ids=[bad])
    with pytest.raises(InvalidInputError, match=r"texts\[0\]"):
        store.add_embeddings([bad], vector)
    assert len(_points(store)) == 0
    store.add_texts(["gene"], ids=["a"])
    with pytest.raises(InvalidInputError, match="query"):
        store.search(bad)
    with pytest.raises(InvalidInputError, match=r"queries\[1\]"):
        store.search_batch(["gene", bad])
    with pytest.raises(InvalidInputError, match=r"query_texts\[0\]"):
        store.search_embeddings(vector, query_texts=[bad])
    with pytest.raises(InvalidInputError, match=r"ids\[1\]"):
        store.get(["a", bad])
    with pytest.raises(InvalidInputError, match=r"ids\[0\]"):
        store.delete([bad])
    assert bad not in store and store.ids() == ["a"]


def test_a_bare_str_where_a_list_is_expected_is_an_error(tiny_encoder) -> None:
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder)
    vectors = [torch.ones(2, tiny_encoder.dim) / 4] * 2
    with pytest.raises(InvalidInputError, match="texts must be a list"):
        store.add_embeddings("ab", vectors)
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        store.add_texts(["gene", "cell"], ids="ab")
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        store.add_embeddings(["a", "b"], vectors, ids="ab")
    with pytest.raises(InvalidInputError, match="metadata"):
        store.add_texts(["gene"], {"k": 1})
    with pytest.raises(InvalidInputError, match="documents must be a list"):
        store.add_documents("gene")
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        store.get("doc-1")
    with pytest.raises(InvalidInputError, match="ids must be a list"):
        store.delete("doc-1")
    with pytest.raises(InvalidInputError, match="query_texts"):
        store.search_embeddings(vectors[:1], query_texts="q")
    with pytest.raises(InvalidInputError, match="query must be a str"):
        store.search(["gene"])
    assert len(_points(store)) == 0


def test_an_empty_collection_opens_and_reads(tiny_encoder, tmp_path) -> None:
    client = QdrantClient(path=str(tmp_path / "q"))
    QdrantLateInteractionStore(client, "empty", tiny_encoder, config=FP16)
    client.close()
    client = QdrantClient(path=str(tmp_path / "q"))
    store = QdrantLateInteractionStore(client, "empty", tiny_encoder, create=False)
    assert len(store) == 0 and store.ids() == [] and store.get(["a"]) == [] and store.get_embeddings(["a"]) == {}
    for mode in ("local", "native"):
        assert store.search_embeddings([torch.ones(2, tiny_encoder.dim) / 4], mode=mode) == [[]]
    assert store.search("gene") == [] and store.repair() == 0
    assert len(sync_from_qdrant(client, "empty", tiny_encoder, device="cpu")) == 0
    client.close()


# ---------------------------------------------------------------------- sync
def test_sync_is_incremental_and_resumable(client, tiny_encoder, reference) -> None:
    local = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    ids, texts, metas = corpus()
    local.add_texts(texts, metas, ids)
    name = collection()
    first = sync(local, client, name)
    assert sorted(first.added) == sorted(ids) and first.unchanged == 0
    again = sync(local, client, name)
    assert (again.added, again.updated, again.deleted, again.unchanged) == ([], [], [], len(ids))

    local.add_texts(["a brand new text"], [{"topic": "new"}], ["doc-3"], replace=True)
    local.delete(["doc-4"])
    local.add_texts(["fresh document"], ids=["doc-new"])
    # An interrupted earlier run: two documents never landed.
    store = QdrantLateInteractionStore(client, name, tiny_encoder)
    store.delete(["doc-7", "doc-8"])
    report = sync(local, client, name)
    assert sorted(report.added) == ["doc-7", "doc-8", "doc-new"]
    assert report.updated == ["doc-3"] and report.deleted == ["doc-4"]
    assert len(store) == len(local)
    assert store.get(["doc-3"])[0].text == "a brand new text"
    query = tiny_encoder.encode_queries(QUERIES[0])
    got = store.search_embeddings([query], k=5, candidate_depth=1000)[0]
    want = local.index.search(query, k=5)
    assert [h.id for h in got] == [h.id for h in want]


def test_sync_from_qdrant_rebuilds_the_local_index(tiny_encoder, reference) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder, max_tokens_per_point=5)
    local = sync_from_qdrant(store.client, store.collection_name, tiny_encoder, device="cpu")
    assert sorted(local.index.ids) == sorted(reference.index.ids)
    for got, want in zip(local.search_batch(QUERIES, k=5), reference.search_batch(QUERIES, k=5), strict=True):
        assert_same(got, want)
    with pytest.raises(CollectionNotFoundError):
        sync_from_qdrant(store.client, "absent")


def test_iter_documents_reads_committed_documents_with_or_without_vectors(tiny_encoder, reference) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder, max_tokens_per_point=5)
    want = {r.id: r for r in reference.get(reference.index.ids)}
    docs = {d.id: d for d in store.iter_documents(with_vectors=True)}
    assert sorted(docs) == sorted(want)
    for doc_id, matrix in zip(reference.index.ids, reference.index.embeddings(), strict=True):
        doc = docs[doc_id]
        assert (doc.text, doc.metadata) == (want[doc_id].text, want[doc_id].metadata)
        assert doc.content_hash == content_hash(doc.text, doc.metadata)
        torch.testing.assert_close(doc.embedding, matrix.float(), atol=0, rtol=0)  # windows re-assembled
    bare = list(store.iter_documents(with_text=False))
    assert {d.id for d in bare} == set(want) and all(d.text == "" and d.embedding is None for d in bare)


def test_sync_from_qdrant_loads_the_recorded_model(tiny_encoder) -> None:
    store = filled(QdrantClient(":memory:"), tiny_encoder)
    local = sync_from_qdrant(store.client, store.collection_name, device="cpu")
    assert local.encoder.dim == tiny_encoder.dim and len(local) == len(store)


def test_content_hash_covers_text_and_metadata() -> None:
    assert content_hash("a", {"x": 1, "y": 2}) == content_hash("a", {"y": 2, "x": 1})
    assert content_hash("a", None) == content_hash("a", {})
    assert content_hash("a", {"x": 1}) != content_hash("a", {"x": 2}) != content_hash("b", {"x": 2})


def test_maxsim_reference_is_the_core_function(tiny_encoder) -> None:
    # The store scores with core.scoring.maxsim: one candidate scored by hand agrees.
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), collection(), tiny_encoder, device="cpu")
    store.add_texts(["protein cell gene"], ids=["only"])
    q = tiny_encoder.encode_queries("protein")
    want = maxsim([q], [tiny_encoder.encode_documents("protein cell gene").half().float()])[0, 0].item()
    assert store.search("protein", k=1)[0].score == pytest.approx(want, abs=ATOL)


def test_public_names_are_pinned() -> None:
    import lateint_plugins.qdrant as module

    assert sorted(module.__all__) == sorted(
        [
            "LAYOUT_VERSION",
            "MAX_MULTIVECTOR_FLOATS",
            "AsyncQdrantLateInteractionStore",
            "CollectionConfig",
            "CollectionMismatchError",
            "CollectionNotFoundError",
            "PartialWriteError",
            "PayloadKeys",
            "QdrantLateInteractionStore",
            "QdrantUnavailableError",
            "StoredDocument",
            "SyncReport",
            "bm25_vector",
            "content_hash",
            "sync",
            "sync_from_qdrant",
            "sync_to_qdrant",
            "to_qdrant_filter",
        ]
    )
