"""LateInteractionVectorStore through LlamaIndex's own entry points: VectorStoreIndex, StorageContext, query engines.

Nodes must come back exactly as they went in, and scores must equal the retriever's and the reranker's.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import sys
import threading
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from lateint_plugins.core.errors import DuplicateIdError, InvalidInputError
from lateint_plugins.core.store import LateInteractionStore
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.llms.mock import MockLLM
from llama_index.core.schema import BaseNode, MetadataMode, NodeRelationship, NodeWithScore, TextNode
from llama_index.core.vector_stores.types import (
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from lateint_plugins.llama_index import (
    LateInteractionRerank,
    LateInteractionRetriever,
    LateInteractionVectorStore,
    NoEmbedding,
)
from lateint_plugins.llama_index._nodes import default_splitter

LONG = " ".join(f"Sentence {i} says statins lower cholesterol in trial {i}." for i in range(40))
QUERY = "how do statins lower cholesterol?"


def _documents() -> list[Document]:
    return [
        Document(
            text=LONG,
            id_="trials",
            metadata={"topic": "medicine", "year": 2020, "internal": "x"},
            excluded_llm_metadata_keys=["internal"],
            excluded_embed_metadata_keys=["internal"],
        ),
        Document(text="The Eiffel Tower was completed in 1889.", id_="eiffel", metadata={"topic": "history"}),
        Document(text="Insulin regulates blood glucose.", id_="insulin", metadata={"topic": "medicine", "year": 1921}),
    ]


def _dump(node: BaseNode) -> dict[str, Any]:
    data = node.model_dump(mode="json")
    data.pop("embedding", None)
    return data


@pytest.fixture
def vector_store(tiny_encoder: Any) -> LateInteractionVectorStore:
    return LateInteractionVectorStore(LateInteractionStore(tiny_encoder))


@pytest.fixture
def no_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail on any import of OpenAI and on any read of Settings.embed_model (which resolves to OpenAI)."""

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            blocked = ("openai.", "llama_index.embeddings.openai", "llama_index.llms.openai")
            if name == "openai" or name.startswith(blocked):
                raise AssertionError(f"{name} was imported")

    def no_settings(self: Any) -> Any:
        raise AssertionError("Settings.embed_model was resolved")

    monkeypatch.setattr(sys, "meta_path", [Block(), *sys.meta_path])
    monkeypatch.setattr(type(Settings), "embed_model", property(no_settings))

    def no_query_embedding(self: Any, query: str) -> Any:
        raise AssertionError("a query was embedded")

    monkeypatch.setattr(NoEmbedding, "_get_query_embedding", no_query_embedding)


# ---------------------------------------------------------------------- the done-when test
def test_query_engine_keeps_nodes_whole_and_delete_ref_doc_removes_every_chunk(
    vector_store: LateInteractionVectorStore, tiny_encoder: Any, no_openai: None
) -> None:
    with pytest.raises(AssertionError, match=r"Settings\.embed_model"):  # the guard works: without our embed model
        VectorStoreIndex.from_vector_store(vector_store)  # llama-index would resolve its default (OpenAI)
    documents = _documents()
    nodes = default_splitter(tiny_encoder)(documents)
    chunks = [n for n in nodes if n.ref_doc_id == "trials"]
    assert len(chunks) > 2  # the long document was split
    index = vector_store.as_index()
    index.insert_nodes(nodes)
    assert len(vector_store.client) == len(nodes)

    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=len(nodes))
    response = engine.query(QUERY)
    assert len(response.source_nodes) == len(nodes)
    originals = {n.node_id: n for n in nodes}
    for hit in response.source_nodes:
        original = originals[hit.node.node_id]
        assert _dump(hit.node) == _dump(original)  # id, text, metadata, relationships, excluded keys, ...
        assert hit.node.ref_doc_id == original.ref_doc_id
        assert hit.node.relationships[NodeRelationship.SOURCE].node_id == original.ref_doc_id
    trial_hit = next(h for h in response.source_nodes if h.node.ref_doc_id == "trials")
    assert trial_hit.node.metadata == {"topic": "medicine", "year": 2020, "internal": "x"}
    assert "internal" not in trial_hit.node.get_content(metadata_mode=MetadataMode.LLM)
    assert trial_hit.node.get_content() in str(response)  # MockLLM echoes the prompt, context included

    index.delete_ref_doc("trials")
    left = vector_store.get_nodes()
    assert len(left) == len(nodes) - len(chunks)
    assert {n.ref_doc_id for n in left} == {"eiffel", "insulin"}
    assert all(h.node.ref_doc_id != "trials" for h in engine.query(QUERY).source_nodes)
    index.delete_ref_doc("trials")  # an unknown (or already deleted) document removes nothing
    assert len(vector_store.client) == len(left)


def test_storage_context_from_documents_insert_and_retriever(
    vector_store: LateInteractionVectorStore, tiny_encoder: Any, no_openai: None
) -> None:
    storage = StorageContext.from_defaults(vector_store=vector_store)
    documents = _documents()[1:]
    index = VectorStoreIndex.from_documents(documents, storage_context=storage, embed_model=vector_store.embed_model)
    assert len(vector_store.client) == 2
    index.insert(Document(text="Statins inhibit HMG-CoA reductase.", id_="statins", metadata={"topic": "medicine"}))
    hits = index.as_retriever(similarity_top_k=1).retrieve(QUERY)
    assert [(h.node.ref_doc_id, h.node.metadata) for h in hits] == [("statins", {"topic": "medicine"})]
    # A second index on the same store sees the same nodes (from_vector_store, no documents).
    again = VectorStoreIndex.from_vector_store(vector_store, embed_model=vector_store.embed_model)
    assert [h.node.node_id for h in again.as_retriever(similarity_top_k=1).retrieve(QUERY)] == [hits[0].node.node_id]
    built = vector_store.index_documents([_documents()[0]])
    assert isinstance(built, VectorStoreIndex) and len(vector_store.client) > 4


# ---------------------------------------------------------------------- one text mode, one score
def test_retriever_reranker_and_vector_store_score_a_node_alike(tiny_encoder: Any) -> None:
    nodes = [
        TextNode(id_="statins", text="Statins lower LDL cholesterol.", metadata={"topic": "medicine", "n": 1}),
        TextNode(id_="eiffel", text="The Eiffel Tower is in Paris.", metadata={"topic": "history", "n": 2}),
    ]
    retriever = LateInteractionRetriever.from_nodes(nodes, LateInteractionStore(tiny_encoder), similarity_top_k=2)
    vector_store = LateInteractionVectorStore(LateInteractionStore(tiny_encoder))
    vector_store.add(nodes)
    reranker = LateInteractionRerank(top_n=2, encoder=tiny_encoder)
    retrieved = {n.node.node_id: n.score for n in retriever.retrieve(QUERY)}
    stored = vector_store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=2))
    reranked = {n.node.node_id: n.score for n in reranker.postprocess_nodes(retriever.retrieve(QUERY), query_str=QUERY)}
    assert dict(zip(stored.ids or [], stored.similarities or [], strict=True)) == retrieved
    bare = LateInteractionRerank(top_n=2, encoder=tiny_encoder, metadata_mode=MetadataMode.NONE)
    bare_scores = {n.node.node_id: n.score for n in bare.postprocess_nodes(retriever.retrieve(QUERY), query_str=QUERY)}
    for node_id, score in retrieved.items():
        # Equal up to the exact index's fp16 storage; the bare text (the old retriever's) scores differently.
        assert reranked[node_id] == pytest.approx(score, abs=2e-3)
        assert abs(bare_scores[node_id] - score) > 0.05


# ---------------------------------------------------------------------- filters, reads, deletes
def test_equality_filters_doc_ids_and_node_ids(vector_store: LateInteractionVectorStore, tiny_encoder: Any) -> None:
    nodes = default_splitter(tiny_encoder)(_documents())
    vector_store.add(nodes)
    medicine = MetadataFilters(filters=[MetadataFilter(key="topic", value="medicine")])
    result = vector_store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=100, filters=medicine))
    assert {n.metadata["topic"] for n in result.nodes or []} == {"medicine"}
    assert len(result.ids or []) == len([n for n in nodes if n.metadata["topic"] == "medicine"])
    scoped = vector_store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=100, doc_ids=["insulin"]))
    assert [n.ref_doc_id for n in scoped.nodes or []] == ["insulin"]
    pair = [nodes[0].node_id, nodes[-1].node_id]
    restricted = vector_store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=5, node_ids=pair))
    assert sorted(restricted.ids or []) == sorted(pair)
    assert [n.node_id for n in vector_store.get_nodes(node_ids=[pair[1], "nope", pair[0]])] == [pair[1], pair[0]]
    history = MetadataFilters(filters=[MetadataFilter(key="topic", value="history")])
    assert [n.ref_doc_id for n in vector_store.get_nodes(filters=history)] == ["eiffel"]
    vector_store.delete_nodes(filters=history)
    vector_store.delete_nodes(node_ids=[pair[0], "unknown"])
    assert {n.node_id for n in vector_store.get_nodes()} == {n.node_id for n in nodes} - {pair[0], nodes[-2].node_id}
    vector_store.clear()
    assert len(vector_store.client) == 0 and vector_store.get_nodes() == []


def test_upsert_by_default_and_clear_errors(vector_store: LateInteractionVectorStore) -> None:
    node = TextNode(id_="a", text="Statins lower cholesterol.", metadata={"v": 1})
    vector_store.add([node])
    vector_store.add([node.model_copy(update={"metadata": {"v": 2}})])
    assert [n.metadata for n in vector_store.get_nodes()] == [{"v": 2}]
    with pytest.raises(DuplicateIdError):
        vector_store.add([node], replace=False)
    with pytest.raises(InvalidInputError, match="VectorStoreQuery"):
        vector_store.query("statins")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="mode"):
        vector_store.query(VectorStoreQuery(query_str=QUERY, mode=VectorStoreQueryMode.MMR))
    with pytest.raises(InvalidInputError, match="query_str"):
        vector_store.query(VectorStoreQuery(query_embedding=[0.1, 0.2]))
    with pytest.raises(InvalidInputError, match=r"option.*depth"):
        vector_store.query(VectorStoreQuery(query_str=QUERY), depth=3)
    with pytest.raises(InvalidInputError, match="clear"):
        vector_store.delete_nodes()
    with pytest.raises(InvalidInputError, match="DocumentStore"):
        LateInteractionVectorStore(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="metadata_mode"):
        LateInteractionVectorStore(vector_store.client, metadata_mode="everything")  # type: ignore[arg-type]


def test_async_variants_run_off_the_event_loop(vector_store: LateInteractionVectorStore, tiny_encoder: Any) -> None:
    nodes = default_splitter(tiny_encoder)(_documents())
    threads: list[int] = []
    search = vector_store.client.search

    def recording_search(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return search(*args, **kwargs)

    vector_store.client.search = recording_search  # type: ignore[method-assign]
    query = VectorStoreQuery(query_str=QUERY, similarity_top_k=3)

    async def run() -> tuple[Any, int]:
        await vector_store.async_add(nodes)
        result = await vector_store.aquery(query)
        await vector_store.adelete("trials")
        return result, threading.get_ident()

    result, loop_thread = asyncio.run(run())
    assert threads and all(t != loop_thread for t in threads)
    vector_store.add(nodes)
    assert vector_store.query(query).ids == result.ids
    index = vector_store.as_index()
    asyncio.run(index.adelete_ref_doc("trials"))
    assert {n.ref_doc_id for n in vector_store.get_nodes()} == {"eiffel", "insulin"}
    hits = asyncio.run(index.as_retriever(similarity_top_k=2).aretrieve(QUERY))
    assert all(isinstance(h, NodeWithScore) for h in hits) and len(hits) == 2


def test_over_a_qdrant_store(tiny_encoder: Any) -> None:
    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient

    from lateint_plugins.qdrant import QdrantLateInteractionStore

    store = QdrantLateInteractionStore(QdrantClient(":memory:"), "llama", tiny_encoder, device="cpu")
    vector_store = LateInteractionVectorStore(store)
    nodes = default_splitter(tiny_encoder)(_documents())
    index = vector_store.as_index()
    index.insert_nodes(nodes)
    hits = index.as_retriever(similarity_top_k=len(nodes)).retrieve(QUERY)
    originals = {n.node_id: n for n in nodes}
    assert sorted(h.node.node_id for h in hits) == sorted(originals)
    assert all(_dump(h.node) == _dump(originals[h.node.node_id]) for h in hits)
    index.delete_ref_doc("trials")
    assert {n.ref_doc_id for n in vector_store.get_nodes()} == {"eiffel", "insulin"}
