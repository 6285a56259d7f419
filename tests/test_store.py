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
)
from lateint_plugins.core.index import ExactIndex
from lateint_plugins.core.rerank import rerank
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore, SearchResult

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
    store.delete(["t2", "never there"])  # unknown ids are ignored (the store contract)
    assert len(store) == 6


def test_plaid_search_options_apply_to_one_call(tiny_encoder: ColBERTEncoder) -> None:
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig

    store = LateInteractionStore(tiny_encoder, PLAIDIndex(config=PLAIDConfig(nbits=4, n_centroids=8), device="cpu"))
    assert LateInteractionStore(tiny_encoder).search_options == {}
    assert store.search_options["n_ivf_probe"] == SearchConfig().n_ivf_probe
    store.add_texts(TEXTS, META, IDS)
    seen: list[SearchConfig] = []
    search = store.index.search
    store.index.search = lambda *a, **kw: seen.append(store.index.search_config) or search(*a, **kw)  # type: ignore[method-assign]
    assert len(store.search("qubits", k=2, n_ivf_probe=1, n_full_scores=4)) == 2
    assert (seen[0].n_ivf_probe, seen[0].n_full_scores) == (1, 4)
    assert store.index.search_config == SearchConfig()  # restored after the call
    with pytest.raises(InvalidInputError, match="n_ivf_probe"):
        store.search("qubits", n_ivf_probe=0)


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
    with pytest.raises(InvalidInputError, match=r"texts\[1\] cannot be encoded as UTF-8"):
        store.add_texts(["ok", "\ud800"], ids=["a", "b"])
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


# ------------------------------------------------------------------ transactional writes (issue 12, cause 3)
def _snapshot(store: LateInteractionStore) -> tuple[list[str], list[SearchResult], list[list[SearchResult]]]:
    """Ids, stored documents and rankings: what a failed write must leave exactly as it was."""
    ids = store.index.ids
    return ids, store.get(ids), store.search_batch(["cat on a mat", "qubits"], k=len(ids))


class _Interrupt(KeyboardInterrupt):
    """A Ctrl-C injected by a test."""


@pytest.mark.parametrize("kind", ["exact", "plaid"])
@pytest.mark.parametrize("error", [RuntimeError, _Interrupt])
@pytest.mark.parametrize("where", ["encoding", "compression", "compression-in-scratch-files"])
def test_a_failed_upsert_leaves_the_old_documents_intact(
    tiny_encoder: ColBERTEncoder,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    error: type[BaseException],
    where: str,
) -> None:
    from lateint_plugins.core import plaid
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex

    def build() -> LateInteractionStore:
        config = PLAIDConfig(nbits=4, n_centroids=8)
        built = LateInteractionStore(
            tiny_encoder, ExactIndex(device="cpu") if kind == "exact" else PLAIDIndex(config=config, device="cpu")
        )
        built.add_texts(TEXTS, META, IDS)
        return built

    store = build()
    before = _snapshot(store)
    upsert = (["Cats again, rewritten.", "A brand new text."], [{"topic": "new"}, None], ["t0", "fresh"])

    if where == "encoding":
        monkeypatch.setattr(tiny_encoder, "encode_documents", lambda *a, **k: (_ for _ in ()).throw(error("boom")))
    elif kind == "exact":
        monkeypatch.setattr(ExactIndex, "_add_vectors", lambda self, vectors: (_ for _ in ()).throw(error("boom")))
    else:
        # Several compression chunks per add; the second one fails after the first was appended to the
        # pending rows (in memory, or with no room there, in the scratch files).
        monkeypatch.setattr(plaid, "_ADD_CHUNK_TOKENS", 4)
        if where == "compression-in-scratch-files":
            monkeypatch.setattr(plaid, "_PENDING_RAM_ROWS", 0)
        compress, calls = plaid.ResidualCodec.compress, []

        def fail_second(self: plaid.ResidualCodec, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            calls.append(x.shape[0])
            if len(calls) == 2:
                raise error("boom")
            return compress(self, x)

        monkeypatch.setattr(plaid.ResidualCodec, "compress", fail_second)
    with pytest.raises(error, match="boom"):
        store.add_texts(*upsert, replace=True)
    assert _snapshot(store) == before
    assert "fresh" not in store and store.get(["t0"])[0].metadata == META[0]

    monkeypatch.undo()  # the store still works: another upsert succeeds and scores its own vectors
    retry = (["Stock prices and loyal dogs.", "Superposition of bread."], [{"topic": "new"}, None], ["t0", "fresh"])
    store.add_texts(*retry, replace=True)
    assert store.get(["t0", "fresh"])[0].text == retry[0][0] and len(store) == len(TEXTS) + 1
    # The same index kind, same training, given only the successful writes: exactly the same scores.
    twin = build()
    twin.add_texts(*retry, replace=True)
    for query in ("stock prices", "bread", "cats"):
        assert store.search(query, k=100) == twin.search(query, k=100)


def test_an_interrupted_first_add_leaves_an_untrained_plaid_index_empty(
    tiny_encoder: ColBERTEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lateint_plugins.core import plaid
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig

    def build() -> LateInteractionStore:
        config = PLAIDConfig(nbits=4, n_centroids=8, keep_fp16=True)
        return LateInteractionStore(tiny_encoder, PLAIDIndex(config=config, search_config=SearchConfig(rescore=6)))

    store = build()
    monkeypatch.setattr(plaid, "_ADD_CHUNK_TOKENS", 4)
    original = plaid.ResidualCodec.compress
    calls: list[int] = []

    def fail_third(self: plaid.ResidualCodec, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)  # 1: training's held-out error, 2: the first chunk, 3: the second chunk
        if len(calls) == 3:
            raise _Interrupt("boom")
        return original(self, x)

    monkeypatch.setattr(plaid.ResidualCodec, "compress", fail_third)
    with pytest.raises(_Interrupt):
        store.add_texts(TEXTS, META, IDS)
    index = store.index
    assert isinstance(index, PLAIDIndex) and len(calls) == 3
    assert len(store) == 0 and not index.is_trained and index.dim is None and index.n_tokens == 0
    monkeypatch.undo()
    store.add_texts(TEXTS, META, IDS)
    twin = build()
    twin.add_texts(TEXTS, META, IDS)
    # Rescoring reads the fp16 scratch file: it must hold exactly the vectors of the successful add.
    for query in ("qubits", "cats", "market"):
        assert store.search(query, k=6) == twin.search(query, k=6)


def test_two_threads_adding_the_same_new_id_exactly_one_wins(
    tiny_encoder: ColBERTEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    store = LateInteractionStore(tiny_encoder)
    store.add_texts(TEXTS, META, IDS)
    encode = tiny_encoder.encode_documents
    both_encoding = threading.Barrier(2, timeout=30)

    def encode_together(texts, **kwargs):  # type: ignore[no-untyped-def]
        both_encoding.wait()  # both threads passed the early duplicate check
        return encode(texts, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode_documents", encode_together)
    outcomes: dict[str, BaseException | None] = {}

    def add(text: str) -> None:
        try:
            store.add_texts([text], ids=["same"])
            outcomes[text] = None
        except BaseException as exc:
            outcomes[text] = exc

    threads = [threading.Thread(target=add, args=(text,)) for text in ("first writer", "second writer")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [e for e in outcomes.values() if e is not None]
    assert len(errors) == 1 and isinstance(errors[0], DuplicateIdError), outcomes
    winner = next(text for text, e in outcomes.items() if e is None)
    assert store.get(["same"])[0].text == winner and len(store) == len(TEXTS) + 1


def test_index_add_with_replace_swaps_only_after_the_new_vectors_are_in() -> None:
    ix = ExactIndex(device="cpu")
    a, b = (
        torch.nn.functional.normalize(torch.randn(3, 4), dim=-1),
        torch.nn.functional.normalize(torch.randn(2, 4), dim=-1),
    )
    ix.add(["x", "y"], [a, b], [{"v": 1}, {"v": 2}])
    with pytest.raises(DuplicateIdError, match="replace=True"):
        ix.add(["x"], [b])
    ix.add(["x"], [b], [{"v": 3}], replace=True)
    assert ix.ids == ["y", "x"] and ix.metadata("x") == {"v": 3} and len(ix) == 2
    torch.testing.assert_close(ix.embeddings()[1].float(), b.half().float())
    with pytest.raises(InvalidInputError, match=r"embeddings\[0\]"):
        ix.add(["y"], [torch.full((2, 4), float("nan"))], replace=True)
    assert ix.ids == ["y", "x"] and ix.metadata("y") == {"v": 2}
