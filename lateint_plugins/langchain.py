"""LangChain integration: a retriever, a reranking compressor and a vector store over late interaction.

Three classes, all over the same engine, so a score means the same thing in each of them (and in the
LlamaIndex and Qdrant adapters): the sum over query tokens of the best document-token similarity,
computed by :func:`lateint_plugins.core.scoring.maxsim`.

* :class:`LateInteractionRetriever`: a ``BaseRetriever`` over any store (exact, PLAID, Qdrant);
  ``invoke(query, k=3, filter={...})``, async, ``from_texts`` / ``from_documents``.
* :class:`LateInteractionReranker`: a ``BaseDocumentCompressor`` that reorders any retriever's
  candidates by MaxSim; drop it into ``ContextualCompressionRetriever``.
* :class:`LateInteractionVectorStore`: a LangChain ``VectorStore`` (``add_documents``,
  ``similarity_search``, ``as_retriever``, ...), for code written against that interface.

Install with ``pip install 'lateint-plugins[langchain]'``.

Example:
    >>> from lateint_plugins.langchain import LateInteractionRetriever
    >>> retriever = LateInteractionRetriever.from_texts(
    ...     ["Paris is the capital of France.", "Qubits can be in superposition."],
    ...     "answerdotai/answerai-colbert-small-v1",
    ...     metadatas=[{"topic": "geo"}, {"topic": "physics"}],
    ... )
    >>> retriever.invoke("capital of France", k=1)[0].metadata
    {'topic': 'geo', 'score': ...}
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from .core._checks import check_ids, check_k, check_sequence, check_text, check_texts
from .core.errors import InvalidInputError, LateInteractionError, MissingDependencyError

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
        Callbacks,
    )
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
    from langchain_core.vectorstores import VectorStore
    from pydantic import ConfigDict, Field, PrivateAttr, ValidationError
except ImportError as exc:
    raise MissingDependencyError(
        f"lateint_plugins.langchain needs langchain-core ({exc}). "
        "Install it with: pip install 'lateint-plugins[langchain]'"
    ) from exc

import torch

from .core.encoder import ColBERTEncoder
from .core.index import create_index
from .core.rerank import rerank
from .core.store import DocumentStore, LateInteractionStore, SearchResult

__all__ = ["LateInteractionReranker", "LateInteractionRetriever", "LateInteractionVectorStore"]

logger = logging.getLogger(__name__)

Model: TypeAlias = str | Path | ColBERTEncoder
"""A Hugging Face Hub id, a local checkpoint folder, or an already loaded :class:`ColBERTEncoder`."""


def _new_store(
    model: Model,
    *,
    index: str = "exact",
    device: str | torch.device | None = None,
    index_options: Mapping[str, Any] | None = None,
    encoder_options: Mapping[str, Any] | None = None,
) -> LateInteractionStore:
    """An empty :class:`LateInteractionStore` for ``model`` with a new index of kind ``index``."""
    if isinstance(model, ColBERTEncoder):
        if encoder_options:
            raise InvalidInputError(
                "encoder_options only apply when model is a checkpoint name or folder; "
                "set them when loading the ColBERTEncoder you passed as model."
            )
        options = dict(index_options or {})
        if device is not None:
            options.setdefault("device", device)
        return LateInteractionStore(model, create_index(index, **options))
    if not isinstance(model, (str, Path)):
        raise InvalidInputError(
            f"model must be a Hub id, a local checkpoint folder or a ColBERTEncoder, got {type(model).__name__}."
        )
    return LateInteractionStore.from_pretrained(
        model, index=index, device=device, index_options=index_options, **dict(encoder_options or {})
    )


def _fill_ids(ids: Sequence[str | None] | None, n: int) -> list[str] | None:
    """LangChain passes ``None`` for documents without an id (``Document.id``); give those a new UUID."""
    if ids is None:
        return None
    ids = check_sequence(ids, "ids", "str ids", "id")
    if len(ids) != n:
        raise InvalidInputError(f"Got {n} texts but {len(ids)} ids; pass one id (or None) per text.")
    return [uuid.uuid4().hex if i is None else i for i in ids]


def _plain_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None) -> list[Any] | None:
    """The metadatas as a list (the store checks each one and names it ``metadatas[i]``)."""
    return None if metadatas is None else check_sequence(metadatas, "metadatas", "dicts", "dict")


def _documents(documents: object, name: str = "documents") -> list[Document]:
    items = check_sequence(documents, name, "Documents", "Document")
    for i, d in enumerate(items):
        if not isinstance(d, Document):
            raise InvalidInputError(f"{name}[{i}] must be a langchain_core Document, got {type(d).__name__}.")
    return items


def _existing(store: DocumentStore, ids: Sequence[str]) -> list[str]:
    """The ids of ``ids`` that ``store`` holds (each once, in order)."""
    ids = check_ids(ids, "ids", unique=False)
    present = {r.id for r in store.get(list(dict.fromkeys(ids)))}
    return [i for i in dict.fromkeys(ids) if i in present]


def relevance_score(score: float, query_length: int) -> float:
    """A MaxSim score as a relevance in [0, 1]: ``(1 + score / query_length) / 2``, clipped.

    MaxSim sums one best cosine (in [-1, 1]) per query token, and expanded queries have
    ``query_length`` tokens, so ``score / query_length`` is the mean best cosine, mapped linearly from
    [-1, 1] to [0, 1]. It is the vector store's relevance score (``similarity_score_threshold``);
    apply it to ``metadata["score"]`` of the retriever's or the reranker's documents to compare them.
    """
    return min(1.0, max(0.0, (1.0 + score / query_length) / 2.0))


def _document(result: SearchResult, score_key: str | None = None) -> Document:
    metadata = dict(result.metadata)
    if score_key is not None:
        metadata[score_key] = result.score
    return Document(page_content=result.text, metadata=metadata, id=result.id)


def _search_parameters(store: DocumentStore) -> frozenset[str] | None:
    """Keyword arguments ``store.search`` accepts besides the query (None: anything, it takes ``**kwargs``)."""
    if isinstance(getattr(store, "search_options", None), Mapping):  # the store contract: declared options
        return frozenset({"k", "filter", *store.search_options})
    parameters = inspect.signature(store.search).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return frozenset(name for name in parameters if name != "query")


# ---------------------------------------------------------------------------------------- retriever
def _init_model(parent: Any, data: dict[str, Any]) -> None:
    """``parent.__init__(**data)`` (pydantic), with its ValidationError turned into the typed error behind it."""
    try:
        parent.__init__(**data)
    except ValidationError as exc:
        for error in exc.errors():
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, LateInteractionError):
                raise cause from None
        raise InvalidInputError(str(exc)) from None


class LateInteractionRetriever(BaseRetriever):
    """A LangChain retriever over a late-interaction store (exact, PLAID or Qdrant).

    Each returned ``Document`` has the stored ``id``, the stored metadata and the MaxSim score in
    ``metadata[score_key]``, best first. ``invoke(query, k=..., filter=...)`` overrides the
    defaults for one call; ``ainvoke`` runs the search in a worker thread, so the event loop is
    never blocked.

    Build one with :meth:`from_texts` / :meth:`from_documents`, or pass any store satisfying
    :class:`~lateint_plugins.core.store.DocumentStore`::

        store = LateInteractionStore.from_pretrained("answerdotai/answerai-colbert-small-v1", index="plaid")
        retriever = LateInteractionRetriever(store=store, k=5, filter={"lang": "en"})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: DocumentStore
    """Where documents live and are searched; shared, not copied."""
    k: int = Field(default=4, ge=1)
    """Documents returned per query (``invoke(query, k=...)`` overrides it)."""
    filter: dict[str, Any] | None = None
    """Exact-match metadata filter ``{key: value}`` applied before scoring (``invoke(query, filter=...)``
    overrides it)."""
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments for ``store.search`` (store-specific options); ``k`` and ``filter``
    here override the fields above."""
    score_key: str | None = "score"
    """Metadata key that receives the MaxSim score (None: leave metadata as stored); the same key as the
    reranker's. For a score in [0, 1] use :func:`relevance_score`."""

    def __init__(self, **data: Any) -> None:
        # Checked before pydantic, so a bad argument is an InvalidInputError like everywhere else.
        if not isinstance(data.get("store"), DocumentStore):
            raise InvalidInputError(
                f"store must implement DocumentStore (add_texts, search, get, delete), got "
                f"{type(data.get('store')).__name__}."
            )
        if "k" in data:
            data["k"] = check_k(data["k"])
        _init_model(super(), data)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if not isinstance(self.store, DocumentStore):
            raise InvalidInputError(
                f"store must implement DocumentStore (add_texts, search, get, delete), got {type(self.store).__name__}."
            )
        self._search_arguments(self.search_kwargs)  # fail at construction, not at the first query

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        model: Model,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str | None] | None = None,
        *,
        index: str = "exact",
        device: str | torch.device | None = None,
        index_options: Mapping[str, Any] | None = None,
        encoder_options: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        **kwargs: Any,
    ) -> LateInteractionRetriever:
        """Encode ``texts`` into a new store and return a retriever over it.

        Args:
            texts: documents to index.
            model: a Hub id, a local checkpoint folder or a loaded :class:`ColBERTEncoder`.
            metadatas: one JSON-serialisable dict (or None) per text.
            ids: one id (or None for a new UUID) per text; default: new UUIDs.
            index: ``"exact"`` or ``"plaid"``.
            device: where the encoder and the index run (default: CUDA when available).
            index_options: passed to the index constructor (e.g. ``{"config": PLAIDConfig(nbits=4)}``).
            encoder_options: :class:`~lateint_plugins.core.encoder.EncoderConfig` overrides
                (e.g. ``{"document_length": 300}``) when ``model`` is a name or folder.
            batch_size: documents per encoder batch.
            show_progress_bar: show a progress bar while encoding.
            **kwargs: retriever fields (``k``, ``filter``, ``search_kwargs``, ``score_key``, ``tags``, ...).
        """
        items = check_texts(texts, "texts")
        store = _new_store(
            model, index=index, device=device, index_options=index_options, encoder_options=encoder_options
        )
        store.add_texts(
            items,
            _plain_metadatas(metadatas),
            _fill_ids(ids, len(items)),
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
        return cls(store=store, **kwargs)

    @classmethod
    def from_documents(cls, documents: Sequence[Document], model: Model, **kwargs: Any) -> LateInteractionRetriever:
        """:meth:`from_texts` for ``Document`` objects; their ``id`` (when set) becomes the stored id."""
        documents = _documents(documents)
        ids = kwargs.pop("ids", None)
        if ids is None and any(d.id for d in documents):
            ids = [d.id for d in documents]
        return cls.from_texts(
            [d.page_content for d in documents], model, [d.metadata for d in documents], ids, **kwargs
        )

    # ------------------------------------------------------------------ documents
    def add_documents(
        self,
        documents: Sequence[Document],
        ids: Sequence[str | None] | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> list[str]:
        """Encode and add ``documents``; an id already stored is replaced (upsert). Returns the ids.

        Ids come from ``ids``, else from each ``Document.id``, else new UUIDs.
        """
        documents = _documents(documents)
        if ids is None:
            ids = [d.id for d in documents]
        return self.store.add_texts(
            [d.page_content for d in documents],
            [dict(d.metadata) for d in documents],
            _fill_ids(ids, len(documents)),
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            replace=True,
        )

    async def aadd_documents(
        self,
        documents: Sequence[Document],
        ids: Sequence[str | None] | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> list[str]:
        """:meth:`add_documents` in a worker thread."""
        return await asyncio.to_thread(
            self.add_documents, documents, ids, batch_size=batch_size, show_progress_bar=show_progress_bar
        )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id; ids that are not stored are ignored."""
        existing = _existing(self.store, ids)
        if existing:
            self.store.delete(existing)

    async def adelete(self, ids: Sequence[str]) -> None:
        """:meth:`delete` in a worker thread."""
        await asyncio.to_thread(self.delete, ids)

    # ------------------------------------------------------------------ retrieval
    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self._search(query, k, kwargs)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, k, kwargs)

    def _search(self, query: str, k: int | None, overrides: Mapping[str, Any]) -> list[Document]:
        check_text(query, "query")
        arguments = self._search_arguments({**self.search_kwargs, **overrides})
        if k is not None:
            arguments["k"] = check_k(k)
        results = self.store.search(query, **arguments)
        return [_document(r, self.score_key) for r in results]

    def _search_arguments(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """``store.search`` keyword arguments: the fields, then ``overrides``; unknown names raise."""
        overrides = {key: value for key, value in overrides.items() if key != "verbose"}  # a LangChain run option
        arguments: dict[str, Any] = {"k": self.k, "filter": self.filter, **overrides}
        check_k(arguments["k"])
        accepted = _search_parameters(self.store)
        unknown = sorted(set(arguments) - accepted) if accepted is not None else []
        if unknown:
            raise InvalidInputError(
                f"{type(self.store).__name__}.search does not take {unknown}; "
                f"valid search options are {sorted(accepted or ())}."
            )
        return arguments

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = type(self.store).__name__
        params["ls_embedding_model"] = self.store.encoder.name_or_path
        return params


# ---------------------------------------------------------------------------------------- reranker
class LateInteractionReranker(BaseDocumentCompressor):
    """Reorders candidate documents by MaxSim against the query (a ColBERT reranker).

    Use it behind a cheap first stage (BM25, a dense retriever) in ``ContextualCompressionRetriever``.
    Scores come from :func:`lateint_plugins.core.rerank.rerank`, the same MaxSim the indexes use, so
    a reranked score equals the score a store with the same model would give. Each returned
    ``Document`` keeps its ``id`` and metadata and gains ``metadata[score_key]``.

    Args:
        model: a Hub id or local checkpoint folder (ignored when ``encoder`` is given).
        device: where the encoder runs (default: CUDA, then MPS, then CPU).
        top_n: documents kept per query (None: all, reordered).
        encoder: an already loaded :class:`ColBERTEncoder` to share (e.g. ``store.encoder``).
        document_cache: optional mapping ``text -> (n_tokens, dim)`` token matrix; candidates found
            there are not re-encoded and misses are added, so documents that come back across
            queries are encoded once. Pass a ``dict`` or any bounded mapping (an LRU cache).

    Example:
        >>> reranker = LateInteractionReranker(model="answerdotai/answerai-colbert-small-v1", top_n=5)
        >>> retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=bm25)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str | None = None
    """Hub id or local checkpoint folder of the ColBERT model."""
    device: str | None = None
    """Device of the encoder (None: CUDA, then MPS, then CPU)."""
    top_n: int | None = Field(default=3, ge=1)
    """Documents returned per query, best first (None: all)."""
    batch_size: int = Field(default=32, ge=1)
    """Documents per encoder batch."""
    score_key: str = "score"
    """Metadata key that receives the MaxSim score: ``"score"``, as with the retriever (earlier versions
    used ``"relevance_score"``; pass ``score_key="relevance_score"`` for pipelines that read that key).
    For a score in [0, 1] use :func:`relevance_score`."""

    _encoder: ColBERTEncoder = PrivateAttr()
    _document_cache: MutableMapping[str, torch.Tensor] | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        encoder: ColBERTEncoder | None = None,
        document_cache: MutableMapping[str, torch.Tensor] | None = None,
        **data: Any,
    ) -> None:
        if encoder is not None and not isinstance(encoder, ColBERTEncoder):
            raise InvalidInputError(f"encoder must be a ColBERTEncoder, got {type(encoder).__name__}.")
        if data.get("top_n") is not None:
            data["top_n"] = check_k(data["top_n"], "top_n")
        if "batch_size" in data:
            data["batch_size"] = check_k(data["batch_size"], "batch_size")
        if encoder is None and not data.get("model"):
            raise InvalidInputError(
                "LateInteractionReranker needs model= (a Hub id or local checkpoint folder) or encoder= "
                "(a loaded ColBERTEncoder, e.g. store.encoder)."
            )
        if encoder is not None:
            data.setdefault("model", encoder.name_or_path)
            data.setdefault("device", str(encoder.device))
        if isinstance(data.get("model"), Path):
            data["model"] = str(data["model"])
        _init_model(super(), data)
        if encoder is None:
            encoder = ColBERTEncoder.from_pretrained(str(self.model), device=self.device)
        self._encoder = encoder
        self._document_cache = document_cache

    @property
    def encoder(self) -> ColBERTEncoder:
        """The ColBERT encoder used for queries and documents."""
        return self._encoder

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The best ``top_n`` of ``documents`` by MaxSim against ``query``, best first."""
        check_text(query, "query")
        documents = _documents(documents)
        if not documents:
            return []
        # Checked here too: the cache below encodes before rerank would look at them.
        texts = check_texts([d.page_content for d in documents], "documents")
        embeddings = self._document_embeddings(texts)
        ranked = rerank(
            query,
            texts,
            k=self.top_n,
            encoder=self._encoder,
            batch_size=self.batch_size,
            document_embeddings=embeddings,
        )
        return [
            documents[r.index].model_copy(update={"metadata": {**documents[r.index].metadata, self.score_key: r.score}})
            for r in ranked
        ]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` in a worker thread (the event loop is not blocked)."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)

    def _document_embeddings(self, texts: Sequence[str]) -> list[torch.Tensor] | None:
        """Token matrices for ``texts`` from the cache, encoding only the misses (None without a cache)."""
        cache = self._document_cache
        if cache is None:
            return None
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            encoded = self._encoder.encode_documents(missing, batch_size=self.batch_size)
            fresh = dict(zip(missing, encoded, strict=True))
            cache.update(fresh)
        else:
            fresh = {}
        # Read misses from `fresh`: a bounded cache may already have evicted some of them.
        return [fresh[t] if t in fresh else cache[t] for t in texts]


# ---------------------------------------------------------------------------------------- vector store
class LateInteractionVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over a late-interaction store (exact, PLAID or Qdrant).

    Adding a document whose id is already stored replaces it (an upsert); deleting ids that are not
    stored is a no-op. Scores from :meth:`similarity_search_with_score` are raw MaxSim (higher is
    better); relevance scores (``search_type="similarity_score_threshold"``) are MaxSim divided by
    the query length, mapped from [-1, 1] to [0, 1]. The async methods are LangChain's defaults,
    which run these sync methods in a worker thread; the core store and encoder are thread-safe,
    so concurrent calls are too.

    Args:
        store: any :class:`~lateint_plugins.core.store.DocumentStore`.

    Example:
        >>> vs = LateInteractionVectorStore.from_texts(["foo", "bar"], "answerdotai/answerai-colbert-small-v1")
        >>> vs.as_retriever(search_kwargs={"k": 1}).invoke("bar")[0].page_content
        'bar'
    """

    def __init__(self, store: DocumentStore) -> None:
        if not isinstance(store, DocumentStore):
            raise InvalidInputError(
                f"store must implement DocumentStore (add_texts, search, get, delete), got {type(store).__name__}."
            )
        self.store = store

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Model | Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        index: str = "exact",
        device: str | torch.device | None = None,
        index_options: Mapping[str, Any] | None = None,
        encoder_options: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        **kwargs: Any,
    ) -> LateInteractionVectorStore:
        """A new store holding ``texts``.

        Args:
            embedding: the ColBERT model: a Hub id, a local checkpoint folder or a loaded
                :class:`ColBERTEncoder` (a LangChain ``Embeddings`` gives one vector per text and
                cannot be used).
            index, device, index_options, encoder_options: see :meth:`LateInteractionRetriever.from_texts`.
        """
        if isinstance(embedding, Embeddings):
            raise InvalidInputError(
                f"embedding must be a ColBERT model (Hub id, folder or ColBERTEncoder), got the single-vector "
                f"{type(embedding).__name__}; late interaction needs per-token vectors."
            )
        if kwargs:
            raise InvalidInputError(f"Unknown option(s) {sorted(kwargs)} for LateInteractionVectorStore.from_texts.")
        store = cls(
            _new_store(
                embedding, index=index, device=device, index_options=index_options, encoder_options=encoder_options
            )
        )
        store.add_texts(texts, metadatas, ids=ids, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return store

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Encode and store ``texts``; ids already stored are replaced. ``None`` ids get new UUIDs."""
        if kwargs:
            raise InvalidInputError(
                f"Unknown option(s) {sorted(kwargs)} for add_texts; valid ones are batch_size, show_progress_bar."
            )
        items = check_texts(texts, "texts")
        return self.store.add_texts(
            items,
            _plain_metadatas(metadatas),
            _fill_ids(ids, len(items)),
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            replace=True,
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the stored documents among ``ids`` (others are ignored); returns True."""
        if ids is None:
            raise InvalidInputError("delete needs ids=[...]; deleting everything is not supported, make a new store.")
        existing = _existing(self.store, ids)
        if existing:
            self.store.delete(existing)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Stored documents with these ids, in the order asked; unknown ids are skipped."""
        return [_document(r) for r in self.store.get(check_ids(ids, "ids", unique=False))]

    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` best documents for ``query``; ``filter`` is an exact-match metadata dict."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` best documents for ``query`` with their MaxSim scores, best first."""
        if kwargs:
            raise InvalidInputError(f"Unknown search option(s) {sorted(kwargs)}; valid ones are k and filter.")
        check_text(query, "query")
        check_k(k)
        results = self.store.search(query, k=k, filter=filter)
        return [(_document(r), r.score) for r in results]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # MaxSim sums one cosine per query token; with query expansion there are query_length of them,
        # so score / query_length is the mean best cosine in [-1, 1] (a lower bound without expansion).
        query_length = self.store.encoder.config.query_length
        return functools.partial(relevance_score, query_length=query_length)

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """Not supported: MMR needs one vector per document."""
        raise NotImplementedError(
            "LateInteractionVectorStore has no single vector per document, so MMR is not supported; "
            "use search_type='similarity' (optionally with LateInteractionReranker)."
        )
