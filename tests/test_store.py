"""LateInteractionStore and rerank: one scoring path, filters before scoring, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import (
    DuplicateIdError,
    IndexNotFoundError,
    InvalidInputError,
    UnknownIdError,
)
from lateint_plugins.core.index import ExactIndex
from lateint_plugins.core.rerank import rerank
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore

TEXTS = [
    "The cat sat on the mat.",
    "Dogs are loyal companions.",
    "Quantum computers use qubits.",
    "The stock market fell sharply today.",
    "A cat chased a mouse around the house.",
    "Qubits can be in superposition.",
]
META = [
    {"topic": "pets"},
    {"topic": "pets"},
    {"topic": "physics"},
    {"topic": "finance"},
    {"topic": "pets"},
    {"topic": "physics"},
]
IDS = [f"t{i}" for i in range(len(TEXTS))]


@pytest.fixture
def store(tiny_encoder: ColBERTEncoder) -> LateInteractionStore:
    s = LateInteractionStore(tiny_encoder)
    assert s.add_texts(TEXTS, META, IDS) == IDS
    return s


def test_search_scores_are_maxsim_of_the_encoder(store: LateInteractionStore, tiny_encoder: ColBERTEncoder) -> None:
    query = "cats and mice"
    results = store.search(query, k=6)
    expected = maxsim(
        tiny_encoder.encode_queries([query]), [d.half().float() for d in tiny_encoder.encode_documents(TEXTS)]
    )[0]
    order = torch.argsort(expected, descending=True)
    assert [r.id for r in results] == [IDS[i] for i in order]
    torch.testing.assert_close(torch.tensor([r.score for r in results]), expected[order], rtol=1e-5, atol=1e-5)
    assert results[0].text == TEXTS[int(order[0])] and results[0].metadata == META[int(order[0])]


def test_filter_applies_before_scoring(store: LateInteractionStore) -> None:
    results = store.search("qubits", k=10, filter={"topic": "pets"})
    assert {r.id for r in results} == {"t0", "t1", "t4"}
    assert store.search("qubits", k=2, filter={"topic": "nothing"}) == []


def test_delete_get_and_generated_ids(store: LateInteractionStore) -> None:
    store.delete(["t2"])
    assert "t2" not in store and len(store) == 5
    assert all(r.id != "t2" for r in store.search("quantum qubits", k=10))
    assert [r.text for r in store.get(["t5", "t2", "t0"])] == [TEXTS[5], TEXTS[0]]
    new_ids = store.add_texts(["fresh text"])
    assert len(new_ids) == 1 and len(new_ids[0]) == 32 and new_ids[0] in store
    with pytest.raises(UnknownIdError):
        store.delete(["t2"])


def test_save_and_load_round_trip(store: LateInteractionStore, tiny_encoder: ColBERTEncoder, tmp_path: Path) -> None:
    store.save(tmp_path / "store")
    fresh = LateInteractionStore.load(tmp_path / "store")  # reloads the model from the recorded path
    again = LateInteractionStore.load(tmp_path / "store", encoder=tiny_encoder)
    for loaded in (fresh, again):
        assert loaded.search_batch(["cat", "market"], k=4) == store.search_batch(["cat", "market"], k=4)
    assert fresh.encoder.config == tiny_encoder.config


def test_bad_calls_change_nothing(
    store: LateInteractionStore, tiny_encoder: ColBERTEncoder, tmp_path: Path, tiny_bert_path: Path
) -> None:
    with pytest.raises(DuplicateIdError):
        store.add_texts(["x"], ids=["t0"])
    with pytest.raises(InvalidInputError, match="one id per text"):
        store.add_texts(["x", "y"], ids=["a"])
    with pytest.raises(InvalidInputError, match="metadata"):
        store.add_texts(["x", "y"], metadatas=[{}], ids=["a", "b"])
    with pytest.raises(InvalidInputError, match="wrap a single text"):
        store.add_texts("just one")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty"):
        store.add_texts(["ok", ""], ids=["a", "b"])
    assert len(store) == len(TEXTS) and "a" not in store
    with pytest.raises(IndexNotFoundError):
        LateInteractionStore.load(tmp_path / "missing")
    store.save(tmp_path / "s")
    other = ColBERTEncoder.from_pretrained(tiny_bert_path, device="cpu")  # 32-d, the store is 16-d
    with pytest.raises(InvalidInputError, match="same model"):
        LateInteractionStore.load(tmp_path / "s", encoder=other)
    with pytest.raises(InvalidInputError, match="16-d"):
        LateInteractionStore(other, ExactIndex(dim=16))


def test_rerank_matches_store_scores(store: LateInteractionStore, tiny_encoder: ColBERTEncoder) -> None:
    query = "a cat on a mat"
    reranked = rerank(query, TEXTS, k=3, encoder=tiny_encoder)
    searched = store.search(query, k=3)
    assert [TEXTS[r.index] for r in reranked] == [r.text for r in searched]
    # The store keeps fp16 vectors; rerank scores fresh fp32 ones. Same MaxSim, tiny rounding gap.
    torch.testing.assert_close(
        torch.tensor([r.score for r in reranked]),
        torch.tensor([r.score for r in searched]),
        atol=2e-2,
        rtol=1e-3,
    )
    assert rerank(query, [], encoder=tiny_encoder) == []
    full = rerank(query, TEXTS, encoder=tiny_encoder)
    assert sorted(r.index for r in full) == list(range(len(TEXTS)))
    assert [r.score for r in full] == sorted((r.score for r in full), reverse=True)
    with pytest.raises(InvalidInputError, match="k must be"):
        rerank(query, TEXTS, k=0, encoder=tiny_encoder)
    with pytest.raises(InvalidInputError, match="list of str"):
        rerank(query, "one doc", encoder=tiny_encoder)  # type: ignore[arg-type]


def test_replace_upserts_and_validates_first(store: LateInteractionStore) -> None:
    assert store.add_texts(["Quantum qubits again.", "brand new"], [{"topic": "x"}, None], ["t3", "n1"], replace=True)
    assert len(store) == len(TEXTS) + 1
    assert store.get(["t3"])[0].text == "Quantum qubits again." and store.index.metadata("t3") == {"topic": "x"}
    rebuilt = LateInteractionStore(store.encoder)
    rebuilt.add_texts(*zip(*[(r.text, r.metadata, r.id) for r in store.get(store.index.ids)], strict=True))
    assert store.search("qubits", k=7) == rebuilt.search("qubits", k=7)
    with pytest.raises(InvalidInputError, match="metadata"):
        store.add_texts(["y"], [{"bad": object()}], ["t0"], replace=True)
    assert store.get(["t0"])[0].text == TEXTS[0]  # a failed upsert removes nothing


def test_from_pretrained_builds_either_index_kind(tiny_pylate_path: Path) -> None:
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
    from lateint_plugins.core.store import DocumentStore

    exact = LateInteractionStore.from_pretrained(tiny_pylate_path, device="cpu")
    plaid = LateInteractionStore.from_pretrained(
        tiny_pylate_path, index="plaid", device="cpu", index_options={"config": PLAIDConfig(nbits=4)}
    )
    assert isinstance(exact.index, ExactIndex) and isinstance(plaid.index, PLAIDIndex)
    assert plaid.index.config.nbits == 4 and isinstance(plaid, DocumentStore)
    with pytest.raises(InvalidInputError, match="index kind"):
        LateInteractionStore.from_pretrained(tiny_pylate_path, index="annoy", device="cpu")


def test_chunked_add_equals_one_shot_and_rolls_back(
    store: LateInteractionStore, tiny_encoder: ColBERTEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked = LateInteractionStore(tiny_encoder)
    chunked.add_texts(TEXTS, META, IDS, chunk_size=2)
    assert chunked.search_batch(["cat", "qubits"], k=6) == store.search_batch(["cat", "qubits"], k=6)

    calls = 0
    encode = tiny_encoder.encode_documents

    def fail_on_second_chunk(texts, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("out of memory")
        return encode(texts, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode_documents", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="out of memory"):
        chunked.add_texts(["new one", "new two", "new three"], ids=["n1", "n2", "n3"], chunk_size=1)
    assert chunked.index.ids == IDS and chunked.get(["n1"]) == []


def test_plaid_store_trains_on_a_sample_before_streaming(tiny_encoder: ColBERTEncoder) -> None:
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex

    texts = [f"document number {i} about {TEXTS[i % len(TEXTS)]}" for i in range(60)]
    index = PLAIDIndex(config=PLAIDConfig(nbits=4, n_centroids=16), device="cpu")
    store = LateInteractionStore(tiny_encoder, index)
    store.add_texts(texts, ids=[str(i) for i in range(60)], chunk_size=16)
    assert index.is_trained and len(store) == 60
    exact = LateInteractionStore(tiny_encoder)
    exact.add_texts(texts, ids=[str(i) for i in range(60)])
    hits = store.search("document about qubits", k=10)
    exact_scores = {r.id: r.score for r in exact.search("document about qubits", k=60)}
    # 4-bit residuals: every score is the exact MaxSim of that document up to compression error.
    assert max(abs(h.score - exact_scores[h.id]) / exact_scores[h.id] for h in hits) < 0.02


def test_add_embeddings_equals_add_texts(store: LateInteractionStore, tiny_encoder: ColBERTEncoder) -> None:
    again = LateInteractionStore(tiny_encoder)
    assert again.add_embeddings(TEXTS, tiny_encoder.encode_documents(TEXTS), META, IDS) == IDS
    assert again.search_batch(["cat", "qubits"], k=6) == store.search_batch(["cat", "qubits"], k=6)
    with pytest.raises(InvalidInputError, match="0 embeddings"):
        again.add_embeddings(["x"], [], ids=["x"])
    with pytest.raises(DuplicateIdError):
        again.add_embeddings(["x"], tiny_encoder.encode_documents(["x"]), ids=["t0"])
