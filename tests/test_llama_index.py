"""LlamaIndex adapter: retriever and reranker driven through LlamaIndex's public entry points.

Every score is checked against the core's MaxSim on the same texts with the same encoder.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from _forkrun import run_script

pytest.importorskip("llama_index.core")

from lateint_plugins.core.errors import DuplicateIdError, InvalidInputError
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore, SearchResult
from llama_index.core import Document
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms.mock import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    MetadataFilter,
    MetadataFilters,
)

from lateint_plugins.llama_index import LateInteractionRerank, LateInteractionRetriever

TEXTS = {
    "statins": "Statins lower LDL cholesterol by inhibiting HMG-CoA reductase in the liver.",
    "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "exercise": "Regular aerobic exercise reduces the risk of cardiovascular disease.",
    "insulin": "Insulin is a hormone produced by the pancreas that regulates blood glucose.",
    "rome": "The Colosseum in Rome could hold tens of thousands of spectators.",
}
TOPICS = {"statins": "medicine", "eiffel": "history", "exercise": "medicine", "insulin": "medicine", "rome": "history"}
QUERY = "how do statins lower cholesterol?"


def _nodes() -> list[TextNode]:
    return [
        TextNode(id_=key, text=text, metadata={"topic": TOPICS[key], "n": i})
        for i, (key, text) in enumerate(TEXTS.items())
    ]


# What the retriever indexes and the reranker scores by default: LlamaIndex's MetadataMode.EMBED content
# (metadata lines, then the text).
EMBED_TEXTS = {n.node_id: n.get_content(metadata_mode=MetadataMode.EMBED) for n in _nodes()}


def _reference(
    encoder: Any, query: str, ids: Sequence[str], *, fp16: bool, texts: Mapping[str, str] = TEXTS
) -> list[tuple[str, float]]:
    """Core MaxSim of ``query`` against ``texts[ids]``, best first (``fp16``: as the exact index stores them)."""
    docs = encoder.encode_documents([texts[i] for i in ids])
    if fp16:
        docs = [d.half() for d in docs]
    scores = maxsim(encoder.encode_queries([query]), docs)[0]
    order = torch.argsort(scores, descending=True, stable=True)
    return [(ids[int(j)], float(scores[j])) for j in order]


def _pairs(nodes: Sequence[NodeWithScore]) -> list[tuple[str, float]]:
    return [(n.node.node_id, float(n.score)) for n in nodes]  # type: ignore[arg-type]


def _assert_same_ranking(got: Sequence[tuple[str, float]], want: Sequence[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)


@pytest.fixture
def retriever(tiny_encoder: Any) -> LateInteractionRetriever:
    return LateInteractionRetriever.from_nodes(_nodes(), LateInteractionStore(tiny_encoder), similarity_top_k=3)


class _ThreadRecordingStore:
    """A DocumentStore that is not a LateInteractionStore: delegates and records the calling thread."""

    def __init__(self, inner: LateInteractionStore) -> None:
        self.inner = inner
        self.encoder = inner.encoder
        self.search_threads: list[int] = []

    def __len__(self) -> int:
        return len(self.inner)

    # The rest of the DocumentStore contract, delegated.
    search_options: Mapping[str, Any] = {}

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.inner

    def ids(self) -> list[str]:
        return self.inner.ids()

    def add_embeddings(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.inner.add_embeddings(*args, **kwargs)

    def add_texts(self, texts: Sequence[str], metadatas: Any = None, ids: Any = None, **kwargs: Any) -> list[str]:
        return self.inner.add_texts(texts, metadatas, ids, **kwargs)

    def search(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> list[SearchResult]:
        self.search_threads.append(threading.get_ident())
        return self.inner.search(query, k=k, filter=filter)

    def search_batch(self, queries: Sequence[str], k: int = 10, filter: Any = None) -> list[list[SearchResult]]:
        return self.inner.search_batch(queries, k=k, filter=filter)

    def get(self, ids: Sequence[str]) -> list[SearchResult]:
        return self.inner.get(ids)

    def delete(self, ids: Sequence[str]) -> None:
        self.inner.delete(ids)


class _Recorder(BaseEventHandler):
    events: list[Any] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def rerank_events() -> Iterator[list[Any]]:
    dispatcher = get_dispatcher("lateint_plugins.llama_index")
    handler = _Recorder(events=[])
    dispatcher.add_event_handler(handler)
    yield handler.events
    dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not handler]


# ---------------------------------------------------------------------- retriever
def test_retrieve_matches_core_maxsim(retriever: LateInteractionRetriever, tiny_encoder: Any) -> None:
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(QUERY)
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    _assert_same_ranking(_pairs(nodes), _reference(tiny_encoder, QUERY, list(TEXTS), fp16=True, texts=EMBED_TEXTS)[:3])
    for n in nodes:
        assert n.node.get_content() == TEXTS[n.node.node_id]
        assert n.node.metadata["topic"] == TOPICS[n.node.node_id]
    retriever.similarity_top_k = 5
    assert len(retriever.retrieve(QueryBundle(QUERY))) == 5


def test_aretrieve_equals_retrieve_and_runs_off_the_event_loop(tiny_encoder: Any) -> None:
    store = _ThreadRecordingStore(LateInteractionStore(tiny_encoder))
    retriever = LateInteractionRetriever.from_nodes(_nodes(), store, similarity_top_k=4)
    sync = _pairs(retriever.retrieve(QUERY))

    async def run() -> tuple[list[NodeWithScore], int]:
        return await retriever.aretrieve(QUERY), threading.get_ident()

    nodes, loop_thread = asyncio.run(run())
    assert _pairs(nodes) == sync
    assert store.search_threads[-1] != loop_thread  # the search ran in a worker thread


def test_exact_match_filters(retriever: LateInteractionRetriever, tiny_encoder: Any) -> None:
    medicine = [k for k, t in TOPICS.items() if t == "medicine"]
    retriever.similarity_top_k = 5
    retriever.filters = MetadataFilters(filters=[MetadataFilter(key="topic", value="medicine")])
    _assert_same_ranking(
        _pairs(retriever.retrieve(QUERY)), _reference(tiny_encoder, QUERY, medicine, fp16=True, texts=EMBED_TEXTS)
    )

    nested = MetadataFilters(
        filters=[
            MetadataFilter(key="topic", value="medicine"),
            MetadataFilters(filters=[MetadataFilter(key="n", value=2)], condition=FilterCondition.OR),
        ]
    )
    retriever.filters = nested
    assert [n.node.node_id for n in retriever.retrieve(QUERY)] == ["exercise"]
    retriever.filters = {"topic": "history"}
    assert {n.node.node_id for n in retriever.retrieve(QUERY)} == {"eiffel", "rome"}
    contradictory = MetadataFilters(
        filters=[MetadataFilter(key="topic", value="medicine"), MetadataFilter(key="topic", value="history")]
    )
    retriever.filters = contradictory
    assert retriever.retrieve(QUERY) == []


@pytest.mark.parametrize(
    "filters, match",
    [
        (
            MetadataFilters(filters=[MetadataFilters(filters=[])], condition=FilterCondition.NOT),
            "'not' over empty filters",
        ),
        ({1: "x"}, "str metadata keys"),
        ("topic=medicine", "MetadataFilters or a"),
    ],
)
def test_unsupported_filters_raise_a_clear_error(tiny_encoder: Any, filters: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        LateInteractionRetriever(LateInteractionStore(tiny_encoder), filters=filters)


def test_insert_and_delete(retriever: LateInteractionRetriever, tiny_encoder: Any) -> None:
    retriever.similarity_top_k = 10
    new = TextNode(id_="metformin", text="Metformin lowers blood glucose in type 2 diabetes.", metadata={"k": 1})
    assert retriever.insert([new]) == ["metformin"]
    assert "metformin" in {n.node.node_id for n in retriever.retrieve("diabetes drug")}
    with pytest.raises(DuplicateIdError):
        retriever.insert([new])
    changed = TextNode(id_="metformin", text="Aspirin inhibits platelet aggregation.", metadata={"k": 2})
    retriever.insert([changed], replace=True)
    hit = next(n for n in retriever.retrieve("aspirin") if n.node.node_id == "metformin")
    assert (hit.node.get_content(), hit.node.metadata) == (changed.text, {"k": 2})

    retriever.delete(["metformin", "eiffel"])
    assert {n.node.node_id for n in retriever.retrieve(QUERY)} == set(TEXTS) - {"eiffel"}
    retriever.delete(["eiffel"])  # unknown ids are ignored (the store contract)
    with pytest.raises(InvalidInputError, match="list"):
        retriever.delete("rome")  # type: ignore[arg-type]


def test_from_documents_splits_to_the_encoder_length(tiny_encoder: Any) -> None:
    long_text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    documents = [Document(text=long_text, metadata={"source": "long"}), Document(text=TEXTS["statins"])]
    retriever = LateInteractionRetriever.from_documents(
        documents, LateInteractionStore(tiny_encoder), similarity_top_k=100
    )
    store = retriever.store
    assert len(store) > 2  # the long document was split
    room = tiny_encoder.config.document_length - 3
    for result in store.get(store.index.ids):  # type: ignore[attr-defined]
        assert len(tiny_encoder.tokenizer.tokenize(result.text)) <= room
    nodes = retriever.retrieve("topic 3")
    assert {n.node.metadata.get("source") for n in nodes} == {"long", None}


def test_nodes_come_back_whole_in_the_chosen_metadata_mode(tiny_encoder: Any, tmp_path: Path) -> None:
    source = Document(text="unused", id_="paper-1")
    node = TextNode(
        id_="chunk-1",
        text=TEXTS["statins"],
        metadata={"topic": "medicine", "secret": "s", "nested": {"a": [1, 2]}},
        excluded_embed_metadata_keys=["secret"],
        excluded_llm_metadata_keys=["nested"],
    )
    node.relationships[NodeRelationship.SOURCE] = source.as_related_node_info()
    store = LateInteractionStore(tiny_encoder)
    bare = LateInteractionRetriever.from_nodes([node], store, metadata_mode=MetadataMode.NONE, similarity_top_k=1)
    hit = bare.retrieve(QUERY)[0]
    want = node.model_dump(mode="json")
    assert hit.node.model_dump(mode="json") == want
    assert hit.node.ref_doc_id == "paper-1"
    assert hit.score == pytest.approx(_reference(tiny_encoder, QUERY, ["statins"], fp16=True)[0][1], abs=1e-5)
    assert store.get(["chunk-1"])[0].text == TEXTS["statins"]  # NONE: the bare text is what was encoded
    bare.persist(tmp_path / "bare")
    loaded = LateInteractionRetriever.from_persist_dir(tmp_path / "bare")
    assert loaded.metadata_mode == MetadataMode.NONE
    assert loaded.retrieve(QUERY)[0].node.model_dump(mode="json") == want
    with pytest.raises(InvalidInputError, match="metadata_mode"):
        LateInteractionRetriever(store, metadata_mode="text")  # type: ignore[arg-type]


def test_persist_round_trip_is_identical(retriever: LateInteractionRetriever, tmp_path: Path) -> None:
    retriever.filters = MetadataFilters(filters=[MetadataFilter(key="topic", value="medicine")])
    before = _pairs(retriever.retrieve(QUERY))
    retriever.persist(tmp_path / "r")
    loaded = LateInteractionRetriever.from_persist_dir(tmp_path / "r")
    assert loaded.similarity_top_k == retriever.similarity_top_k
    assert loaded.filters == retriever.filters
    assert loaded.metadata_mode == MetadataMode.EMBED
    assert _pairs(loaded.retrieve(QUERY)) == before
    # Writes after a reload persist too (and replace the folder atomically).
    loaded.delete(["statins"])
    loaded.persist(tmp_path / "r")
    again = LateInteractionRetriever.from_persist_dir(tmp_path / "r", similarity_top_k=1)
    assert [n.node.node_id for n in again.retrieve(QUERY)] == [i for i, _ in before if i != "statins"][:1]


def test_persisted_retriever_loads_in_another_process(retriever: LateInteractionRetriever, tmp_path: Path) -> None:
    retriever.similarity_top_k = 5
    retriever.persist(tmp_path / "r")
    code = (
        "import json, sys\n"
        "from lateint_plugins.llama_index import LateInteractionRetriever\n"
        "r = LateInteractionRetriever.from_persist_dir(sys.argv[1])\n"
        "print(json.dumps([[n.node.node_id, n.score, n.node.metadata] for n in r.retrieve(sys.argv[2])]))\n"
    )
    script = tmp_path / "load.py"
    script.write_text(code, encoding="utf-8")
    proc = run_script(script, [str(tmp_path / "r"), QUERY], cwd=tmp_path, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    theirs = json.loads(out.strip().splitlines()[-1])
    ours = retriever.retrieve(QUERY)
    assert [row[0] for row in theirs] == [n.node.node_id for n in ours]
    assert [row[1] for row in theirs] == pytest.approx([n.score for n in ours], abs=1e-6)
    assert [row[2] for row in theirs] == [n.node.metadata for n in ours]


def test_plaid_store_retrieves_and_persists(tiny_encoder: Any, tmp_path: Path) -> None:
    pytest.importorskip("faiss", reason="the PLAID index needs faiss-cpu (extra [faiss])")
    from lateint_plugins.core.index import create_index

    nodes = [
        TextNode(id_=f"{key}-{n}", text=f"{text} Variation number {n}.", metadata={"topic": TOPICS[key]})
        for n in range(8)
        for key, text in TEXTS.items()
    ]
    plaid = LateInteractionStore(tiny_encoder, create_index("plaid", device="cpu"))
    retriever = LateInteractionRetriever.from_nodes(nodes, plaid, similarity_top_k=5)
    exact = LateInteractionRetriever.from_nodes(nodes, LateInteractionStore(tiny_encoder), similarity_top_k=len(nodes))
    got = retriever.retrieve(QUERY)
    assert len(got) == 5
    # PLAID re-scores its candidates with the exact MaxSim, so its hits carry (fp16-close) exact scores.
    exact_scores = dict(_pairs(exact.retrieve(QUERY)))
    for node_id, score in _pairs(got):
        assert score == pytest.approx(exact_scores[node_id], rel=1e-2, abs=5e-2)
    retriever.persist(tmp_path / "plaid")
    loaded = LateInteractionRetriever.from_persist_dir(tmp_path / "plaid", device="cpu")
    assert type(loaded.store.index).__name__ == "PLAIDIndex"  # type: ignore[attr-defined]
    assert _pairs(loaded.retrieve(QUERY)) == _pairs(got)


def test_persist_needs_a_saveable_store(tiny_encoder: Any, tmp_path: Path) -> None:
    retriever = LateInteractionRetriever(_ThreadRecordingStore(LateInteractionStore(tiny_encoder)))
    with pytest.raises(InvalidInputError, match="save"):
        retriever.persist(tmp_path / "r")
    with pytest.raises(InvalidInputError, match="DocumentStore"):
        LateInteractionRetriever(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="similarity_top_k"):
        LateInteractionRetriever(LateInteractionStore(tiny_encoder), similarity_top_k=0)


# ---------------------------------------------------------------------- reranker
def _candidates() -> list[NodeWithScore]:
    return [NodeWithScore(node=n, score=float(10 - i)) for i, n in enumerate(_nodes())]


def test_rerank_matches_core_maxsim(tiny_encoder: Any, rerank_events: list[Any]) -> None:
    reranker = LateInteractionRerank(top_n=3, encoder=tiny_encoder, batch_size=2)
    assert isinstance(reranker, BaseNodePostprocessor)
    assert LateInteractionRerank.class_name() == "LateInteractionRerank"
    candidates = _candidates()
    out = reranker.postprocess_nodes(candidates, query_str=QUERY)
    _assert_same_ranking(_pairs(out), _reference(tiny_encoder, QUERY, list(TEXTS), fp16=False, texts=EMBED_TEXTS)[:3])
    assert [n.score for n in candidates] == [10.0, 9.0, 8.0, 7.0, 6.0]  # inputs untouched
    assert "retrieval_score" not in out[0].node.metadata

    starts = [e for e in rerank_events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in rerank_events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 1
    assert (starts[0].top_n, starts[0].model_name, len(starts[0].nodes)) == (3, reranker.model, 5)
    assert _pairs(ends[0].nodes) == _pairs(out)


def test_rerank_keeps_retrieval_score_and_reports_to_callbacks(tiny_encoder: Any) -> None:
    debug = LlamaDebugHandler()
    reranker = LateInteractionRerank(
        top_n=5, encoder=tiny_encoder, keep_retrieval_score=True, callback_manager=CallbackManager([debug])
    )
    candidates = _candidates()
    out = reranker.postprocess_nodes(candidates, QueryBundle(QUERY))
    assert {n.node.node_id: n.node.metadata["retrieval_score"] for n in out} == {
        n.node.node_id: n.score for n in candidates
    }
    assert all("retrieval_score" not in n.node.metadata for n in candidates)
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    assert _pairs(pairs[0][1].payload["nodes"]) == _pairs(out)
    # MetadataMode.NONE scores the bare text.
    plain = LateInteractionRerank(top_n=5, encoder=tiny_encoder, metadata_mode=MetadataMode.NONE)
    _assert_same_ranking(
        _pairs(plain.postprocess_nodes(candidates, query_str=QUERY)),
        _reference(tiny_encoder, QUERY, list(TEXTS), fp16=False),
    )


def test_rerank_edge_cases(tiny_encoder: Any, rerank_events: list[Any]) -> None:
    reranker = LateInteractionRerank(top_n=2, encoder=tiny_encoder)
    assert reranker.postprocess_nodes([], query_str=QUERY) == []
    assert rerank_events == []
    with pytest.raises(InvalidInputError, match="query"):
        reranker.postprocess_nodes(_candidates())
    with pytest.raises(InvalidInputError, match="top_n"):
        LateInteractionRerank(top_n=0, encoder=tiny_encoder)
    with pytest.raises(InvalidInputError, match="encoder"):
        LateInteractionRerank(encoder=tiny_encoder, device="cpu")
    # A node without text is a legal empty document: it encodes to its marker tokens, as in a store.
    from lateint_plugins.core.rerank import rerank as core_rerank

    nodes = [*_candidates(), NodeWithScore(node=TextNode(id_="blank", text="   "), score=1.0)]
    out = LateInteractionRerank(top_n=10, encoder=tiny_encoder).postprocess_nodes(nodes, query_str=QUERY)
    assert dict(_pairs(out))["blank"] == pytest.approx(core_rerank(QUERY, ["   "], encoder=tiny_encoder)[0].score)
    _assert_same_ranking(
        [p for p in _pairs(out) if p[0] != "blank"],
        _reference(tiny_encoder, QUERY, list(TEXTS), fp16=False, texts=EMBED_TEXTS),
    )


def test_rerank_async_and_serialisation(tiny_encoder: Any, tiny_pylate_path: Path) -> None:
    reranker = LateInteractionRerank(top_n=4, model=tiny_pylate_path, device="cpu")
    assert (reranker.device, reranker.model) == ("cpu", str(tiny_pylate_path))
    assert next(reranker.encoder.backbone.parameters()).device == torch.device("cpu")
    sync = _pairs(reranker.postprocess_nodes(_candidates(), query_str=QUERY))
    assert _pairs(asyncio.run(reranker.apostprocess_nodes(_candidates(), query_str=QUERY))) == sync
    data = reranker.to_dict()
    assert data["class_name"] == "LateInteractionRerank"
    clone = LateInteractionRerank.from_dict(data)
    assert (clone.top_n, clone.model, clone.device) == (4, reranker.model, "cpu")
    _assert_same_ranking(_pairs(clone.postprocess_nodes(_candidates(), query_str=QUERY)), sync)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rerank_runs_on_the_resolved_cuda_device(tiny_pylate_path: Path) -> None:
    reranker = LateInteractionRerank(top_n=3, model=tiny_pylate_path)
    assert reranker.device.startswith("cuda")
    assert next(reranker.encoder.backbone.parameters()).device.type == "cuda"
    assert len(reranker.postprocess_nodes(_candidates(), query_str=QUERY)) == 3


# ---------------------------------------------------------------------- a query engine
def test_query_engine_with_retriever_and_reranker(retriever: LateInteractionRetriever, tiny_encoder: Any) -> None:
    retriever.similarity_top_k = 4
    reranker = LateInteractionRerank(top_n=2, encoder=tiny_encoder)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[reranker])
    response = engine.query(QUERY)
    candidates = [i for i, _ in _reference(tiny_encoder, QUERY, list(TEXTS), fp16=True, texts=EMBED_TEXTS)[:4]]
    want = _reference(tiny_encoder, QUERY, candidates, fp16=False, texts=EMBED_TEXTS)[:2]
    _assert_same_ranking(_pairs(response.source_nodes), want)
    assert TEXTS[want[0][0]] in str(response)  # the mock LLM echoes the prompt, context included
    async_response = asyncio.run(engine.aquery(QUERY))
    assert _pairs(async_response.source_nodes) == _pairs(response.source_nodes)


@pytest.mark.slow
def test_real_checkpoint_reranks_the_relevant_passage_first(answerai_path: Path) -> None:
    reranker = LateInteractionRerank(top_n=5, model=answerai_path, device="cpu")
    out = reranker.postprocess_nodes(_candidates(), query_str=QUERY)
    assert out[0].node.node_id == "statins"
    _assert_same_ranking(_pairs(out), _reference(reranker.encoder, QUERY, list(TEXTS), fp16=False, texts=EMBED_TEXTS))
