"""The Qdrant store over an ``AsyncQdrantClient``: ``a*`` methods that never block the event loop.

:class:`AsyncQdrantLateInteractionStore` runs the very code of :class:`QdrantLateInteractionStore`
(layout, point building, commit protocol, candidate requests, MaxSim) in a worker thread
(:func:`asyncio.to_thread`), so encoding and MaxSim never run on the event loop. That store talks to
Qdrant through :class:`_LoopBridge`: each client call it makes is a coroutine of the
``AsyncQdrantClient``, scheduled on the caller's event loop and awaited from the worker thread. So
the network I/O is the async client's, on the loop it belongs to, and there is one implementation of
every operation.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from lateint_plugins.core.errors import InvalidInputError, require
from lateint_plugins.core.index import Metadata
from lateint_plugins.core.store import SearchResult
from lateint_plugins.qdrant.layout import _EXTRA, StoredDocument
from lateint_plugins.qdrant.store import QdrantLateInteractionStore

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient, models

    from lateint_plugins.core.encoder import ColBERTEncoder

__all__ = ["AsyncQdrantLateInteractionStore"]

T = TypeVar("T")

# The client methods QdrantLateInteractionStore calls; the bridge exposes exactly these.
_CLIENT_METHODS = frozenset(
    {
        "collection_exists",
        "get_collection",
        "create_collection",
        "update_collection",
        "create_payload_index",
        "count",
        "upsert",
        "delete",
        "retrieve",
        "scroll",
        "query_batch_points",
    }
)


class _LoopBridge:
    """A blocking facade of an ``AsyncQdrantClient`` for code running in a worker thread.

    Each method schedules the async client's coroutine on ``loop`` and waits for its result. Called
    on the loop's own thread it would wait for itself forever, so that raises instead. Equal to (and
    hashed as) every other bridge of the same client, so stores on one client share a write lock.
    """

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in _CLIENT_METHODS:
            raise AttributeError(name)
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if asyncio._get_running_loop() is self.loop:
                raise RuntimeError(f"{name}() was called on the event loop's thread; it must run in a worker thread.")
            return asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self.loop).result()

        return call

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LoopBridge) and other.client is self.client

    def __hash__(self) -> int:
        return id(self.client)


class AsyncQdrantLateInteractionStore:
    """:class:`QdrantLateInteractionStore` for asyncio code, over a ``qdrant_client.AsyncQdrantClient``.

    Create it with ``await AsyncQdrantLateInteractionStore.create(client, collection_name, encoder,
    **options)`` (the options of :class:`QdrantLateInteractionStore`); then use it from the event loop
    it was created on. Every method is the sync store's, run in a worker thread: same arguments, same
    results, same errors.

    Example:
        >>> from qdrant_client import AsyncQdrantClient
        >>> store = await AsyncQdrantLateInteractionStore.create(AsyncQdrantClient(":memory:"), "docs", encoder)
        >>> await store.aadd_texts(["Paris is the capital of France."], ids=["paris"])
        ['paris']
        >>> (await store.asearch("capital of France", k=1))[0].id
        'paris'
    """

    def __init__(self, store: QdrantLateInteractionStore, loop: asyncio.AbstractEventLoop) -> None:
        bridge = getattr(store, "client", None)
        if not isinstance(bridge, _LoopBridge):
            raise InvalidInputError(
                "AsyncQdrantLateInteractionStore is created with `await AsyncQdrantLateInteractionStore.create(client, "
                "collection_name, encoder)`, not called directly."
            )
        self.store = store
        """The sync store doing the work (its client calls only work from a worker thread)."""
        self._loop = loop
        self._bridge = bridge

    @classmethod
    async def create(
        cls, client: AsyncQdrantClient, collection_name: str, encoder: ColBERTEncoder, **options: Any
    ) -> AsyncQdrantLateInteractionStore:
        """Open (or create) ``collection_name`` through an ``AsyncQdrantClient``.

        ``options``: the keyword options of :class:`QdrantLateInteractionStore` (``config``, ``mode``, ...).
        """
        require("qdrant_client", _EXTRA)
        from qdrant_client import AsyncQdrantClient

        if not isinstance(client, AsyncQdrantClient):
            raise InvalidInputError(
                f"client must be a qdrant_client.AsyncQdrantClient, got {type(client).__name__}; for a QdrantClient "
                "use QdrantLateInteractionStore."
            )
        loop = asyncio.get_running_loop()
        bridge = _LoopBridge(client, loop)
        store = await asyncio.to_thread(QdrantLateInteractionStore, bridge, collection_name, encoder, **options)  # type: ignore[arg-type]
        return cls(store, loop)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if asyncio.get_running_loop() is not self._loop:
            raise InvalidInputError(
                "this AsyncQdrantLateInteractionStore was created on another event loop (its AsyncQdrantClient "
                "belongs to that loop); create one store per loop."
            )
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    @property
    def client(self) -> Any:
        """The ``AsyncQdrantClient``."""
        return self._bridge.client

    @property
    def collection_name(self) -> str:
        return self.store.collection_name

    @property
    def encoder(self) -> ColBERTEncoder:
        return self.store.encoder

    @property
    def search_options(self) -> Mapping[str, Any]:
        """As :attr:`QdrantLateInteractionStore.search_options`."""
        return self.store.search_options

    async def aadd_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`QdrantLateInteractionStore.add_texts` (encoding included) in a worker thread."""
        return await self._run(self.store.add_texts, texts, metadatas, ids, **kwargs)

    async def aadd_documents(
        self, documents: Sequence[Any], ids: Sequence[str] | None = None, **kwargs: Any
    ) -> list[str]:
        """:meth:`QdrantLateInteractionStore.add_documents` in a worker thread."""
        return await self._run(self.store.add_documents, documents, ids, **kwargs)

    async def aadd_embeddings(
        self,
        texts: Sequence[str],
        embeddings: Sequence[torch.Tensor | np.ndarray],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`QdrantLateInteractionStore.add_embeddings` in a worker thread."""
        return await self._run(self.store.add_embeddings, texts, embeddings, metadatas, ids, **kwargs)

    async def asearch(
        self, query: str, k: int = 10, filter: Mapping[str, Any] | models.Filter | None = None, **options: Any
    ) -> list[SearchResult]:
        """:meth:`QdrantLateInteractionStore.search` (encoding and MaxSim included) in a worker thread."""
        return await self._run(self.store.search, query, k, filter, **options)

    async def asearch_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Mapping[str, Any] | models.Filter | None = None,
        **options: Any,
    ) -> list[list[SearchResult]]:
        """:meth:`QdrantLateInteractionStore.search_batch` in a worker thread."""
        return await self._run(self.store.search_batch, queries, k, filter, **options)

    async def asearch_embeddings(
        self, query_embeddings: Sequence[torch.Tensor | np.ndarray], k: int = 10, **kwargs: Any
    ) -> list[list[SearchResult]]:
        """:meth:`QdrantLateInteractionStore.search_embeddings` in a worker thread."""
        return await self._run(self.store.search_embeddings, query_embeddings, k, **kwargs)

    async def aget(self, ids: Sequence[str]) -> list[SearchResult]:
        """:meth:`QdrantLateInteractionStore.get`: stored documents in the order asked, unknown ids skipped."""
        return await self._run(self.store.get, ids)

    async def aget_embeddings(self, ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """:meth:`QdrantLateInteractionStore.get_embeddings` in a worker thread."""
        return await self._run(self.store.get_embeddings, ids)

    async def adelete(self, ids: Sequence[str]) -> None:
        """:meth:`QdrantLateInteractionStore.delete`: unknown ids are ignored."""
        await self._run(self.store.delete, ids)

    async def aids(self) -> list[str]:
        """:meth:`QdrantLateInteractionStore.ids`."""
        return await self._run(self.store.ids)

    async def acount(self) -> int:
        """The number of documents (``len()`` of the sync store)."""
        return await self._run(self.store.__len__)

    async def acontains(self, doc_id: object) -> bool:
        """``doc_id in store`` of the sync store."""
        return await self._run(self.store.__contains__, doc_id)

    async def adocuments(self, *, with_vectors: bool = False) -> list[StoredDocument]:
        """Every committed document (:meth:`QdrantLateInteractionStore.iter_documents`), as a list."""
        return await self._run(lambda: list(self.store.iter_documents(with_vectors=with_vectors)))

    async def arepair(self) -> int:
        """:meth:`QdrantLateInteractionStore.repair` in a worker thread."""
        return await self._run(self.store.repair)

    def __repr__(self) -> str:
        return f"Async{self.store!r}"
