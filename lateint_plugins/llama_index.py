"""LlamaIndex adapter: a ColBERT retriever that persists, and a ColBERT node-postprocessor reranker.

* :class:`LateInteractionRetriever` is a ``llama_index.core.retrievers.BaseRetriever`` over any
  :class:`~lateint_plugins.core.store.DocumentStore` (the exact or PLAID :class:`LateInteractionStore`,
  or the Qdrant store). Nodes go in with :meth:`~LateInteractionRetriever.insert`, come out as
  ``NodeWithScore`` with the node's id, text and metadata and the MaxSim score, and the whole
  retriever persists to a folder (:meth:`~LateInteractionRetriever.persist` /
  :meth:`~LateInteractionRetriever.from_persist_dir`).
* :class:`LateInteractionRerank` is a ``BaseNodePostprocessor`` that reorders candidates (e.g. BM25's
  top 100) by real ColBERT MaxSim: query/document markers, ``[MASK]`` query augmentation, the
  projection head, the sum over query tokens, documents encoded in batches on the resolved device.

Both score with :func:`lateint_plugins.core.scoring.maxsim`, so their scores equal the core's.

Install with ``pip install 'lateint-plugins[llama-index]'``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lateint_plugins.core import _io
from lateint_plugins.core._checks import check_device, check_ids, check_k, check_metadata, check_sequence, check_text
from lateint_plugins.core.encoder import DEFAULT_MODEL, ColBERTEncoder, resolve_device
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError, MissingDependencyError
from lateint_plugins.core.fingerprint import check_fingerprint
from lateint_plugins.core.rerank import rerank
from lateint_plugins.core.store import DocumentStore, LateInteractionStore

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
    from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import (
        BaseNode,
        Document,
        MetadataMode,
        NodeWithScore,
        QueryBundle,
        TextNode,
        TransformComponent,
    )
    from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "lateint_plugins.llama_index needs llama-index-core. "
        "Install it with: pip install 'lateint-plugins[llama-index]'"
    ) from exc

__all__ = ["LateInteractionRerank", "LateInteractionRetriever"]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)

_RETRIEVER_KIND = "llama-index-retriever"
_RETRIEVER_VERSION = 1
_STORE_FOLDER = "store"


class _NoMatch:
    """Marker for a filter no document can satisfy (``key == a AND key == b`` with ``a != b``)."""


_NO_MATCH = _NoMatch()


class LateInteractionRetriever(BaseRetriever):
    """ColBERT late-interaction retrieval as a LlamaIndex retriever.

    Node ids are the store's document ids, node metadata is the store's metadata (it must be
    JSON-serialisable), and the node's text (``MetadataMode.NONE``) is what is encoded and
    returned. Other node fields (relationships, excluded-metadata keys, embeddings) are not kept.

    Args:
        store: any :class:`DocumentStore`; a :class:`LateInteractionStore` can also be persisted.
        similarity_top_k: nodes returned per query.
        filters: restrict every query to nodes whose metadata matches. Exact-match only:
            ``MetadataFilters`` of ``==`` filters joined by AND (or a single filter), or a plain
            ``{key: value}`` dict. Other operators and conditions raise :class:`InvalidInputError`.
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
            **kwargs: retriever options (``similarity_top_k``, ``filters``, ``callback_manager``, ``verbose``).
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
        self._filter = _to_store_filter(value)
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
        if isinstance(nodes, BaseNode):
            raise InvalidInputError("nodes must be a list of nodes; wrap a single node in a list.")
        nodes = check_sequence(nodes, "nodes", "nodes", "node")
        texts, metadatas = [], []
        for i, node in enumerate(nodes):
            if not isinstance(node, BaseNode):
                raise InvalidInputError(f"nodes[{i}] must be a LlamaIndex node, got {type(node).__name__}.")
            # Named after the node here; the store would only know them as texts[i] / metadatas[i].
            texts.append(
                check_text(node.get_content(metadata_mode=MetadataMode.NONE), f"nodes[{i}].text", allow_empty=True)
            )
            metadatas.append(check_metadata(node.metadata, f"nodes[{i}].metadata"))
        return self.store.add_texts(
            texts,
            metadatas=metadatas,
            ids=check_ids([node.node_id for node in nodes], "node_ids"),
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

        steps = list(transformations) if transformations is not None else [_default_splitter(self.store.encoder)]
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
                if manifest.get("metadata_filters") is not None:
                    options["filters"] = MetadataFilters.model_validate(manifest["metadata_filters"])
                elif manifest.get("filter") is not None:
                    options["filters"] = dict(manifest["filter"])
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise CorruptIndexError(
                    f"{folder / _io.MANIFEST}: field 'metadata_filters' is malformed ({exc})."
                ) from exc
            return store, options

        store, options = _io.read_consistently(path, read)
        options.update(kwargs)
        return cls(store, **options)

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """Nodes for a query (a str or a ``QueryBundle``), best first; an empty query raises."""
        _check_query(str_or_query_bundle)
        return super().retrieve(str_or_query_bundle)

    async def aretrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """:meth:`retrieve` without blocking the event loop."""
        _check_query(str_or_query_bundle)
        return await super().aretrieve(str_or_query_bundle)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        _check_query(query_bundle)
        if self._filter is _NO_MATCH:
            return []
        results = self.store.search(query_bundle.query_str, k=self.similarity_top_k, filter=self._filter or None)
        return [
            NodeWithScore(node=TextNode(id_=r.id, text=r.text, metadata=dict(r.metadata)), score=r.score)
            for r in results
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Encoding and scoring are CPU/GPU-bound; run them in a worker thread so the event loop stays free.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def __repr__(self) -> str:
        return f"LateInteractionRetriever({self.store!r}, similarity_top_k={self.similarity_top_k})"


class LateInteractionRerank(BaseNodePostprocessor):
    """Rerank nodes by ColBERT MaxSim against the query, best first.

    The query and all candidate texts are encoded by a :class:`ColBERTEncoder` (documents in
    batches of ``batch_size``, on ``device``) and scored by the core's
    :func:`~lateint_plugins.core.rerank.rerank`, so a node's new score is exactly the MaxSim score
    an index built with the same model would give. Ties keep the input order. Input nodes are not
    modified; new ``NodeWithScore`` objects are returned.

    Args:
        top_n: nodes kept after reranking.
        model: checkpoint folder or Hub id (ignored when ``encoder`` is given).
        device: where the encoder runs (default: CUDA, then MPS, then CPU); stored resolved.
        keep_retrieval_score: copy each node's incoming score into its metadata as ``"retrieval_score"``.
        batch_size: documents per encoder batch.
        metadata_mode: which of a node's content is scored (LlamaIndex's ``MetadataMode``; default
            ``EMBED``, the text plus the metadata meant for embedding, as other LlamaIndex rerankers).
        encoder: an already loaded encoder to share (e.g. ``store.encoder``).
        callback_manager: LlamaIndex callback manager (receives a ``RERANKING`` event).
        **encoder_options: :class:`EncoderConfig` overrides when loading ``model`` (e.g. ``document_length``).

    Example:
        >>> rerank = LateInteractionRerank(top_n=10, model="answerdotai/answerai-colbert-small-v1")
        >>> rerank.postprocess_nodes(bm25.retrieve(query), query_str=query)
    """

    model: str = Field(default=DEFAULT_MODEL, description="ColBERT checkpoint folder or Hugging Face Hub id.")
    top_n: int = Field(default=5, description="Number of nodes to return, best first.")
    device: str = Field(default="cpu", description="Device the encoder runs on (resolved at construction).")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep each node's incoming score in its metadata as 'retrieval_score'."
    )
    batch_size: int = Field(default=32, description="Documents per encoder batch.")
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="Which of a node's content is scored.")
    _encoder: ColBERTEncoder = PrivateAttr()

    def __init__(
        self,
        top_n: int = 5,
        model: str | Path = DEFAULT_MODEL,
        device: str | torch.device | None = None,
        keep_retrieval_score: bool = False,
        batch_size: int = 32,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        *,
        encoder: ColBERTEncoder | None = None,
        callback_manager: CallbackManager | None = None,
        **encoder_options: Any,
    ) -> None:
        check_k(top_n, "top_n")
        check_k(batch_size, "batch_size")
        if encoder is None:
            device = None if device is None else check_device(device)
            encoder = ColBERTEncoder.from_pretrained(model, device=resolve_device(device), **encoder_options)
        elif encoder_options or device is not None:
            raise InvalidInputError(
                "device and encoder options only apply when the reranker loads the model; "
                "with encoder= they are fixed by that encoder. Drop them or drop encoder=."
            )
        fields: dict[str, Any] = {
            "model": encoder.name_or_path or str(model),
            "top_n": top_n,
            "device": str(encoder.device),  # the resolved device, never None
            "keep_retrieval_score": keep_retrieval_score,
            "batch_size": batch_size,
            "metadata_mode": metadata_mode,
            "callback_manager": callback_manager or CallbackManager([]),
        }
        super().__init__(**fields)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "LateInteractionRerank"

    @property
    def encoder(self) -> ColBERTEncoder:
        """The ColBERT encoder used for scoring."""
        return self._encoder

    def postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
        query_str: str | None = None,
    ) -> list[NodeWithScore]:
        """The best ``top_n`` of ``nodes`` by MaxSim against the query (``query_str`` or ``query_bundle``)."""
        if query_str is not None and query_bundle is not None:
            raise InvalidInputError("Pass the query as query_str or as query_bundle, not both.")
        if query_str is not None:
            query_bundle = QueryBundle(check_text(query_str, "query_str"))
        return self._postprocess_nodes(nodes, query_bundle)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError(
                "LateInteractionRerank needs the query: call postprocess_nodes(nodes, query_str=...) "
                "or pass query_bundle=."
            )
        _check_query(query_bundle, "query_bundle")
        nodes = check_sequence(nodes, "nodes", "NodeWithScore", "node")
        for i, item in enumerate(nodes):
            if not isinstance(item, NodeWithScore):
                raise InvalidInputError(f"nodes[{i}] must be a NodeWithScore, got {type(item).__name__}.")
        if not nodes:
            return []
        texts = [
            check_text(n.node.get_content(metadata_mode=self.metadata_mode), f"nodes[{i}].text", allow_empty=True)
            for i, n in enumerate(nodes)
        ]
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model))
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            ranked = rerank(
                query_bundle.query_str,
                texts,
                k=self.top_n,
                encoder=self._encoder,
                document_embeddings=self._encode(texts),
            )
            reranked = [self._rescored(nodes[r.index], r.score) for r in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Token matrices for ``texts``; an empty text encodes to its marker tokens, as in a store."""
        return self._encoder.encode_documents(texts, batch_size=self.batch_size)

    def _rescored(self, item: NodeWithScore, score: float) -> NodeWithScore:
        node = item.node
        if self.keep_retrieval_score:
            node = node.model_copy(update={"metadata": {**node.metadata, "retrieval_score": item.score}})
        return NodeWithScore(node=node, score=score)


# ---------------------------------------------------------------------- helpers
def _check_query(query: object, name: str = "query") -> None:
    """A non-empty, valid UTF-8 query, given as a str or a ``QueryBundle``."""
    if isinstance(query, QueryBundle):
        check_text(query.query_str, f"{name}.query_str")
    elif not isinstance(query, str):
        raise InvalidInputError(f"{name} must be a str or a QueryBundle, got {type(query).__name__}.")
    else:
        check_text(query, name)


def _to_store_filter(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any] | _NoMatch | None:
    """LlamaIndex filters as the store's exact-match dict (``_NO_MATCH`` when they contradict themselves)."""
    if filters is None:
        return None
    if isinstance(filters, Mapping):
        bad = [k for k in filters if not isinstance(k, str)]
        if bad:
            raise InvalidInputError(f"filters keys must be str metadata keys, got {bad[:5]}.")
        return dict(filters)
    if not isinstance(filters, MetadataFilters):
        raise InvalidInputError(
            f"filters must be llama_index MetadataFilters or a {{key: value}} dict, got {type(filters).__name__}."
        )
    pairs: list[tuple[str, Any]] = []
    _collect_equalities(filters, pairs)
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            return _NO_MATCH
        out[key] = value
    return out


def _collect_equalities(filters: MetadataFilters, out: list[tuple[str, Any]]) -> None:
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.NOT or (condition == FilterCondition.OR and len(filters.filters) > 1):
        raise InvalidInputError(
            f"filters: condition {condition.value!r} over {len(filters.filters)} filters is not supported; "
            "LateInteractionRetriever applies exact-match filters joined by AND. Use condition='and', or run one "
            "retriever per alternative."
        )
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            _collect_equalities(item, out)
            continue
        operator = getattr(item, "operator", FilterOperator.EQ)
        if operator != FilterOperator.EQ:
            raise InvalidInputError(
                f"filters: operator {getattr(operator, 'value', operator)!r} on key {item.key!r} is not supported; "
                "LateInteractionRetriever applies exact-match (==) filters only. Filter the retrieved nodes "
                "afterwards for other comparisons."
            )
        out.append((item.key, item.value))


def _default_splitter(encoder: ColBERTEncoder) -> SentenceSplitter:
    """Sentence-aware chunks measured in the encoder's own tokens, as long as one encoded document."""
    chunk_size = max(encoder.config.document_length - 3, 1)  # room left by [CLS], the [D] marker and [SEP]
    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_size // 8,
        tokenizer=encoder.tokenizer.tokenize,
        # Nodes must inherit their document's metadata; the splitter then also reserves room for
        # that metadata in each chunk, which only makes chunks shorter than the encoder allows.
        include_metadata=True,
    )
