"""The ``token_layout="plaid"`` Qdrant layout (PLAID codes in the payload) and PLAID <-> Qdrant sync.

Runs against ``QdrantClient(":memory:")`` and ``QdrantClient(path=...)`` always, and against a real
server when ``QDRANT_URL`` is set (e.g. ``QDRANT_URL=http://localhost:6333``).
"""

from __future__ import annotations

import base64
import logging
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from _texts import WORDS as ALL_WORDS
from hypothesis import given, settings
from hypothesis import strategies as st
from lateint_plugins.core import ColBERTEncoder, ExactIndex, LateInteractionStore
from lateint_plugins.core.codec import ResidualCodec, default_n_centroids
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig
from lateint_plugins.core.scoring import maxsim

pytest.importorskip("qdrant_client", reason="needs the qdrant extra")
pytest.importorskip("faiss", reason="codec training needs the faiss extra")

from qdrant_client import QdrantClient

from lateint_plugins.qdrant import (
    CollectionConfig,
    CollectionMismatchError,
    QdrantLateInteractionStore,
    sync_from_qdrant,
    sync_to_qdrant,
)
from lateint_plugins.qdrant.codes import (
    codec_bytes,
    codec_from_bytes,
    codec_from_parts,
    codec_points,
    decode_centroid_set,
    decode_fp16,
    encode_centroid_set,
    encode_fp16,
    train,
)
from lateint_plugins.qdrant.layout import (
    _MARKER,
    CENTROID_IDS,
    CENTROID_SET,
    CODEC_TRAINING_TOKENS,
    REFINEMENT,
    RESIDUALS,
    TOKENS,
    TOKENS_FP16,
    marker_version,
    point_id,
    recorded_config,
)

WORDS = ALL_WORDS[:16]  # the first 16 of the shared vocabulary
QUERIES = ["protein cell", "cancer drug trial", "immune virus", "brain heart blood"]
PLAID = CollectionConfig(token_layout="plaid", nbits=4, codec_training_tokens=0)
FP16 = CollectionConfig(token_layout="fp16")


def plaid_config(codec: ResidualCodec) -> CollectionConfig:
    """The plaid layout that takes ``codec`` (one stage or two)."""
    quantizer = "rq" if codec.stages > 1 else "pq"
    return CollectionConfig(token_layout="plaid", nbits=codec.nbits, quantizer=quantizer, codec_training_tokens=0)


def corpus(n: int = 40, seed: int = 0) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 24))) for _ in range(n)]
    return [f"doc-{i}" for i in range(n)], texts, [{"topic": rng.choice("abc"), "i": i} for i in range(n)]


@pytest.fixture(params=["memory", "path", "url"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        c = QdrantClient(":memory:")
    elif request.param == "path":
        c = QdrantClient(path=str(tmp_path / "qdrant"))
    else:
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip("set QDRANT_URL to run against a Qdrant server (none runs on the CI machines)")
        c = QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
    yield c
    c.close()


def name() -> str:
    return f"codes-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module", params=["pq", "rq"])
def plaid_store(request: pytest.FixtureRequest, tiny_encoder: ColBERTEncoder) -> LateInteractionStore:
    """A PLAID store of :func:`corpus`, with a one-stage codec and with a two-stage one."""
    ids, texts, metas = corpus()
    config = PLAIDConfig(nbits=4, n_centroids=16, quantizer=request.param)
    index = PLAIDIndex(config=config, device="cpu", search_config=SearchConfig(n_ivf_probe=16))
    store = LateInteractionStore(tiny_encoder, index)
    store.add_texts(texts, metas, ids)
    return store


def decompressed_maxsim(codec: ResidualCodec, query: torch.Tensor, doc: torch.Tensor) -> float:
    codes, residuals = codec.compress(doc.half().float())
    return float(maxsim([query], [codec.decompress(codes, residuals)])[0, 0])


def test_scores_are_maxsim_over_the_decompressed_codes(client: Any, tiny_encoder: ColBERTEncoder, plaid_store) -> None:
    codec = plaid_store.index.codec
    ids, texts, metas = corpus()
    every = {"candidate_depth": 1000, "n_full_scores": 1000, "n_refine": 1000}
    store = QdrantLateInteractionStore(client, name(), tiny_encoder, config=plaid_config(codec), codec=codec,
                                       device="cpu", **every)  # fmt: skip
    store.add_texts(texts, metas, ids)
    docs = dict(zip(ids, tiny_encoder.encode_documents(texts), strict=True))
    for query in QUERIES:
        q = tiny_encoder.encode_queries(query)
        want = sorted(((decompressed_maxsim(codec, q, d), i) for i, d in docs.items()), reverse=True)[:5]
        got = store.search(query, k=5)
        assert [h.id for h in got] == [i for _, i in want]
        assert [h.score for h in got] == pytest.approx([s for s, _ in want], abs=1e-4)
        assert all((h.text, h.metadata) == (texts[ids.index(h.id)], metas[ids.index(h.id)]) for h in got)
    # Vectors read back are the decompressed ones.
    got = store.get_embeddings(["doc-3"])["doc-3"]
    torch.testing.assert_close(got, codec.decompress(*codec.compress(docs["doc-3"].half().float())), atol=1e-6, rtol=0)


def test_only_the_best_candidates_residuals_are_read(tiny_encoder: ColBERTEncoder) -> None:
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus()
    store = QdrantLateInteractionStore(client, name(), tiny_encoder, config=PLAID, device="cpu", n_full_scores=4,
                                       candidate_depth=1000)  # fmt: skip
    store.add_texts(texts, metas, ids)
    store._read_arrays = False  # the requests a server answers (local mode's own candidates skip the first)
    asked: list[tuple[int, Any]] = []
    retrieve = client.retrieve
    client.retrieve = lambda *a, **kw: asked.append((len(kw["ids"]), kw["with_payload"])) or retrieve(*a, **kw)  # type: ignore[method-assign]
    query_batch = client.query_batch_points
    responses: list[Any] = []
    client.query_batch_points = lambda *a, **kw: responses.append(query_batch(*a, **kw)) or responses[-1]  # type: ignore[method-assign]
    hits = store.search("protein cell", k=3)
    assert len(hits) == 3
    candidates = responses[0][0].points
    assert len(candidates) == len(ids)  # every document is a candidate, with its centroid ids ...
    assert all(set(p.payload) & {CENTROID_IDS, RESIDUALS} == set() and not p.vector for p in candidates)
    assert all(CENTROID_SET in p.payload for p in candidates)  # ... with its distinct centroids ...
    code_reads = [n for n, fields in asked if isinstance(fields, list) and {CENTROID_IDS, RESIDUALS} <= set(fields)]
    assert code_reads == [4]  # ... but only the best n_full_scores have their codes read


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 32767), min_size=1, max_size=300))
def test_centroid_sets_round_trip(ids: list[int]) -> None:
    assert decode_centroid_set(encode_centroid_set(torch.tensor(ids))).tolist() == sorted(set(ids))


def test_damaged_centroid_sets_and_points_written_without_them(tiny_encoder: ColBERTEncoder) -> None:
    for broken in ("", base64.b64encode(bytes([5, 0x81])).decode()):  # empty; ends inside a number
        with pytest.raises(CorruptIndexError, match="centroid_set"):
            decode_centroid_set(broken)
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus()
    store = QdrantLateInteractionStore(client, name(), tiny_encoder, config=PLAID, device="cpu", candidate_depth=1000)
    store.add_texts(texts, metas, ids, show_progress_bar=False)
    want = store.search_batch(QUERIES, k=5)
    # Points written before centroid sets existed: their ids stand in.
    points = [p.id for p in client.scroll(store.collection_name, limit=1000)[0] if p.payload.get("doc_id") in ids[::2]]
    client.delete_payload(store.collection_name, keys=[CENTROID_SET], points=points)
    for arrays in (True, False):
        store._read_arrays = arrays
        assert [[(h.id, h.score) for h in row] for row in store.search_batch(QUERIES, k=5)] == [
            [(h.id, h.score) for h in row] for row in want
        ]


@pytest.mark.parametrize("nbits", [4, 6])
def test_a_residual_quantiser_reads_its_later_stages_for_the_best_n_refine_only(
    tiny_encoder: ColBERTEncoder, nbits: int
) -> None:
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus()
    config = CollectionConfig(token_layout="plaid", nbits=nbits, quantizer="rq", codec_training_tokens=0)
    store = QdrantLateInteractionStore(client, name(), tiny_encoder, config=config, device="cpu", n_full_scores=8,
                                       n_refine=4, candidate_depth=1000)  # fmt: skip
    store.add_texts(texts, metas, ids)
    codec = store.codec
    assert codec is not None and codec.stages == nbits // 2
    asked: list[tuple[list[str], Any]] = []
    retrieve = client.retrieve
    client.retrieve = lambda *a, **kw: asked.append((kw["ids"], kw["with_payload"])) or retrieve(*a, **kw)  # type: ignore[method-assign]
    hits = store.search("protein cell", k=3)
    first = [pids for pids, fields in asked if isinstance(fields, list) and RESIDUALS in fields]
    second = [pids for pids, fields in asked if isinstance(fields, list) and REFINEMENT in fields]
    assert [len(p) for p in first] == [8] and [len(p) for p in second] == [4] and set(second[0]) <= set(first[0])
    # The hits come from those four, scored on their full codes (every stage).
    q = tiny_encoder.encode_queries("protein cell")
    docs = dict(zip(ids, tiny_encoder.encode_documents(texts), strict=True))
    assert len(hits) == 3
    for hit in hits:
        assert hit.score == pytest.approx(decompressed_maxsim(codec, q, docs[hit.id]), abs=1e-4)
    # Stored as two fields: the first stage's bytes, then the later stages'; read back whole.
    point = client.scroll(store.collection_name, limit=1, with_payload=True)[0][0]
    assert {RESIDUALS, REFINEMENT} <= set(point.payload)
    doc = point.payload["doc_id"]
    want = codec.decompress(*codec.compress(docs[doc].half().float()))
    torch.testing.assert_close(store.get_embeddings([doc])[doc], want, atol=1e-6, rtol=0)


def test_layout_is_recorded_and_read_back_whatever_the_config(tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    path = str(tmp_path / "q")
    client = QdrantClient(path=path)
    ids, texts, metas = corpus(12)
    store = QdrantLateInteractionStore(client, "coded", tiny_encoder, config=PLAID, device="cpu")
    store.add_texts(texts, metas, ids)
    fp16 = QdrantLateInteractionStore(client, "plain", tiny_encoder, device="cpu", config=FP16)
    fp16.add_texts(texts[:2], ids=ids[:2])
    info = client.get_collection("coded")
    marker = info.config.metadata[_MARKER]
    assert (marker["token_layout"], marker["nbits"], marker["quantizer"], marker["layout_version"]) == (
        "plaid",
        4,
        "rq",  # the default where nbits allows
        4,
    )
    assert TOKENS not in info.config.params.vectors and "codec" in marker
    plain = client.get_collection("plain").config
    assert (plain.metadata[_MARKER]["token_layout"], plain.metadata[_MARKER]["layout_version"]) == ("fp16", 2)
    assert TOKENS in plain.params.vectors
    want = store.search_batch(QUERIES, k=4)
    client.close()
    client = QdrantClient(path=path)
    # Opened without a config, each collection keeps its recorded layout and codec.
    again = QdrantLateInteractionStore(client, "coded", tiny_encoder, device="cpu")
    assert (again.config.token_layout, again.config.nbits, again.config.quantizer) == ("plaid", 4, "rq")
    assert codec_points(again.codec)[0]["id"] == marker["codec"]["id"]
    assert [[(h.id, round(h.score, 5)) for h in row] for row in again.search_batch(QUERIES, k=4)] == [
        [(h.id, round(h.score, 5)) for h in row] for row in want
    ]
    assert QdrantLateInteractionStore(client, "plain", tiny_encoder, config=PLAID).config.token_layout == "fp16"
    # Codec points are not documents.
    assert len(again) == len(ids) and sorted(again.ids()) == sorted(ids)
    assert {d.id for d in again.iter_documents()} == set(ids)
    assert again.repair() == 0 and again.codec is not None
    with pytest.raises(InvalidInputError, match="native"):
        again.search("protein", mode="native")
    client.close()


def test_config_defaults_and_collections_of_older_layouts() -> None:
    # The measured default: a residual quantiser of three 2-bit stages; 1 and 2 bits stay product quantisers.
    assert (CollectionConfig(token_layout="plaid").nbits, CollectionConfig(token_layout="plaid").quantizer) == (6, "rq")
    assert CollectionConfig(token_layout="plaid", nbits=2).quantizer == "pq"
    with pytest.raises(InvalidInputError, match="nbits"):
        CollectionConfig(token_layout="plaid", nbits=2, quantizer="rq")
    with pytest.raises(InvalidInputError, match="quantizer"):
        CollectionConfig(token_layout="plaid", quantizer="scalar")  # type: ignore[arg-type]
    # A layout-3 marker records nbits only: its codec is a product quantiser. fp16 ones record neither.
    old = recorded_config({"token_layout": "plaid", "nbits": 4, "layout_version": 3})
    assert (old.nbits, old.quantizer, marker_version(old)) == (4, "pq", 3)
    assert recorded_config({"token_layout": "fp16", "nbits": None, "lexical": {"k1": 1.2}}) == FP16
    assert marker_version(FP16) == 2 and marker_version(PLAID) == 4
    # The default: plaid, fp16 tokens in the payload until the codec is trained (layout 5). Markers
    # written before layout 5 trained on the first write.
    assert (CollectionConfig().token_layout, marker_version(CollectionConfig())) == ("plaid", 5)
    assert CollectionConfig().codec_training_tokens == CODEC_TRAINING_TOKENS
    assert recorded_config({"token_layout": "plaid", "nbits": 6, "quantizer": "rq"}).codec_training_tokens == 0
    for bad in (-1, True, 1.5, "100"):
        with pytest.raises(InvalidInputError, match="codec_training_tokens"):
            CollectionConfig(codec_training_tokens=bad)  # type: ignore[arg-type]


def test_first_write_trains_the_codec_and_later_writes_reuse_it(tiny_encoder: ColBERTEncoder, caplog) -> None:
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus()
    collection = name()
    store = QdrantLateInteractionStore(client, collection, tiny_encoder, config=PLAID, device="cpu")
    assert store.codec is None and store.search("protein") == []
    with caplog.at_level(logging.WARNING, logger="lateint_plugins.qdrant.codes"):
        store.add_embeddings(texts[:30], tiny_encoder.encode_documents(texts[:30]), metas[:30], ids[:30])
    assert "representative first batch" in caplog.text  # a few hundred tokens train it: the user is told
    codec = store.codec
    assert codec is not None and codec.nbits == 4
    # Another store object on the collection reads the same codec; its writes use it.
    other = QdrantLateInteractionStore(client, collection, tiny_encoder, device="cpu")
    other.add_texts(texts[30:], metas[30:], ids[30:])
    assert codec_points(other.codec)[0]["id"] == codec_points(codec)[0]["id"]
    assert len(store) == len(ids) and store.search("protein cell", k=1)


def test_long_documents_split_into_windows_score_as_one(tiny_encoder: ColBERTEncoder, plaid_store) -> None:
    codec = plaid_store.index.codec
    ids, texts, metas = corpus()
    kwargs: dict[str, Any] = {"config": plaid_config(codec), "codec": codec, "device": "cpu", "candidate_depth": 1000}
    whole = QdrantLateInteractionStore(QdrantClient(":memory:"), name(), tiny_encoder, **kwargs)
    split = QdrantLateInteractionStore(QdrantClient(":memory:"), name(), tiny_encoder, max_tokens_per_point=4, **kwargs)
    for store in (whole, split):
        store.add_texts(texts, metas, ids)
    for replaced in (False, True):
        if replaced:  # fewer windows than before: the old write's are not read
            for store in (whole, split):
                store.add_texts(["protein cell " * 3], ids=[max(ids, key=len)], replace=True)
        for got, want in zip(split.search_batch(QUERIES, k=5), whole.search_batch(QUERIES, k=5), strict=True):
            assert [h.id for h in got] == [h.id for h in want]
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    assert split.repair() == 0


def test_add_codes_checks_the_codec(tiny_encoder: ColBERTEncoder, plaid_store) -> None:
    codec = plaid_store.index.codec
    codes, residuals = plaid_store.index.document_codes(["doc-0"])[0]
    fp16 = QdrantLateInteractionStore(QdrantClient(":memory:"), name(), tiny_encoder, config=FP16)
    with pytest.raises(InvalidInputError, match="token_layout='plaid'"):
        fp16.add_codes(["t"], [codes], [residuals], codec=codec)
    with pytest.raises(CollectionMismatchError, match="stage"):  # a codec of the other quantizer
        other_kind = "pq" if codec.stages == 2 else "rq"
        QdrantLateInteractionStore(
            QdrantClient(":memory:"), name(), tiny_encoder, config=CollectionConfig(token_layout="plaid", nbits=4,
                                                                                    quantizer=other_kind)
        ).add_codes(["t"], [codes], [residuals], codec=codec)  # fmt: skip
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), name(), tiny_encoder, config=plaid_config(codec))
    with pytest.raises(InvalidInputError, match="codec"):
        store.add_codes(["t"], [codes], [residuals])  # no codec anywhere yet
    store.add_codes(["t"], [codes], [residuals], ids=["a"], codec=codec)
    with pytest.raises(InvalidInputError, match="centroid ids"):
        store.add_codes(["t"], [codes + 1000], [residuals], ids=["b"])
    with pytest.raises(InvalidInputError, match="residuals"):
        store.add_codes(["t"], [codes], [residuals[:, :2]], ids=["b"])
    other = PLAIDIndex(config=PLAIDConfig(nbits=4, n_centroids=8, seed=1), device="cpu")
    other.train(torch.cat(tiny_encoder.encode_documents(corpus()[1])))
    with pytest.raises(CollectionMismatchError, match="another codec"):
        store.add_codes(["t"], [codes], [residuals], ids=["b"], codec=other.codec)
    assert "b" not in store and store.get(["a"])[0].text == "t"


@pytest.mark.parametrize("quantizer", ["pq", "scalar", "rq"])
def test_codec_serialisation_round_trips(tiny_encoder: ColBERTEncoder, quantizer: str) -> None:
    config = PLAIDConfig(nbits=6 if quantizer == "rq" else 2, n_centroids=8, quantizer=quantizer)  # type: ignore[arg-type]
    index = PLAIDIndex(config=config, device="cpu")
    index.train(torch.cat(tiny_encoder.encode_documents(corpus()[1])))
    codec = index.codec
    back = codec_from_bytes(codec_bytes(codec))
    assert (back.nbits, back.stages, back.quantizer) == (codec.nbits, codec.stages, quantizer)
    for field in ("centroids", "codebooks", "rotation", "levels"):
        a, b = getattr(codec, field), getattr(back, field)
        assert (a is None and b is None) or torch.equal(a, b), field
    entry, parts = codec_points(codec)
    payloads = {p["part"]: p for _, p in parts}
    assert torch.equal(codec_from_parts(entry, payloads).centroids, codec.centroids)
    broken = {0: {**payloads[0], "data": payloads[0]["data"][:-8] + "AAAAAAAA"}}
    with pytest.raises(CorruptIndexError):
        codec_from_parts(entry, broken)
    with pytest.raises(CorruptIndexError):
        codec_from_parts({**entry, "n_parts": 2}, payloads)


# ---------------------------------------------------------------------- sync
def test_plaid_to_qdrant_to_plaid_returns_the_same_results(
    client: Any, tiny_encoder: ColBERTEncoder, plaid_store
) -> None:
    collection = name()
    report = sync_to_qdrant(plaid_store, client, collection, batch_size=16)
    assert sorted(report.added) == sorted(plaid_store.ids()) and report.unchanged == 0
    remote = QdrantLateInteractionStore(client, collection, tiny_encoder)
    assert remote.config.token_layout == "plaid"
    assert codec_points(remote.codec)[0]["id"] == codec_points(plaid_store.index.codec)[0]["id"]
    # The codes travelled as they are.
    for (_doc, coded), (codes, residuals) in zip(
        sorted(remote.iter_codes(), key=lambda x: x[0].id),
        plaid_store.index.document_codes(sorted(plaid_store.ids())),
        strict=True,
    ):
        assert torch.equal(coded.codes, codes) and torch.equal(coded.residuals, residuals)
    back = sync_from_qdrant(
        client, collection, tiny_encoder, device="cpu", search_config=plaid_store.index.search_config
    )
    assert isinstance(back.index, PLAIDIndex) and sorted(back.ids()) == sorted(plaid_store.ids())
    for got, want in zip(back.search_batch(QUERIES, k=8), plaid_store.search_batch(QUERIES, k=8), strict=True):
        assert [(h.id, h.text, h.metadata) for h in got] == [(h.id, h.text, h.metadata) for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    # An exact store from the same collection: the decompressed vectors (stored at fp16).
    exact = sync_from_qdrant(client, collection, tiny_encoder, index="exact", device="cpu")
    q = tiny_encoder.encode_queries(QUERIES[0])
    codec = plaid_store.index.codec
    for hit in exact.search(QUERIES[0], k=3):
        codes, residuals = plaid_store.index.document_codes([hit.id])[0]
        want = float(maxsim([q], [codec.decompress(codes.long(), residuals).half().float()])[0, 0])
        assert hit.score == pytest.approx(want, abs=1e-4)


def test_sync_of_codes_is_incremental_and_refuses_another_codec(tiny_encoder: ColBERTEncoder, plaid_store) -> None:
    client = QdrantClient(":memory:")
    collection = name()
    sync_to_qdrant(plaid_store, client, collection)
    again = sync_to_qdrant(plaid_store, client, collection)
    assert (again.added, again.updated, again.deleted, again.unchanged) == ([], [], [], len(plaid_store))
    store = QdrantLateInteractionStore(client, collection, tiny_encoder)
    store.delete(["doc-5"])  # as if an earlier run was interrupted before it landed
    assert sync_to_qdrant(plaid_store, client, collection).added == ["doc-5"]
    other = LateInteractionStore(
        tiny_encoder, PLAIDIndex(config=PLAIDConfig(nbits=4, n_centroids=8, seed=3), device="cpu")
    )
    other.add_texts(["protein cell gene"] * 12, ids=[f"o{i}" for i in range(12)])
    with pytest.raises(CollectionMismatchError, match="another codec"):
        sync_to_qdrant(other, client, collection)


# ---------------------------------------------------------------------- fp16 until the codec is trained
def deferred(client: Any, encoder: ColBERTEncoder, threshold: int, **kwargs: Any) -> QdrantLateInteractionStore:
    """A default-layout store that trains its codec once it holds ``threshold`` tokens."""
    config = CollectionConfig(codec_training_tokens=threshold, n_centroids=16)
    every = {"candidate_depth": 1000, "n_full_scores": 1000, "n_refine": 1000}
    return QdrantLateInteractionStore(client, name(), encoder, config=config, device="cpu", **every, **kwargs)


def fp16_windows(store: QdrantLateInteractionStore) -> list[str]:
    points, _ = store.client.scroll(store.collection_name, limit=10_000, with_payload=["doc_id", TOKENS_FP16])
    return [p.payload["doc_id"] for p in points if TOKENS_FP16 in (p.payload or {})]


def ranked(store: QdrantLateInteractionStore, k: int = 6) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 4)) for h in row] for row in store.search_batch(QUERIES, k=k)]


def test_a_plaid_collection_keeps_fp16_tokens_until_it_trains_its_codec(client, tiny_encoder) -> None:
    ids, texts, metas = corpus()
    docs = dict(zip(ids, [d.half().float() for d in tiny_encoder.encode_documents(texts)], strict=True))
    first = sum(docs[i].shape[0] for i in ids[:20])
    store = deferred(client, tiny_encoder, threshold=first + 1, max_tokens_per_point=8)
    store.add_texts(texts[:20], metas[:20], ids[:20], batch_size=7)
    # Below the threshold: no codec, fp16 tokens in the payload, exact MaxSim (as the fp16 layout).
    assert store.codec is None and "codec" not in client.get_collection(store.collection_name).config.metadata[_MARKER]
    assert set(fp16_windows(store)) == set(ids[:20])
    exact = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    exact.add_texts(texts[:20], metas[:20], ids[:20])
    for got, want in zip(store.search_batch(QUERIES, k=6), exact.search_batch(QUERIES, k=6), strict=True):
        assert [h.id for h in got] == [h.id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
    assert {i: m.tolist() for i, m in store.get_embeddings(ids[:20]).items()} == {i: docs[i].tolist() for i in ids[:20]}
    assert sorted(sync_from_qdrant(client, store.collection_name, tiny_encoder, device="cpu").index.ids) == sorted(
        ids[:20]
    )
    # The write that crosses it trains the codec on every token so far and compresses the earlier documents.
    store.add_texts(texts[20:], metas[20:], ids[20:])
    codec = store.codec
    assert codec is not None and fp16_windows(store) == []
    assert client.get_collection(store.collection_name).config.metadata[_MARKER]["fp16_compressed"] is True
    for i, got in store.get_embeddings(ids).items():
        torch.testing.assert_close(got, codec.decompress(*codec.compress(docs[i])), atol=1e-6, rtol=0)
    for query in QUERIES:
        q = tiny_encoder.encode_queries(query)
        want = sorted(((decompressed_maxsim(codec, q, d), i) for i, d in docs.items()), reverse=True)[:5]
        assert [h.id for h in store.search(query, k=5)] == [i for _, i in want]


def test_windows_left_fp16_by_an_interrupted_compression_read_as_their_codes(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus()
    docs = dict(zip(ids, [d.half() for d in tiny_encoder.encode_documents(texts)], strict=True))
    store = deferred(client, tiny_encoder, threshold=1, max_tokens_per_point=8)
    store.add_texts(texts, metas, ids)
    want_hits, want_vectors = ranked(store), store.get_embeddings(ids)
    want_codes = {d.id: (c.codes.tolist(), c.residuals.tolist()) for d, c in store.iter_codes()}
    # Undo the compression of every other window, as a kill part-way through it leaves them.
    points, _ = client.scroll(store.collection_name, limit=10_000, with_payload=True)
    undone = 0
    for p in points[::2]:
        if "doc_id" not in p.payload:
            continue  # a codec point
        payload = {k: v for k, v in p.payload.items() if k not in (CENTROID_IDS, CENTROID_SET, RESIDUALS, REFINEMENT)}
        tokens = docs[p.payload["doc_id"]][8 * p.payload["window"] : 8 * (p.payload["window"] + 1)]
        client.overwrite_payload(store.collection_name, {**payload, TOKENS_FP16: encode_fp16(tokens)}, [p.id])
        undone += 1
    assert len(fp16_windows(store)) == undone > 0
    # Every reader computes their codes: the same hits, vectors and codes, through arrays or the public API.
    for arrays in (True, False):
        store._read_arrays = arrays
        assert ranked(store) == want_hits
    got = store.get_embeddings(ids)
    assert all(got[i].tolist() == want_vectors[i].tolist() for i in ids)
    assert {d.id: (c.codes.tolist(), c.residuals.tolist()) for d, c in store.iter_codes()} == want_codes
    # The next store object's first write does not rescan (the marker says it is done); repair does.
    fresh = QdrantLateInteractionStore(client, store.collection_name, tiny_encoder, device="cpu")
    fresh.add_texts(["gene protein"], ids=["late"])
    assert len(fp16_windows(store)) == undone
    before = ranked(fresh)
    assert fresh.repair() == 0 and fp16_windows(store) == []
    assert ranked(fresh) == before  # compressed as the readers compressed them on the fly


def test_compression_leaves_a_document_rewritten_meanwhile_alone(tiny_encoder, monkeypatch) -> None:
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus(8)
    store = deferred(client, tiny_encoder, threshold=10**6)
    store.add_texts(texts, metas, ids)
    assert store.codec is None and len(fp16_windows(store)) == len(ids)
    other = QdrantLateInteractionStore(client, store.collection_name, tiny_encoder, device="cpu")
    real = client.batch_update_points

    def rewrite_first(*args: Any, **kwargs: Any) -> Any:
        # Another writer replaces doc-0 after the compression read it, before its payload is replaced.
        monkeypatch.setattr(client, "batch_update_points", real)
        QdrantLateInteractionStore._write(other, ["doc-0"], [torch.ones(3, tiny_encoder.dim) / 4], ["new text"],
                                          [{"v": 2}], [], ["doc-0"])  # fmt: skip
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "batch_update_points", rewrite_first)
    codec = store._record_codec(train([store.get_embeddings(ids)[i] for i in ids], 6, 16, quantizer="rq"))
    store._compress_fp16(codec)
    assert [(r.text, r.metadata) for r in store.get(["doc-0"])] == [("new text", {"v": 2})]  # not the old version
    assert fp16_windows(store) == [] and store.get_embeddings(["doc-0"])["doc-0"].shape[0] == 3


def test_a_codec_trained_on_first_documents_gets_the_centroids_of_a_larger_collection(tiny_encoder, monkeypatch):
    from lateint_plugins.qdrant import coded

    asked: list[int | None] = []
    real = coded.train

    def spy(samples, nbits, n_centroids, **kwargs):
        asked.append(n_centroids)
        return real(samples, nbits, 8, **kwargs)

    monkeypatch.setattr(coded, "train", spy)
    store = QdrantLateInteractionStore(QdrantClient(":memory:"), name(), tiny_encoder,
                                       config=CollectionConfig(codec_training_tokens=100), device="cpu")  # fmt: skip
    matrices = [torch.nn.functional.normalize(torch.randn(60, tiny_encoder.dim), dim=-1) for _ in range(2)]
    store.add_embeddings(["a"], matrices[:1], ids=["a"])
    assert asked == [] and store.codec is None  # 60 tokens: below the threshold
    store.add_embeddings(["b"], matrices[1:], ids=["b"])
    assert asked == [default_n_centroids(coded.GROWTH * 120, 6)] and store.codec is not None


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.sampled_from([1, 16, 96]), st.integers(0, 2**31 - 1))
def test_fp16_tokens_round_trip_at_fp16_precision(n: int, dim: int, seed: int) -> None:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) * 100
    assert decode_fp16(encode_fp16(x), dim).tolist() == x.half().float().tolist()


def test_a_damaged_fp16_tokens_field_is_named(tiny_encoder: ColBERTEncoder) -> None:
    for broken, dim in (("", 16), (base64.b64encode(bytes(6)).decode(), 16)):  # empty; 3 numbers of a 16-d vector
        with pytest.raises(CorruptIndexError, match=TOKENS_FP16):
            decode_fp16(broken, dim)
    client = QdrantClient(":memory:")
    store = deferred(client, tiny_encoder, threshold=10**6)
    store.add_texts(["protein cell gene", "heart blood"], ids=["a", "b"])
    client.set_payload(store.collection_name, {TOKENS_FP16: base64.b64encode(bytes(6)).decode()}, [point_id("a")])
    with pytest.raises(CorruptIndexError, match=TOKENS_FP16):
        store.search("protein", k=2)


def test_a_codec_trained_while_a_search_runs_is_used(tiny_encoder: ColBERTEncoder, monkeypatch) -> None:
    client = QdrantClient(":memory:")
    ids, texts, metas = corpus()
    store = deferred(client, tiny_encoder, threshold=1)
    store.add_texts(texts, metas, ids)
    want = ranked(store)
    reader = QdrantLateInteractionStore(client, store.collection_name, tiny_encoder, device="cpu",
                                        candidate_depth=1000, n_full_scores=1000, n_refine=1000)  # fmt: skip
    looked_up = []
    real = QdrantLateInteractionStore._current_codec

    def stale_once(self):  # the first look-up happened before the writer recorded its codec
        looked_up.append(1)
        return None if len(looked_up) == 1 else real(self)

    monkeypatch.setattr(QdrantLateInteractionStore, "_current_codec", stale_once)
    got = ranked(reader)
    assert got == want and len(looked_up) >= 2
