"""AsyncQdrantLateInteractionStore: the sync store's results through an AsyncQdrantClient, off the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch
from lateint_plugins.core.errors import DuplicateIdError, InvalidInputError
from qdrant_client import AsyncQdrantClient, QdrantClient
from test_qdrant import ATOL, QUERIES, corpus, filled

from lateint_plugins.qdrant import (
    AsyncQdrantLateInteractionStore,
    CollectionConfig,
    PayloadKeys,
    QdrantLateInteractionStore,
)


@pytest.mark.parametrize("layout", ["fp16", "plaid"])
def test_async_store_answers_as_the_sync_store(tiny_encoder, layout) -> None:
    ids, texts, metas = corpus()
    config = CollectionConfig(token_layout=layout)
    sync_store = filled(QdrantClient(":memory:"), tiny_encoder, config=config)

    async def main() -> None:
        store = await AsyncQdrantLateInteractionStore.create(
            AsyncQdrantClient(":memory:"), "docs", tiny_encoder, candidate_depth=1000, device="cpu", config=config
        )
        assert await store.aadd_texts(texts, metas, ids, batch_size=7) == ids
        assert await store.acount() == len(ids) and await store.acontains("doc-3")
        assert sorted(await store.aids()) == sorted(ids)
        flt = {"topic": "bio"}
        for mode in ("local", "native") if layout == "fp16" else ("local",):
            got = await store.asearch_batch(QUERIES, k=5, filter=flt, mode=mode)
            want = sync_store.search_batch(QUERIES, k=5, filter=flt, mode=mode)
            for g, w in zip(got, want, strict=True):
                assert [r.id for r in g] == [r.id for r in w]
                torch.testing.assert_close(torch.tensor([r.score for r in g]), torch.tensor([r.score for r in w]),
                                           atol=ATOL, rtol=0)  # fmt: skip
        assert [r.id for r in await store.asearch(QUERIES[0], k=3)] == [r.id for r in sync_store.search(QUERIES[0], 3)]
        assert await store.asearch_batch([]) == []
        assert [r.id for r in await store.aget(["doc-5", "absent", "doc-1"])] == ["doc-5", "doc-1"]
        stored = await store.aget_embeddings(["doc-2"])
        torch.testing.assert_close(stored["doc-2"], sync_store.get_embeddings(["doc-2"])["doc-2"], atol=0, rtol=0)
        with pytest.raises(DuplicateIdError):
            await store.aadd_texts(["again"], ids=["doc-1"])
        await store.adelete(["doc-1", "never-there"])
        assert not await store.acontains("doc-1") and await store.acount() == len(ids) - 1
        docs = await store.adocuments(with_vectors=True)
        assert len(docs) == len(ids) - 1 and all(d.embedding is not None for d in docs)
        assert await store.arepair() == 0

    asyncio.run(main())


def test_options_and_payload_keys_reach_the_collection(tiny_encoder) -> None:
    async def main() -> None:
        client = AsyncQdrantClient(":memory:")
        config = CollectionConfig(payload_keys=PayloadKeys(text="body"), lexical=False)
        store = await AsyncQdrantLateInteractionStore.create(client, "c", tiny_encoder, config=config, mode="native")
        await store.aadd_texts(["protein gene"], ids=["a"])
        points, _ = await client.scroll("c", with_payload=True)
        assert points[0].payload["body"] == "protein gene"
        again = await AsyncQdrantLateInteractionStore.create(client, "c", tiny_encoder)
        assert again.store.config.payload_keys.text == "body" and not again.store.config.lexical
        assert store.search_options["mode"] == "native" and store.client is client

    asyncio.run(main())


class _GatedEncoder:
    """The tiny encoder, but encode_documents waits until the event loop has run a step."""

    def __init__(self, encoder, gate: threading.Event) -> None:
        self._encoder, self._gate = encoder, gate
        self.loop_ran: bool | None = None

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode_documents(self, *args, **kwargs):
        self.loop_ran = self._gate.wait(timeout=10)
        return self._encoder.encode_documents(*args, **kwargs)


def test_encoding_does_not_block_the_event_loop(tiny_encoder) -> None:
    gate = threading.Event()

    async def main() -> bool | None:
        store = await AsyncQdrantLateInteractionStore.create(AsyncQdrantClient(":memory:"), "c", tiny_encoder)
        gated = _GatedEncoder(tiny_encoder, gate)
        store.store.encoder = gated  # type: ignore[assignment]
        task = asyncio.create_task(store.aadd_texts(["protein gene"], ids=["a"]))
        for _ in range(3):  # were encoding on the loop, these steps would wait until it timed out
            await asyncio.sleep(0)
        gate.set()
        await task
        return gated.loop_ran

    assert asyncio.run(main()) is True


def test_misuse_is_refused(tiny_encoder) -> None:
    async def create(client):
        return await AsyncQdrantLateInteractionStore.create(client, "c", tiny_encoder)

    with pytest.raises(InvalidInputError, match="AsyncQdrantClient"):
        asyncio.run(create(QdrantClient(":memory:")))
    store = asyncio.run(create(AsyncQdrantClient(":memory:")))
    with pytest.raises(InvalidInputError, match="another event loop"):
        asyncio.run(store.asearch("protein"))
    with pytest.raises(InvalidInputError, match="create"):
        AsyncQdrantLateInteractionStore(
            QdrantLateInteractionStore(QdrantClient(":memory:"), "c", tiny_encoder), asyncio.new_event_loop()
        )
