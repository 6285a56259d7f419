"""LangChain's own standard suites, unmodified, over the real MiniLM encoder (a plain HF checkpoint).

``RetrieversIntegrationTests`` for :class:`LateInteractionRetriever` and ``VectorStoreIntegrationTests``
(sync and async) for :class:`LateInteractionVectorStore`, over an exact and over a PLAID store. The suites
check ranking ("bar" above "foo" for the query "bar"), so they need real token vectors: the tiny random
model is not enough.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.index import create_index
from lateint_plugins.core.store import LateInteractionStore

from lateint_plugins.langchain import LateInteractionRetriever, LateInteractionVectorStore

# The suites' async tests are plain `async def`: run them on pytest-asyncio's loop (the project does
# not set asyncio_mode = "auto"), and silence the warning that the mark also reaches the sync tests.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning"
    ),
]

CORPUS = [
    "Late interaction scores every query token against every document token.",
    "ColBERT keeps one vector per token and sums the best matches.",
    "The Eiffel Tower is in Paris.",
    "Bananas are rich in potassium.",
    "MaxSim takes the maximum similarity for each query token.",
]


@pytest.fixture(scope="module")
def minilm_encoder(minilm_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(minilm_path, device="cpu")


@pytest.fixture(scope="module")
def corpus_store(minilm_encoder: ColBERTEncoder) -> LateInteractionStore:
    store = LateInteractionStore(minilm_encoder)
    store.add_texts(CORPUS, [{"n": i} for i in range(len(CORPUS))])
    return store


class TestLateInteractionRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _store(self, corpus_store: LateInteractionStore) -> None:
        self.store = corpus_store

    @property
    def retriever_constructor(self) -> type[LateInteractionRetriever]:
        return LateInteractionRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": self.store}

    @property
    def retriever_query_example(self) -> str:
        return "How does late interaction score documents?"


class TestLateInteractionVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, minilm_encoder: ColBERTEncoder) -> LateInteractionVectorStore:
        return LateInteractionVectorStore(LateInteractionStore(minilm_encoder))


class TestLateInteractionVectorStorePLAIDStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, minilm_encoder: ColBERTEncoder) -> LateInteractionVectorStore:
        pytest.importorskip("faiss", reason="the PLAID index needs faiss-cpu (extra [faiss])")
        return LateInteractionVectorStore(LateInteractionStore(minilm_encoder, create_index("plaid")))


class TestLateInteractionVectorStoreQdrantStandard(VectorStoreIntegrationTests):
    """The same suite over Qdrant's local mode: the adapters take any DocumentStore."""

    @pytest.fixture
    def vectorstore(self, minilm_encoder: ColBERTEncoder) -> LateInteractionVectorStore:
        qdrant_client = pytest.importorskip("qdrant_client", reason="pip install 'lateint-plugins[qdrant]'")
        qdrant = pytest.importorskip("lateint_plugins.qdrant")
        client = qdrant_client.QdrantClient(":memory:")
        return LateInteractionVectorStore(qdrant.QdrantLateInteractionStore(client, "langchain", minilm_encoder))
