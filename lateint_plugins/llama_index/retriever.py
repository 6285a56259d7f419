"""A ColBERT late-interaction retriever for LlamaIndex that persists to a folder.

:class:`LateInteractionRetriever` is a ``llama_index.core.retrievers.BaseRetriever`` over any
:class:`~lateint_plugins.core.store.DocumentStore` (the exact or PLAID :class:`LateInteractionStore`,
or the Qdrant store). Nodes go in with :meth:`~LateInteractionRetriever.insert` and come back whole
(id, text, metadata, ``ref_doc_id``, relationships, excluded-metadata keys) as ``NodeWithScore`` with
the MaxSim score of :func:`lateint_plugins.core.scoring.maxsim`; the retriever persists to a folder
(:meth:`~LateInteractionRetriever.persist` / :meth:`~LateInteractionRetriever.from_persist_dir`).
For ``VectorStoreIndex`` / ``StorageContext`` / query engines use :class:`LateInteractionVectorStore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import BaseNode, Document, MetadataMode, NodeWithScore, QueryBundle, TransformComponent
from llama_index.core.vector_stores.types import MetadataFilters

from lateint_plugins.core import _io
from lateint_plugins.core._checks import check_ids, check_k, check_sequence
from lateint_plugins.core.encoder import DEFAULT_MODEL, ColBERTEncoder
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError
from lateint_plugins.core.fingerprint import check_fingerprint
from lateint_plugins.core.store import DocumentStore, LateInteractionStore
from lateint_plugins.llama_index._nodes import (
    check_metadata_mode,
    check_query_str,
    check_store_filter,
    default_splitter,
    metadata_filters_to_dict,
    node_records,
    result_node,
)

__all__ = ["LateInteractionRetriever"]

logger = logging.getLogger(__name__)

_RETRIEVER_KIND = "llama-index-retriever"
_RETRIEVER_VERSION = 1
_STORE_FOLDER = "store"


class LateInteractionRetriever(BaseRetriever):
    """ColBERT late-interaction retrieval as a LlamaIndex retriever.

    Node ids are the store's document ids. What is encoded is ``node.get_content(metadata_mode)``
    (default ``EMBED``: the text with the metadata meant for embedding, LlamaIndex's convention and
    what :class:`LateInteractionRerank` scores, so both give a node the same score). The node itself
    is stored with it (its metadata must be JSON-serialisable) and comes back whole: id, text,
    metadata, ``ref_doc_id``, relationships and excluded-metadata keys (embeddings are not kept).

    Args:
        store: any :class:`DocumentStore`; a :class:`LateInteractionStore` can also be persisted.
        similarity_top_k: nodes returned per query.
        filters: restrict every query to nodes whose metadata matches: ``MetadataFilters`` (every
            operator and condition, see :func:`metadata_filters_to_dict`) or a filter dict.
        metadata_mode: which of a node's content is encoded (LlamaIndex's ``MetadataMode``).
        callback_manager: LlamaIndex callback manager.
        verbose: LlamaIndex's verbose flag (recursive retrieval printing).

    Example:
        >>> retriever = LateInteractionRetriever.from_documents(docs, model="answerdotai/answerai-colbert-small-v1")
        >>> retriever.retrieve("how do statins work?")[0].node.text
    """

    def __init__(
        self,
        store: DocumentStore,
        *,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(store, DocumentStore):
            raise InvalidInputError(
                f"store must implement the DocumentStore protocol (e.g. a LateInteractionStore), "
                f"got {type(store).__name__}."
            )
        self.store = store
        self.similarity_top_k = check_k(similarity_top_k, "similarity_top_k")
        self.filters = filters
        self.metadata_mode = check_metadata_mode(metadata_mode)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_nodes(
        cls,
        nodes: Sequence[BaseNode],
        store: DocumentStore | None = None,
        *,
        model: str | Path = DEFAULT_MODEL,
        index: str = "exact",
        device: str | torch.device | None = None,
        index_options: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> LateInteractionRetriever:
        """Index ``nodes`` (one document per node) and return a retriever over them.

        Args:
            nodes: the nodes to index; their ``node_id`` becomes the document id.
            store: an existing store to add to; by default a new :class:`LateInteractionStore`.
            model: checkpoint folder or Hub id for a new store.
            index: ``"exact"`` or ``"plaid"`` for a new store.
            device: device for a new store's encoder and index.
            index_options: options for a new store's index (e.g. ``{"config": PLAIDConfig(nbits=2)}``).
            batch_size: documents per encoder batch.
            show_progress: show an encoding progress bar.
            **kwargs: retriever options (``similarity_top_k``, ``filters``, ``metadata_mode``, ``callback_manager``,
                ``verbose``).
        """
        if store is None:
            store = LateInteractionStore.from_pretrained(model, index=index, device=device, index_options=index_options)
        retriever = cls(store, **kwargs)
        retriever.insert(nodes, batch_size=batch_size, show_progress=show_progress)
        return retriever

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        store: DocumentStore | None = None,
        *,
        transformations: Sequence[TransformComponent] | None = None,
        model: str | Path = DEFAULT_MODEL,
        index: str = "exact",
        device: str | torch.device | None = None,
        index_options: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> LateInteractionRetriever:
        """Split ``documents`` into nodes and index them (see :meth:`from_nodes` for the other arguments).

        Args:
            transformations: LlamaIndex node parsers / transformations to run. By default a
                ``SentenceSplitter`` counting the encoder's own tokens, with chunks as long as the
                model's ``document_length``, so nothing is cut off at encoding time.
        """
        if store is None:
            store = LateInteractionStore.from_pretrained(model, index=index, device=device, index_options=index_options)
        retriever = cls(store, **kwargs)
        retriever.insert_documents(
            documents, transformations=transformations, batch_size=batch_size, show_progress=show_progress
        )
        return retriever

    # ------------------------------------------------------------------ configuration
    @property
    def filters(self) -> MetadataFilters | Mapping[str, Any] | None:
        """The filters applied to every query (validated and translated when set)."""
        return self._filters

    @filters.setter
    def filters(self, value: MetadataFilters | Mapping[str, Any] | None) -> None:
        self._filter = check_store_filter(metadata_filters_to_dict(value))
        self._filters = value

    # ------------------------------------------------------------------ writes
    def insert(
        self,
        nodes: Sequence[BaseNode],
        *,
        replace: bool = False,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> list[str]:
        """Encode and add ``nodes``; returns their ids.

        Args:
            nodes: nodes to add (one document each; split long documents first, e.g. with
                :meth:`insert_documents`).
            replace: overwrite nodes whose id is already stored (an upsert); otherwise such ids raise
                :class:`~lateint_plugins.core.errors.DuplicateIdError` and nothing is added.
            batch_size: documents per encoder batch.
            show_progress: show an encoding progress bar.
        """
        ids, texts, metadatas = node_records(nodes, self.metadata_mode)
        return self.store.add_texts(
            texts,
            metadatas=metadatas,
            ids=ids,
            batch_size=batch_size,
            show_progress_bar=show_progress,
            replace=replace,
        )

    def insert_documents(
        self,
        documents: Sequence[Document],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        replace: bool = False,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> list[str]:
        """Split ``documents`` into nodes (see :meth:`from_documents`) and :meth:`insert` them; returns node ids."""
        if isinstance(documents, BaseNode):
            raise InvalidInputError("documents must be a list of Documents; wrap a single document in a list.")
        documents = check_sequence(documents, "documents", "Documents", "Document")
        for i, document in enumerate(documents):
            if not isinstance(document, BaseNode):
                raise InvalidInputError(f"documents[{i}] must be a LlamaIndex Document, got {type(document).__name__}.")
        from llama_index.core.ingestion import run_transformations

        steps = list(transformations) if transformations is not None else [default_splitter(self.store.encoder)]
        nodes = run_transformations(documents, steps, show_progress=show_progress)
        return self.insert(nodes, replace=replace, batch_size=batch_size, show_progress=show_progress)

    def delete(self, node_ids: Sequence[str]) -> None:
        """Remove nodes by id; unknown ids raise :class:`~lateint_plugins.core.errors.UnknownIdError`."""
        self.store.delete(check_ids(node_ids, "node_ids"))

    # ------------------------------------------------------------------ persistence
    def persist(self, path: str | Path) -> None:
        """Write the retriever (its store, ``similarity_top_k`` and filters) to the folder ``path`` atomically."""
        save = getattr(self.store, "save", None)
        if not callable(save):
            raise InvalidInputError(
                f"persist needs a store with save(path), but {type(self.store).__name__} has none "
                "(a Qdrant store persists in Qdrant itself); build the retriever on a LateInteractionStore "
                "to persist it."
            )
        filters = self._filters
        with _io.atomic_directory(path) as tmp:
            save(tmp / _STORE_FOLDER)
            _io.write_manifest(
                tmp,
                _RETRIEVER_KIND,
                _RETRIEVER_VERSION,
                similarity_top_k=self.similarity_top_k,
                metadata_mode=self.metadata_mode.value,
                metadata_filters=filters.model_dump(mode="json") if isinstance(filters, MetadataFilters) else None,
                filter=dict(filters) if isinstance(filters, Mapping) else None,
                fingerprint=self.store.encoder.fingerprint.to_dict(),
            )

    @classmethod
    def from_persist_dir(
        cls,
        path: str | Path,
        *,
        encoder: ColBERTEncoder | None = None,
        model: str | Path | None = None,
        device: str | torch.device | None = None,
        allow_model_mismatch: bool = False,
        **kwargs: Any,
    ) -> LateInteractionRetriever:
        """Load a retriever written by :meth:`persist`.

        The encoder must be the model the retriever was persisted with (same fingerprint), else
        :class:`~lateint_plugins.core.errors.ModelMismatchError`.

        Args:
            encoder: reuse an already loaded encoder (default: load the recorded model).
            model: load this checkpoint instead of the recorded one (e.g. the model folder moved).
            device: device for the loaded encoder (the index picks CUDA when available, else CPU).
            allow_model_mismatch: load even when the model differs (a warning instead of the error).
            **kwargs: retriever options overriding the persisted ones (``similarity_top_k``, ``filters``, ...).
        """

        def read(folder: Path) -> tuple[LateInteractionStore, dict[str, Any]]:
            manifest = _io.read_manifest(folder, [_RETRIEVER_KIND], max_version=_RETRIEVER_VERSION)
            store = LateInteractionStore.load(
                folder / _STORE_FOLDER, encoder, model=model, device=device, allow_model_mismatch=allow_model_mismatch
            )
            check_fingerprint(
                manifest.get("fingerprint"),
                store.encoder.fingerprint,
                where=f"The retriever persisted at {str(folder)!r}",
                allow_mismatch=allow_model_mismatch,
            )
            options: dict[str, Any] = {"similarity_top_k": manifest["similarity_top_k"]}
            try:
                # Folders written before metadata_mode existed indexed the bare text (MetadataMode.NONE).
                options["metadata_mode"] = MetadataMode(manifest.get("metadata_mode", MetadataMode.NONE.value))
                if manifest.get("metadata_filters") is not None:
                    options["filters"] = MetadataFilters.model_validate(manifest["metadata_filters"])
                elif manifest.get("filter") is not None:
                    options["filters"] = dict(manifest["filter"])
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise CorruptIndexError(
                    f"{folder / _io.MANIFEST}: field 'metadata_mode' or 'metadata_filters' is malformed ({exc})."
                ) from exc
            return store, options

        store, options = _io.read_consistently(path, read)
        options.update(kwargs)
        return cls(store, **options)

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """Nodes for a query (a str or a ``QueryBundle``), best first; an empty query raises."""
        check_query_str(str_or_query_bundle)
        return super().retrieve(str_or_query_bundle)

    async def aretrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """:meth:`retrieve` without blocking the event loop."""
        check_query_str(str_or_query_bundle)
        return await super().aretrieve(str_or_query_bundle)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = check_query_str(query_bundle)
        results = self.store.search(query, k=self.similarity_top_k, filter=self._filter)
        return [NodeWithScore(node=result_node(r), score=r.score) for r in results]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Encoding and scoring are CPU/GPU-bound; run them in a worker thread so the event loop stays free.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def __repr__(self) -> str:
        return f"LateInteractionRetriever({self.store!r}, similarity_top_k={self.similarity_top_k})"
