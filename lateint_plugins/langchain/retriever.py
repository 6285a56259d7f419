"""``LateInteractionRetriever``: a LangChain ``BaseRetriever`` over any late-interaction store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from pydantic import ConfigDict, Field, PrivateAttr

from ..core._checks import check_k, check_texts
from ..core.encoder import ColBERTEncoder
from ..core.errors import InvalidInputError
from ..core.store import DocumentStore, LateInteractionStore
from ._common import (
    STORE_TYPE_MESSAGE,
    Model,
    as_documents,
    check_search_options,
    existing_ids,
    fill_ids,
    init_model,
    new_store,
    plain_metadatas,
    save_store,
    to_document,
)
from ._scores import RelevanceScale
from ._search import check_lambda, mmr_search, search

_MMR_OPTIONS = {"fetch_k": 20, "lambda_mult": 0.5}


class LateInteractionRetriever(BaseRetriever):
    """LangChain retriever over a late-interaction (ColBERT) store: exact, PLAID or Qdrant.

    Each returned ``Document`` has the stored ``id``, the stored metadata and the MaxSim score in
    ``metadata[score_key]``, best first (in selection order with ``search_type="mmr"``).

    Setup:
        .. code-block:: bash

            pip install -U 'lateint-plugins[langchain]'          # add ',qdrant' for Qdrant, ',faiss' for PLAID

    Key init args:
        store: DocumentStore
            Where documents live (``LateInteractionStore``, ``QdrantLateInteractionStore``); shared.
        k: int
            Documents per query (default 4).
        filter: dict | None
            Metadata filter (the package's filter model: ``{"topic": "x"}``, ``{"year": {"$gte": 2020}}``).
        search_type: "similarity" | "mmr"
            ``"mmr"``: maximal marginal relevance over the ``fetch_k`` best (``search_kwargs``
            ``fetch_k``, ``lambda_mult``).
        search_kwargs: dict
            ``k``, ``filter``, the MMR options and the store's own options (``store.search_options``).
        score_key: str | None
            Metadata key of the MaxSim score (default ``"score"``).

    Instantiate:
        .. code-block:: python

            from lateint_plugins.langchain import LateInteractionRetriever

            retriever = LateInteractionRetriever.from_texts(
                ["Paris is the capital of France.", "Qubits can be in superposition."],
                "answerdotai/answerai-colbert-small-v1",
                metadatas=[{"topic": "geo"}, {"topic": "physics"}],
                k=1,
            )
            # or over any store: LateInteractionRetriever(store=store, k=5, filter={"lang": "en"})

    Usage:
        .. code-block:: python

            retriever.invoke("capital of France")

        .. code-block:: none

            [Document(id='...', metadata={'topic': 'geo', 'score': 27.1...}, page_content='Paris is ...')]

    Search with filter / per-call options:
        .. code-block:: python

            retriever.invoke("superposition", k=2, filter={"topic": "physics"})

    Add and delete documents, save and load (core stores):
        .. code-block:: python

            retriever.add_documents([Document(page_content="Bern is in Switzerland.", id="ch")])
            retriever.delete(["ch"])
            retriever.save("my_store")
            retriever = LateInteractionRetriever.load("my_store", k=3)

    Use within a chain:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import ChatPromptTemplate
            from langchain_core.runnables import RunnablePassthrough

            prompt = ChatPromptTemplate.from_template("Context: {context}\\nQuestion: {question}")
            chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()

    Async:
        ``ainvoke``, ``aadd_documents`` and ``adelete`` run in a worker thread, so the event loop is
        never blocked.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: DocumentStore
    """Where documents live and are searched; shared, not copied."""
    k: int = Field(default=4, ge=1)
    """Documents returned per query (``invoke(query, k=...)`` overrides it)."""
    filter: dict[str, Any] | None = None
    """Metadata filter applied before scoring (``invoke(query, filter=...)`` overrides it)."""
    search_type: Literal["similarity", "mmr"] = "similarity"
    """``"similarity"``: the ``k`` best by MaxSim; ``"mmr"``: maximal marginal relevance among the
    ``fetch_k`` best (options ``fetch_k`` and ``lambda_mult`` in ``search_kwargs`` or ``invoke``)."""
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Further search options: the store's own (``store.search_options``), and ``fetch_k`` /
    ``lambda_mult`` with ``search_type="mmr"``; ``k`` and ``filter`` here override the fields above."""
    score_key: str | None = "score"
    """Metadata key that receives the MaxSim score (None: leave metadata as stored); the same key as the
    reranker's. For a score in [0, 1] use :class:`RelevanceScale` (``relevance(query, score)``)."""

    _scale: RelevanceScale = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        # Checked before pydantic, so a bad argument is an InvalidInputError like everywhere else.
        if not isinstance(data.get("store"), DocumentStore):
            raise InvalidInputError(STORE_TYPE_MESSAGE.format(type(data.get("store")).__name__))
        if "k" in data:
            data["k"] = check_k(data["k"])
        if data.get("search_type", "similarity") not in ("similarity", "mmr"):
            raise InvalidInputError(f"search_type must be 'similarity' or 'mmr', got {data['search_type']!r}.")
        init_model(super(), data)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if not isinstance(self.store, DocumentStore):
            raise InvalidInputError(STORE_TYPE_MESSAGE.format(type(self.store).__name__))
        self._scale = RelevanceScale(self.store.encoder)
        self._search_arguments(self.search_kwargs)  # fail at construction, not at the first query

    # ------------------------------------------------------------------ construction and persistence
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
        store = new_store(
            model, index=index, device=device, index_options=index_options, encoder_options=encoder_options
        )
        store.add_texts(
            items,
            plain_metadatas(metadatas),
            fill_ids(ids, len(items)),
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
        return cls(store=store, **kwargs)

    @classmethod
    def from_documents(cls, documents: Sequence[Document], model: Model, **kwargs: Any) -> LateInteractionRetriever:
        """:meth:`from_texts` for ``Document`` objects; their ``id`` (when set) becomes the stored id."""
        documents = as_documents(documents)
        ids = kwargs.pop("ids", None)
        if ids is None and any(d.id for d in documents):
            ids = [d.id for d in documents]
        return cls.from_texts(
            [d.page_content for d in documents], model, [d.metadata for d in documents], ids, **kwargs
        )

    def save(self, path: str | Path) -> None:
        """Write the store to the folder ``path`` atomically (:meth:`LateInteractionStore.save`).

        The retriever's own fields (``k``, ``filter``, ...) are not saved: pass them to :meth:`load`.
        """
        save_store(self.store, path, "retriever", "")

    @classmethod
    def load(
        cls,
        path: str | Path,
        encoder: ColBERTEncoder | None = None,
        *,
        model: str | Path | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        allow_model_mismatch: bool = False,
        index_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> LateInteractionRetriever:
        """A retriever over the store saved at ``path`` (model fingerprint checked: ``ModelMismatchError``).

        ``encoder``, ``model``, ``device``, ``precision``, ``allow_model_mismatch`` and ``index_options``
        go to :meth:`LateInteractionStore.load`; ``kwargs`` are retriever fields (``k``, ``filter``, ...).
        """
        store = LateInteractionStore.load(
            path,
            encoder,
            model=model,
            device=device,
            precision=precision,
            allow_model_mismatch=allow_model_mismatch,
            **dict(index_options or {}),
        )
        return cls(store=store, **kwargs)

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
        documents = as_documents(documents)
        if ids is None:
            ids = [d.id for d in documents]
        return self.store.add_texts(
            [d.page_content for d in documents],
            [dict(d.metadata) for d in documents],
            fill_ids(ids, len(documents)),
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
        existing = existing_ids(self.store, ids)
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
        arguments = self._search_arguments({**self.search_kwargs, **overrides})
        if k is not None:
            arguments["k"] = check_k(k)
        k_, filter_ = arguments.pop("k"), arguments.pop("filter")
        if self.search_type == "mmr":
            fetch_k, lambda_mult = arguments.pop("fetch_k"), arguments.pop("lambda_mult")
            results = mmr_search(
                self.store,
                self._scale,
                query,
                k=k_,
                fetch_k=fetch_k,
                lambda_mult=lambda_mult,
                filter=filter_,
                options=arguments,
            )
        else:
            results = search(self.store, query, k_, filter_, arguments)
        return [to_document(r, self.score_key) for r in results]

    def _search_arguments(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Search arguments: the fields, then ``overrides``; names the store does not take raise."""
        overrides = {key: value for key, value in overrides.items() if key != "verbose"}  # a LangChain run option
        mmr = dict(_MMR_OPTIONS) if self.search_type == "mmr" else {}
        arguments: dict[str, Any] = {"k": self.k, "filter": self.filter, **mmr, **overrides}
        check_k(arguments["k"])
        if mmr:
            check_k(arguments["fetch_k"], "fetch_k")
            check_lambda(arguments["lambda_mult"])
        own = {key: value for key, value in arguments.items() if key not in ("k", "filter", *mmr)}
        check_search_options(self.store, own, "search_kwargs or invoke options")
        return arguments

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = type(self.store).__name__
        params["ls_embedding_model"] = self.store.encoder.name_or_path
        return params
