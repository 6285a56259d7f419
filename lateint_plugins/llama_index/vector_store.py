"""A LlamaIndex vector store over ColBERT late interaction: ``VectorStoreIndex`` on any DocumentStore.

LlamaIndex's ``VectorStoreIndex`` embeds nodes and queries with an embed model and hands the vectors
to a vector store. A late-interaction store encodes the text itself (one vector per token), so
:class:`LateInteractionVectorStore` says ``is_embedding_query=False`` (queries are never embedded)
and ``stores_text=True`` (nodes live in the store, not LlamaIndex's docstore), and indexes built
through :meth:`LateInteractionVectorStore.as_index` / :meth:`~LateInteractionVectorStore.index_documents`
get :class:`NoEmbedding`, so neither ``Settings.embed_model`` (which resolves to OpenAI) nor any
embedding model is touched. Building the index by hand, pass ``embed_model=vector_store.embed_model``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.indices.vector_store.base import VectorStoreIndex
from llama_index.core.schema import BaseNode, Document, MetadataMode, TransformComponent
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from lateint_plugins.core._checks import check_ids, check_k, check_text
from lateint_plugins.core.encoder import DEFAULT_MODEL
from lateint_plugins.core.errors import InvalidInputError
from lateint_plugins.core.store import DocumentStore, LateInteractionStore, SearchResult, check_search_options
from lateint_plugins.llama_index._nodes import (
    REF_DOC_ID_KEY,
    and_filters,
    check_metadata_mode,
    check_store_filter,
    default_splitter,
    filter_matches,
    metadata_filters_to_dict,
    node_records,
    ref_doc_id_of,
    result_node,
)

__all__ = ["LateInteractionVectorStore", "NoEmbedding"]

_PAGE = 512  # ids per store.get call when scanning the store


class NoEmbedding(BaseEmbedding):
    """The embed model of an index over a :class:`LateInteractionVectorStore`: it computes nothing.

    The store encodes node texts and queries with its own ColBERT encoder, so the vector
    LlamaIndex asks for is an empty list (never read). Passing it keeps ``VectorStoreIndex`` from
    resolving ``Settings.embed_model``, whose default imports OpenAI and needs an API key.
    """

    model_name: str = "none (the vector store encodes text itself)"

    @classmethod
    def class_name(cls) -> str:
        return "NoEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return []

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return []

    def _get_text_embedding(self, text: str) -> Embedding:
        return []

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return [[] for _ in texts]


class LateInteractionVectorStore(BasePydanticVectorStore):
    """ColBERT late interaction as a LlamaIndex vector store, over any :class:`DocumentStore`.

    Works with the exact or PLAID :class:`LateInteractionStore` and with the Qdrant store. Nodes are
    stored whole (id, text, metadata, ``ref_doc_id``, relationships, excluded-metadata keys) and come
    back whole; what is encoded is ``node.get_content(metadata_mode)`` (default ``EMBED``, what
    :class:`LateInteractionRerank` scores, so both give a node the same score). Scores are MaxSim.

    Args:
        store: the store holding the token vectors, texts and metadata.
        metadata_mode: which of a node's content is encoded (LlamaIndex's ``MetadataMode``).
        batch_size: documents per encoder batch when adding nodes.

    Example:
        >>> vector_store = LateInteractionVectorStore.from_pretrained("answerdotai/answerai-colbert-small-v1")
        >>> index = vector_store.index_documents(documents)          # or vector_store.as_index()
        >>> index.as_query_engine(llm=llm).query("how do statins work?")
        >>> index.delete_ref_doc(documents[0].doc_id)                 # every chunk of that document
    """

    stores_text: bool = True
    is_embedding_query: bool = False  # the store encodes query text itself
    flat_metadata: bool = False  # metadata may nest (any JSON); filters address nested keys as "a.b"
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="Which node content is encoded.")
    batch_size: int = Field(default=32, description="Documents per encoder batch.")
    _store: DocumentStore = PrivateAttr()

    def __init__(
        self, store: DocumentStore, *, metadata_mode: MetadataMode = MetadataMode.EMBED, batch_size: int = 32
    ) -> None:
        if not isinstance(store, DocumentStore):
            raise InvalidInputError(
                f"store must implement the DocumentStore protocol (e.g. a LateInteractionStore), "
                f"got {type(store).__name__}."
            )
        fields: dict[str, Any] = {
            "metadata_mode": check_metadata_mode(metadata_mode),
            "batch_size": check_k(batch_size, "batch_size"),
        }
        super().__init__(**fields)
        self._store = store

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = DEFAULT_MODEL,
        *,
        index: str = "exact",
        device: str | torch.device | None = None,
        index_options: Mapping[str, Any] | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        batch_size: int = 32,
    ) -> LateInteractionVectorStore:
        """A vector store on a new, empty :class:`LateInteractionStore` (``index``: ``"exact"`` or ``"plaid"``)."""
        store = LateInteractionStore.from_pretrained(model, index=index, device=device, index_options=index_options)
        return cls(store, metadata_mode=metadata_mode, batch_size=batch_size)

    @classmethod
    def class_name(cls) -> str:
        return "LateInteractionVectorStore"

    @property
    def client(self) -> DocumentStore:
        """The underlying store (save a :class:`LateInteractionStore` with ``client.save(path)``)."""
        return self._store

    @property
    def embed_model(self) -> NoEmbedding:
        """The embed model to give a ``VectorStoreIndex`` on this store: one that computes nothing."""
        return NoEmbedding()

    # ------------------------------------------------------------------ index helpers
    def as_index(self, **kwargs: Any) -> VectorStoreIndex:
        """``VectorStoreIndex.from_vector_store(self)`` with :class:`NoEmbedding` (kwargs go to the index)."""
        kwargs.setdefault("embed_model", self.embed_model)
        return VectorStoreIndex.from_vector_store(self, **kwargs)

    def index_documents(
        self,
        documents: Sequence[Document],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> VectorStoreIndex:
        """Split ``documents`` into nodes, add them, and return a ``VectorStoreIndex`` on this store.

        Args:
            transformations: LlamaIndex node parsers / transformations. By default a ``SentenceSplitter``
                counting the encoder's own tokens, chunks as long as the model's ``document_length``.
            **kwargs: ``VectorStoreIndex`` options (e.g. ``callback_manager``).
        """
        steps: list[TransformComponent] = (
            list(transformations) if transformations is not None else [default_splitter(self._store.encoder)]
        )
        kwargs.setdefault("embed_model", self.embed_model)
        return VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=self),
            transformations=steps,
            show_progress=show_progress,
            **kwargs,
        )

    # ------------------------------------------------------------------ writes
    def add(self, nodes: Sequence[BaseNode], *, replace: bool = True, **kwargs: Any) -> list[str]:
        """Encode and store ``nodes``; returns their ids. Node embeddings, if any, are ignored.

        Args:
            replace: upsert nodes whose id is already stored (LlamaIndex's convention); with False such
                ids raise :class:`~lateint_plugins.core.errors.DuplicateIdError` and nothing is added.
        """
        _no_options("add", kwargs)
        ids, texts, metadatas = node_records(nodes, self.metadata_mode)
        if not ids:
            return []
        return self._store.add_texts(texts, metadatas=metadatas, ids=ids, batch_size=self.batch_size, replace=replace)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Remove every node (chunk) of the source document ``ref_doc_id``; an unknown id removes nothing."""
        _no_options("delete", delete_kwargs)
        ref_doc_id = check_text(ref_doc_id, "ref_doc_id")
        self._delete_ids([r.id for r in self._scan() if ref_doc_id_of(r.metadata) == ref_doc_id])

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Remove nodes by id and/or by metadata filter (both given: nodes matching both); unknown ids are ignored."""
        _no_options("delete_nodes", delete_kwargs)
        if node_ids is None and filters is None:
            raise InvalidInputError("delete_nodes needs node_ids or filters; use clear() to remove every node.")
        self._delete_ids([r.id for r in self._select(node_ids, filters)])

    def clear(self) -> None:
        """Remove every node from the store."""
        self._delete_ids(self._store.ids())

    def _delete_ids(self, ids: list[str]) -> None:
        if ids:
            self._store.delete(ids)

    # ------------------------------------------------------------------ reads
    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Stored nodes by id (in the order asked, unknown ids skipped) and/or by metadata filter."""
        return [result_node(r) for r in self._select(node_ids, filters)]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes with the highest MaxSim against ``query.query_str``.

        ``filters`` and ``doc_ids`` (source documents) restrict the search; ``node_ids`` restricts it to
        those nodes (by a full-depth search, so prefer filters on large stores). ``query_embedding`` is
        not used. ``kwargs`` are the store's own search options (``store.search_options``).
        """
        if not isinstance(query, VectorStoreQuery):
            raise InvalidInputError(f"query must be a VectorStoreQuery, got {type(query).__name__}.")
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise InvalidInputError(
                f"query.mode {query.mode.value!r} is not supported; LateInteractionVectorStore ranks by MaxSim "
                "(mode 'default')."
            )
        if query.query_str is None:
            raise InvalidInputError(
                "query.query_str is None; LateInteractionVectorStore encodes the query text itself and ignores "
                "query_embedding. Pass the query as text."
            )
        text = check_text(query.query_str, "query.query_str")
        k = check_k(query.similarity_top_k, "similarity_top_k")
        options = self._search_options(kwargs)
        doc_ids = check_ids(query.doc_ids, "doc_ids") if query.doc_ids else []
        wanted = set(check_ids(query.node_ids, "node_ids", unique=False)) if query.node_ids else None
        scope = {REF_DOC_ID_KEY: doc_ids[0] if len(doc_ids) == 1 else {"$in": doc_ids}} if doc_ids else None
        filter = check_store_filter(and_filters(metadata_filters_to_dict(query.filters, "query.filters"), scope))
        if wanted is None:
            results = self._store.search(text, k=k, filter=filter, **options)
        else:
            depth = len(self._store)
            everything = self._store.search(text, k=depth, filter=filter, **options) if depth else []
            results = [r for r in everything if r.id in wanted][:k]
        return VectorStoreQueryResult(
            nodes=[result_node(r) for r in results],
            similarities=[r.score for r in results],
            ids=[r.id for r in results],
        )

    def _search_options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Store-specific search keywords (e.g. Qdrant's ``mode``), checked against what the store declares."""
        return check_search_options(kwargs, self._store.search_options)

    def _scan(self, ids: Sequence[str] | None = None) -> list[SearchResult]:
        """Stored documents (all of them, or ``ids`` in that order), read a page at a time."""
        ids = self._store.ids() if ids is None else list(ids)
        out: list[SearchResult] = []
        for start in range(0, len(ids), _PAGE):
            out += self._store.get(ids[start : start + _PAGE])
        return out

    def _select(self, node_ids: Sequence[str] | None, filters: MetadataFilters | None) -> list[SearchResult]:
        filter = check_store_filter(metadata_filters_to_dict(filters))
        ids = check_ids(node_ids, "node_ids", unique=False) if node_ids is not None else None
        return [r for r in self._scan(ids) if filter_matches(filter, r.metadata)]

    # ------------------------------------------------------------------ async: the sync path in a worker thread
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    def __repr__(self) -> str:
        return f"LateInteractionVectorStore({self._store!r}, metadata_mode={self.metadata_mode.value!r})"


def _no_options(method: str, kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise InvalidInputError(f"LateInteractionVectorStore.{method} got unexpected options {sorted(kwargs)}.")
