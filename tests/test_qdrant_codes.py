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
from lateint_plugins.core import ColBERTEncoder, LateInteractionStore
from lateint_plugins.core.codec import ResidualCodec
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
    encode_centroid_set,
)
from lateint_plugins.qdrant.layout import (
    _MARKER,
    CENTROID_IDS,
    CENTROID_SET,
    REFINEMENT,
    RESIDUALS,
    TOKENS,
    marker_version,
    recorded_config,
)

WORDS = ALL_WORDS[:16]  # the first 16 of the shared vocabulary
QUERIES = ["protein cell", "cancer drug trial", "immune virus", "brain heart blood"]
PLAID = CollectionConfig(token_layout="plaid", nbits=4)


def plaid_config(codec: ResidualCodec) -> CollectionConfig:
    """The plaid layout that takes ``codec`` (one stage or two)."""
    return CollectionConfig(token_layout="plaid", nbits=codec.nbits, quantizer="rq" if codec.stages > 1 else "pq")


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
    config = CollectionConfig(token_layout="plaid", nbits=nbits, quantizer="rq")
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
    fp16 = QdrantLateInteractionStore(client, "plain", tiny_encoder, device="cpu")
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
    # Opened with the default (fp16) config, each collection keeps its recorded layout and codec.
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
    assert recorded_config({"token_layout": "fp16", "nbits": None, "lexical": {"k1": 1.2}}) == CollectionConfig()
    assert marker_version(CollectionConfig(token_layout="plaid")) == 4 and marker_version(CollectionConfig()) == 2


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
    fp16 = QdrantLateInteractionStore(QdrantClient(":memory:"), name(), tiny_encoder)
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
