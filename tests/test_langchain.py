"""LangChain adapter: retriever, reranking compressor and vector store over the one MaxSim.

The framework's standard suites run in test_langchain_standard.py; these tests pin what the suites
do not: scores equal the store's (and core MaxSim), filters, upserts, the async path, reranking
inside ``ContextualCompressionRetriever``, and the install hint.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import InvalidInputError, MissingDependencyError
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore, SearchResult
from pydantic import PrivateAttr

from lateint_plugins.langchain import (
    LateInteractionReranker,
    LateInteractionRetriever,
    LateInteractionVectorStore,
)

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
QUERY = "a cat and a mouse"


@pytest.fixture
def store(tiny_encoder: ColBERTEncoder) -> LateInteractionStore:
    s = LateInteractionStore(tiny_encoder)
    s.add_texts(TEXTS, META, IDS)
    return s


def _expected(encoder: ColBERTEncoder, query: str, texts: list[str]) -> torch.Tensor:
    """Core MaxSim of ``query`` against ``texts``, with the store's fp16 storage rounding."""
    documents = [d.half().float() for d in encoder.encode_documents(texts)]
    return maxsim(encoder.encode_queries([query]), documents)[0]


# ---------------------------------------------------------------------------------------- import guard
def test_import_without_langchain_core_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n    import lateint_plugins.langchain\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith(MissingDependencyError.__name__), out.stdout + out.stderr
    assert "pip install 'lateint-plugins[langchain]'" in out.stdout


# ---------------------------------------------------------------------------------------- retriever
def test_retriever_returns_store_results_with_id_metadata_and_score(store: LateInteractionStore) -> None:
    retriever = LateInteractionRetriever(store=store, k=6)
    docs = retriever.invoke(QUERY)
    expected = store.search(QUERY, k=6)
    assert [d.id for d in docs] == [r.id for r in expected]
    assert [d.page_content for d in docs] == [r.text for r in expected]
    for doc, result in zip(docs, expected, strict=True):
        assert doc.metadata == {**result.metadata, "score": result.score}
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    truth = _expected(store.encoder, QUERY, TEXTS)
    torch.testing.assert_close(torch.tensor(scores), truth.sort(descending=True).values, rtol=1e-5, atol=1e-5)


def test_retriever_k_and_filter_from_fields_and_invoke(store: LateInteractionStore) -> None:
    retriever = LateInteractionRetriever(store=store, k=2, filter={"topic": "pets"})
    assert len(retriever.invoke(QUERY)) == 2
    assert {d.metadata["topic"] for d in retriever.invoke(QUERY, k=5)} == {"pets"}
    assert len(retriever.invoke(QUERY, k=5)) == 3  # only three pets documents
    physics = retriever.invoke(QUERY, k=5, filter={"topic": "physics"})
    assert sorted(d.id for d in physics) == ["t2", "t5"]
    via_kwargs = LateInteractionRetriever(store=store, search_kwargs={"k": 1, "filter": {"topic": "finance"}})
    assert [d.id for d in via_kwargs.invoke(QUERY)] == ["t3"]
    assert LateInteractionRetriever(store=store, score_key=None).invoke(QUERY, k=1)[0].metadata == {"topic": "pets"}


def test_retriever_rejects_bad_options(store: LateInteractionStore) -> None:
    with pytest.raises(ValueError, match="Unknown search option\\(s\\) \\['score_threshold'\\]"):  # pydantic wraps it
        LateInteractionRetriever(store=store, search_kwargs={"score_threshold": 0.5})
    retriever = LateInteractionRetriever(store=store)
    with pytest.raises(InvalidInputError, match="k must be a positive int"):
        retriever.invoke(QUERY, k=0)
    with pytest.raises(InvalidInputError, match="Unknown search option"):
        retriever.invoke(QUERY, fetch_k=10)
    with pytest.raises(ValueError, match="store"):
        LateInteractionRetriever(store=object())  # type: ignore[arg-type]


class _ThreadRecordingStore(LateInteractionStore):
    """A real store that also records which thread ran each search."""

    def __init__(self, encoder: ColBERTEncoder) -> None:
        super().__init__(encoder)
        self.threads: list[int] = []

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> list[SearchResult]:
        self.threads.append(threading.get_ident())
        return super().search(query, k, filter)


def test_ainvoke_runs_off_the_event_loop_and_matches_invoke(tiny_encoder: ColBERTEncoder) -> None:
    store = _ThreadRecordingStore(tiny_encoder)
    store.add_texts(TEXTS, META, IDS)
    retriever = LateInteractionRetriever(store=store, k=3)
    queries = [QUERY, "qubits", "stock market", "loyal dogs"]

    async def run() -> tuple[list[list[Document]], int]:
        results = await asyncio.gather(*(retriever.ainvoke(q, k=3) for q in queries))
        return list(results), threading.get_ident()

    results, loop_thread = asyncio.run(run())
    assert loop_thread not in store.threads[-len(queries) :]
    assert results == [retriever.invoke(q) for q in queries]


def test_from_texts_from_documents_add_and_delete(tiny_pylate_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    retriever = LateInteractionRetriever.from_texts(TEXTS, tiny_pylate_path, META, IDS, device="cpu", k=3)
    assert len(retriever.store) == len(TEXTS) and retriever.k == 3
    assert retriever.invoke(QUERY) == LateInteractionRetriever(store=_store_of(tiny_encoder), k=3).invoke(QUERY)

    documents = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(TEXTS, META, IDS, strict=True)]
    from_docs = LateInteractionRetriever.from_documents(documents, tiny_encoder, k=6)
    assert sorted(d.id for d in from_docs.invoke(QUERY)) == sorted(IDS)

    ids = from_docs.add_documents(
        [Document(page_content="A kitten on a rug.", metadata={"topic": "pets"}), documents[0]]
    )
    assert len(ids) == 2 and len(ids[0]) == 32 and ids[1] == "t0"  # new UUID, then an upsert of t0
    assert len(from_docs.store) == len(TEXTS) + 1
    from_docs.add_documents([Document(page_content="Replaced text.", metadata={"topic": "new"})], ids=["t1"])
    assert from_docs.store.get(["t1"])[0] == SearchResult("t1", 0.0, "Replaced text.", {"topic": "new"})
    from_docs.delete(["t1", "not-there", ids[0]])
    assert len(from_docs.store) == len(TEXTS) - 1 and "t1" not in from_docs.store
    asyncio.run(from_docs.adelete(["t2"]))
    added = asyncio.run(from_docs.aadd_documents([Document(page_content="Async text.", id="a1")]))
    assert added == ["a1"] and "t2" not in from_docs.store and "a1" in from_docs.store


def _store_of(encoder: ColBERTEncoder) -> LateInteractionStore:
    s = LateInteractionStore(encoder)
    s.add_texts(TEXTS, META, IDS)
    return s


def test_retriever_over_a_plaid_store(tiny_encoder: ColBERTEncoder) -> None:
    pytest.importorskip("faiss", reason="the PLAID index needs faiss-cpu (extra [faiss])")
    texts = [f"{t} Variation number {n}." for n in range(8) for t in TEXTS]
    retriever = LateInteractionRetriever.from_texts(texts, tiny_encoder, index="plaid", k=5)
    exact = LateInteractionRetriever.from_texts(texts, tiny_encoder, ids=retriever.store.index.ids, k=5)
    docs = retriever.invoke(QUERY)
    assert len(docs) == 5 and all(isinstance(d.metadata["score"], float) for d in docs)
    # PLAID re-scores its candidates with the exact MaxSim, so shared hits carry the exact score.
    exact_scores = {d.id: d.metadata["score"] for d in exact.invoke(QUERY, k=len(texts))}
    for doc in docs:
        assert doc.metadata["score"] == pytest.approx(exact_scores[doc.id], rel=1e-2, abs=5e-2)


# ---------------------------------------------------------------------------------------- reranker
class BM25Retriever(BaseRetriever):
    """A small BM25 first stage over ``bm25s`` (a real retriever, not a mock)."""

    documents: list[Document]
    k: int = 4
    _bm25: Any = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        import bm25s

        self._bm25 = bm25s.BM25()
        tokens = bm25s.tokenize([d.page_content for d in self.documents], stopwords="en", show_progress=False)
        self._bm25.index(tokens, show_progress=False)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        n = min(k or self.k, len(self.documents))
        positions, _ = self._bm25.retrieve(tokens, k=n, show_progress=False)
        return [self.documents[int(p)] for p in positions[0]]


@pytest.fixture
def bm25() -> BM25Retriever:
    pytest.importorskip("bm25s")
    documents = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(TEXTS, META, IDS, strict=True)]
    return BM25Retriever(documents=documents, k=len(TEXTS))


def test_contextual_compression_reorders_by_core_maxsim(
    bm25: BM25Retriever, tiny_encoder: ColBERTEncoder, store: LateInteractionStore
) -> None:
    retrievers = pytest.importorskip("langchain_classic.retrievers", reason="pip install langchain-classic")
    reranker = LateInteractionReranker(encoder=tiny_encoder, top_n=4)
    pipeline = retrievers.ContextualCompressionRetriever(base_compressor=reranker, base_retriever=bm25)
    query = "cat on a mat chasing a mouse"
    candidates = bm25.invoke(query)
    docs = pipeline.invoke(query)

    # Core MaxSim over the same candidates, fresh fp32 vectors (no storage rounding).
    texts = [d.page_content for d in candidates]
    truth = maxsim(tiny_encoder.encode_queries([query]), tiny_encoder.encode_documents(texts))[0]
    order = torch.argsort(truth, descending=True, stable=True)[:4]
    assert [d.id for d in docs] == [candidates[int(i)].id for i in order]
    assert [d.id for d in docs] != [d.id for d in candidates[:4]]  # BM25's order really changed
    torch.testing.assert_close(torch.tensor([d.metadata["score"] for d in docs]), truth[order], rtol=1e-5, atol=1e-5)
    for doc in docs:  # original metadata kept, score added under the retriever's key; inputs untouched
        assert doc.metadata == {**META[IDS.index(doc.id)], "score": doc.metadata["score"]}
    assert all("score" not in d.metadata for d in candidates)
    # The store ranks the same documents the same way (its fp16 vectors shift scores slightly).
    by_store = {r.id: r.score for r in store.search(query, k=len(TEXTS))}
    for doc in docs:
        assert doc.metadata["score"] == pytest.approx(by_store[doc.id], rel=1e-3, abs=2e-2)
    assert asyncio.run(pipeline.ainvoke(query)) == docs


def test_reranker_options_cache_and_errors(tiny_encoder: ColBERTEncoder, tiny_pylate_path: Path) -> None:
    documents = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(TEXTS, META, IDS, strict=True)]
    plain = LateInteractionReranker(encoder=tiny_encoder, top_n=None).compress_documents(documents, QUERY)
    assert sorted(d.id for d in plain) == sorted(IDS)

    cache: dict[str, torch.Tensor] = {}
    cached = LateInteractionReranker(encoder=tiny_encoder, top_n=None, document_cache=cache)
    assert cached.compress_documents(documents, QUERY) == plain
    assert set(cache) == set(TEXTS)
    first = {t: v for t, v in cache.items()}
    assert cached.compress_documents(documents[:3], "qubits") == LateInteractionReranker(
        encoder=tiny_encoder, top_n=None
    ).compress_documents(documents[:3], "qubits")
    assert all(cache[t] is first[t] for t in TEXTS)  # hits were not re-encoded

    loaded = LateInteractionReranker(model=tiny_pylate_path, device="cpu", top_n=2)
    assert loaded.model == str(tiny_pylate_path) and loaded.top_n == 2
    assert [d.id for d in loaded.compress_documents(documents, QUERY)] == [d.id for d in plain[:2]]
    assert LateInteractionReranker(encoder=tiny_encoder).compress_documents([], QUERY) == []
    assert (
        asyncio.run(LateInteractionReranker(encoder=tiny_encoder, top_n=None).acompress_documents(documents, QUERY))
        == plain
    )
    with pytest.raises(InvalidInputError, match=r"model= .* or encoder="):
        LateInteractionReranker(top_n=3)
    with pytest.raises(ValueError, match="top_n"):
        LateInteractionReranker(encoder=tiny_encoder, top_n=0)


# ---------------------------------------------------------------------------------------- vector store
def test_vector_store_scores_filters_and_retriever(store: LateInteractionStore) -> None:
    vs = LateInteractionVectorStore(store)
    hits = vs.similarity_search_with_score(QUERY, k=3)
    expected = store.search(QUERY, k=3)
    assert [(d.id, d.page_content, d.metadata, s) for d, s in hits] == [
        (r.id, r.text, r.metadata, r.score) for r in expected
    ]
    assert [d.id for d in vs.similarity_search(QUERY, k=6, filter={"topic": "physics"})] == [
        r.id for r in store.search(QUERY, k=6, filter={"topic": "physics"})
    ]
    relevance = vs.similarity_search_with_relevance_scores(QUERY, k=6)
    assert all(0.0 <= s <= 1.0 for _, s in relevance)
    assert [s for _, s in relevance] == sorted((s for _, s in relevance), reverse=True)
    threshold = relevance[2][1]
    kept = vs.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": threshold, "k": 6}
    )
    assert [d.id for d in kept.invoke(QUERY)] == [d.id for d, _ in relevance[:3]]
    retriever = vs.as_retriever(search_kwargs={"k": 2, "filter": {"topic": "pets"}})
    assert [d.id for d in retriever.invoke(QUERY)] == [r.id for r in store.search(QUERY, k=2, filter={"topic": "pets"})]
    assert asyncio.run(vs.asimilarity_search_with_score(QUERY, k=3)) == hits
    assert vs.get_by_ids(["t5", "missing", "t0"]) == [
        Document(page_content=TEXTS[5], metadata=META[5], id="t5"),
        Document(page_content=TEXTS[0], metadata=META[0], id="t0"),
    ]


def test_vector_store_from_texts_and_errors(tiny_encoder: ColBERTEncoder, tiny_pylate_path: Path) -> None:
    vs = LateInteractionVectorStore.from_texts(TEXTS, tiny_pylate_path, META, ids=IDS, device="cpu")
    assert [d.id for d in vs.similarity_search(QUERY, k=6)] == [r.id for r in _store_of(tiny_encoder).search(QUERY, 6)]
    from_docs = LateInteractionVectorStore.from_documents(
        [Document(page_content=t, id=i) for t, i in zip(TEXTS, IDS, strict=True)], tiny_encoder
    )
    assert sorted(d.id for d in from_docs.get_by_ids(IDS)) == sorted(IDS)
    with pytest.raises(InvalidInputError, match="per-token vectors"):
        LateInteractionVectorStore.from_texts(TEXTS, DeterministicFakeEmbedding(size=6))
    with pytest.raises(InvalidInputError, match=r"Unknown search option\(s\) \['fetch_k'\]"):
        vs.similarity_search(QUERY, k=2, fetch_k=3)
    with pytest.raises(InvalidInputError, match="store must implement DocumentStore"):
        LateInteractionVectorStore(object())
    assert vs.delete(["t0", "nope"]) is True and len(vs.store) == len(TEXTS) - 1
    assert vs.delete() is True and len(vs.store) == 0  # ids=None: everything (LangChain's contract)
    assert vs.similarity_search(QUERY) == [] and vs.delete() is True


# ---------------------------------------------------------------------------------------- MMR
STATINS = [
    "Statins lower LDL cholesterol by inhibiting HMG-CoA reductase in the liver.",
    "Statins lower LDL cholesterol by inhibiting the enzyme HMG-CoA reductase in the liver.",
    "By inhibiting HMG-CoA reductase in the liver, statins lower LDL cholesterol.",
    "Statins reduce the risk of heart attack and stroke in patients with cardiovascular disease.",
    "Muscle pain is the most common side effect reported by patients taking statins.",
    "Regular aerobic exercise raises HDL cholesterol and lowers blood pressure.",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
]
STATIN_IDS = ["dup0", "dup1", "dup2", "risk", "side", "exercise", "eiffel"]
STATIN_QUERY = "How do statins lower cholesterol?"


@pytest.fixture(scope="module")
def answerai_encoder(answerai_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(answerai_path, device="cpu")


@pytest.fixture(scope="module")
def statins(answerai_encoder: ColBERTEncoder) -> LateInteractionVectorStore:
    vs = LateInteractionVectorStore(LateInteractionStore(answerai_encoder))
    vs.add_texts(STATINS, [{"duplicate": i.startswith("dup")} for i in STATIN_IDS], ids=STATIN_IDS)
    return vs


def test_mmr_skips_near_duplicates_that_similarity_search_returns(statins: LateInteractionVectorStore) -> None:
    duplicates = {"dup0", "dup1", "dup2"}
    assert {d.id for d in statins.similarity_search(STATIN_QUERY, k=3)} == duplicates
    mmr = statins.max_marginal_relevance_search(STATIN_QUERY, k=3, fetch_k=7)
    assert mmr[0].id == statins.similarity_search(STATIN_QUERY, k=1)[0].id  # the most relevant comes first
    assert len({d.id for d in mmr} & duplicates) == 1 and "eiffel" not in {d.id for d in mmr}
    # lambda_mult=1 is relevance alone: the similarity ranking.
    only_relevance = statins.max_marginal_relevance_search(STATIN_QUERY, k=3, fetch_k=7, lambda_mult=1.0)
    assert [d.id for d in only_relevance] == [d.id for d in statins.similarity_search(STATIN_QUERY, k=3)]
    via_retriever = statins.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 7}).invoke(STATIN_QUERY)
    assert [d.id for d in via_retriever] == [d.id for d in mmr]
    filtered = statins.max_marginal_relevance_search(STATIN_QUERY, k=3, filter={"duplicate": False})
    assert len(filtered) == 3 and not {d.id for d in filtered} & duplicates
    with pytest.raises(InvalidInputError, match="lambda_mult"):
        statins.max_marginal_relevance_search(STATIN_QUERY, lambda_mult=1.5)


def test_retriever_search_type_mmr(statins: LateInteractionVectorStore) -> None:
    retriever = LateInteractionRetriever(store=statins.store, k=3, search_type="mmr", search_kwargs={"fetch_k": 7})
    docs = retriever.invoke(STATIN_QUERY)
    assert [d.id for d in docs] == [d.id for d in statins.max_marginal_relevance_search(STATIN_QUERY, 3, 7)]
    assert all(isinstance(d.metadata["score"], float) for d in docs)
    by_relevance = retriever.invoke(STATIN_QUERY, lambda_mult=1.0)
    assert [d.id for d in by_relevance] == [d.id for d in statins.similarity_search(STATIN_QUERY, k=3)]
    with pytest.raises(InvalidInputError, match="fetch_k"):
        retriever.invoke(STATIN_QUERY, fetch_k=0)
    with pytest.raises(InvalidInputError, match="search_type"):
        LateInteractionRetriever(store=statins.store, search_type="similarity_score_threshold")


# ---------------------------------------------------------------------------------------- relevance scores
def test_relevance_scores_separate_relevant_from_unrelated(statins: LateInteractionVectorStore) -> None:
    relevance = dict((d.id, s) for d, s in statins.similarity_search_with_relevance_scores(STATIN_QUERY, k=7))
    # Measured on SciFact (README): relevant documents median 0.53, unrelated 0.11.
    assert relevance["dup0"] > 0.5 and relevance["eiffel"] < 0.1
    assert relevance["dup0"] - relevance["eiffel"] > 0.5
    kept = statins.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.5, "k": 7}
    )
    assert {d.id for d in kept.invoke(STATIN_QUERY)} == {i for i, s in relevance.items() if s >= 0.5} >= {"dup0"}
    assert "eiffel" not in {d.id for d in kept.invoke(STATIN_QUERY)}


def test_relevance_score_formula(tiny_encoder: ColBERTEncoder, store: LateInteractionStore) -> None:
    from lateint_plugins.langchain import RelevanceScale, relevance_score

    scale = RelevanceScale(tiny_encoder)
    floor, ceiling = scale.references(QUERY)
    empty = tiny_encoder.encode_documents("")
    assert floor == pytest.approx(float(maxsim(tiny_encoder.encode_queries([QUERY]), [empty])[0, 0]))
    assert ceiling == tiny_encoder.config.query_length
    for result in store.search(QUERY, k=6):
        expected = min(1.0, max(0.0, (result.score - floor) / (ceiling - floor)))
        assert scale.relevance(QUERY, result.score) == pytest.approx(expected)
    assert relevance_score(ceiling, ceiling, floor) == 1.0 and relevance_score(floor, ceiling, floor) == 0.0
    with pytest.raises(InvalidInputError, match="floor"):
        relevance_score(1.0, 4, floor=4.0)


# ---------------------------------------------------------------------------------------- persistence
def test_save_and_load_vector_store_and_retriever(
    store: LateInteractionStore, tmp_path: Path, tiny_encoder: ColBERTEncoder, minilm_path: Path
) -> None:
    from lateint_plugins.core.errors import ModelMismatchError

    vs = LateInteractionVectorStore(store)
    vs.save(tmp_path / "vs")
    loaded = LateInteractionVectorStore.load(tmp_path / "vs", tiny_encoder)
    assert loaded.similarity_search_with_score(QUERY, k=6) == vs.similarity_search_with_score(QUERY, k=6)
    retriever = LateInteractionRetriever(store=store, k=2)
    retriever.save(tmp_path / "r")
    again = LateInteractionRetriever.load(tmp_path / "r", tiny_encoder, k=2, filter={"topic": "pets"})
    assert again.invoke(QUERY) == retriever.invoke(QUERY, filter={"topic": "pets"})
    other = ColBERTEncoder.from_pretrained(minilm_path, device="cpu")
    with pytest.raises(ModelMismatchError):
        LateInteractionVectorStore.load(tmp_path / "vs", other)


def test_from_existing_collection_reopens_a_qdrant_collection(tiny_encoder: ColBERTEncoder) -> None:
    qdrant_client = pytest.importorskip("qdrant_client", reason="pip install 'lateint-plugins[qdrant]'")
    qdrant = pytest.importorskip("lateint_plugins.qdrant")
    client = qdrant_client.QdrantClient(":memory:")
    first = LateInteractionVectorStore(qdrant.QdrantLateInteractionStore(client, "docs", tiny_encoder, device="cpu"))
    first.add_texts(TEXTS, META, ids=IDS)
    reopened = LateInteractionVectorStore.from_existing_collection("docs", tiny_encoder, client=client, device="cpu")
    assert [d.id for d in reopened.similarity_search(QUERY, k=3)] == [d.id for d in first.similarity_search(QUERY, k=3)]
    with pytest.raises(qdrant.CollectionNotFoundError):
        LateInteractionVectorStore.from_existing_collection("missing", tiny_encoder, client=client)
    with pytest.raises(InvalidInputError, match="client= or exactly one of"):
        LateInteractionVectorStore.from_existing_collection("docs", tiny_encoder)
    with pytest.raises(InvalidInputError, match="save needs a LateInteractionStore"):
        reopened.save("anywhere")
    assert reopened.delete() is True and len(reopened.store) == 0


# ---------------------------------------------------------------------------------------- store options
class _OptionStore(LateInteractionStore):
    """A store that declares one store-specific search option, as the contract's ``search_options`` says."""

    search_options: Mapping[str, Any] = {"depth": 10}

    def __init__(self, encoder: ColBERTEncoder) -> None:
        super().__init__(encoder)
        self.seen: list[int] = []

    def search(
        self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None, *, depth: int = 10
    ) -> list[SearchResult]:
        self.seen.append(depth)
        return super().search(query, k, filter)


def test_store_search_options_reach_the_store(tiny_encoder: ColBERTEncoder) -> None:
    store = _OptionStore(tiny_encoder)
    store.add_texts(TEXTS, META, IDS)
    LateInteractionRetriever(store=store, search_kwargs={"depth": 3}).invoke(QUERY)
    LateInteractionRetriever(store=store).invoke(QUERY, depth=4)
    vs = LateInteractionVectorStore(store)
    vs.as_retriever(search_kwargs={"depth": 5}).invoke(QUERY)
    vs.max_marginal_relevance_search(QUERY, depth=6)
    assert store.seen == [3, 4, 5, 6]
    with pytest.raises(InvalidInputError, match=r"Unknown search option\(s\) \['mode'\].*depth"):
        LateInteractionRetriever(store=store, search_kwargs={"mode": "native"})
