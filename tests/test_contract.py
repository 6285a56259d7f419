"""The store contract (lateint_plugins.testing) over every store: exact, PLAID and Qdrant.

Qdrant runs in local mode (``:memory:`` and ``path=``) always, and against a server when
``QDRANT_URL`` is set (e.g. ``QDRANT_URL=http://localhost:6333``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lateint_plugins.core.store import LateInteractionStore

from lateint_plugins.testing import TEXTS, DocumentStoreTests

TRAINING_TEXTS = [*TEXTS.values(), "document d1 about nothing in particular", "report on the weather in spring"]


class TestExactStore(DocumentStoreTests):
    @pytest.fixture
    def store(self, tiny_encoder: Any) -> LateInteractionStore:
        return LateInteractionStore(tiny_encoder)


@pytest.fixture(scope="module")
def sample(tiny_encoder: Any) -> torch.Tensor:
    """Token vectors to train the PLAID codec on, encoded once for the module."""
    return torch.cat(tiny_encoder.encode_documents(TRAINING_TEXTS))


class TestPLAIDStore(DocumentStoreTests):
    @pytest.fixture
    def store(self, tiny_encoder: Any, sample: torch.Tensor) -> LateInteractionStore:
        from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig

        # Probing every centroid keeps the tiny index exhaustive: the contract is about bookkeeping.
        index = PLAIDIndex(
            config=PLAIDConfig(nbits=4, n_centroids=8), device="cpu", search_config=SearchConfig(n_ivf_probe=8)
        )
        index.train(sample)
        return LateInteractionStore(tiny_encoder, index)


class _QdrantStoreTests(DocumentStoreTests):
    supports_itext = False  # Qdrant has no case-insensitive substring match
    token_layout = "fp16"
    codec_training_tokens: int | None = 0  # plaid: a codec trained by the first write

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[Any]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, client: Any, tiny_encoder: Any) -> Any:
        from lateint_plugins.qdrant import CollectionConfig, QdrantLateInteractionStore

        deferred = {} if self.codec_training_tokens is None else {"codec_training_tokens": self.codec_training_tokens}
        config = CollectionConfig(
            payload_indexes={"lang": "keyword", "year": "float", "kind": "keyword"},
            token_layout=self.token_layout,
            **deferred,
        )
        return QdrantLateInteractionStore(client, f"contract_{uuid.uuid4().hex[:12]}", tiny_encoder, config=config)


class TestQdrantMemoryStore(_QdrantStoreTests):
    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[Any]:
        qdrant_client = pytest.importorskip("qdrant_client", reason="needs the qdrant extra")
        client = qdrant_client.QdrantClient(":memory:")
        yield client
        client.close()


class TestQdrantPathStore(_QdrantStoreTests):
    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[Any]:
        qdrant_client = pytest.importorskip("qdrant_client", reason="needs the qdrant extra")
        client = qdrant_client.QdrantClient(path=str(tmp_path / "qdrant"))
        yield client
        client.close()


class TestQdrantServerStore(_QdrantStoreTests):
    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[Any]:
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip("set QDRANT_URL (e.g. http://localhost:6333) to run the contract against a Qdrant server")
        qdrant_client = pytest.importorskip("qdrant_client", reason="needs the qdrant extra")
        client = qdrant_client.QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
        before = {c.name for c in client.get_collections().collections}
        yield client
        for c in client.get_collections().collections:
            if c.name.startswith("contract_") and c.name not in before:
                client.delete_collection(c.name)
        client.close()


class TestQdrantPlaidMemoryStore(TestQdrantMemoryStore):
    """The PLAID-codes layout (codec trained by the first write) under the same contract."""

    token_layout = "plaid"


class TestQdrantDefaultMemoryStore(TestQdrantMemoryStore):
    """The default layout: "plaid", its documents kept as fp16 tokens until there are enough to train a codec."""

    token_layout = "plaid"
    codec_training_tokens = None  # the default


class TestQdrantPlaidPathStore(TestQdrantPathStore):
    token_layout = "plaid"


class TestQdrantPlaidServerStore(TestQdrantServerStore):
    token_layout = "plaid"


class TestQdrantDefaultServerStore(TestQdrantServerStore):
    token_layout = "plaid"
    codec_training_tokens = None  # the default
