"""``LateInteractionVectorStore``: LangChain's ``VectorStore`` interface over any late-interaction store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ..core._checks import check_ids, check_k, check_texts
from ..core.encoder import ColBERTEncoder
from ..core.errors import InvalidInputError, MissingDependencyError
from ..core.store import DocumentStore, LateInteractionStore
from ._common import (
    STORE_TYPE_MESSAGE,
    Model,
    all_ids,
    check_search_options,
    existing_ids,
    fill_ids,
    new_store,
    plain_metadatas,
    save_store,
    to_document,
)
from ._scores import RelevanceScale
from ._search import mmr_search, search


class LateInteractionVectorStore(VectorStore):
    """LangChain vector store over a late-interaction (ColBERT) store: exact, PLAID or Qdrant.

    Each document keeps one vector per token; a query is scored by MaxSim (for each query token the
    best document-token cosine, summed), the same score in every adapter of this package.

    Setup:
        .. code-block:: bash

            pip install -U 'lateint-plugins[langchain]'          # add ',qdrant' for Qdrant, ',faiss' for PLAID

    Key init args — indexing params:
        store: DocumentStore
            Where documents live and are searched (``LateInteractionStore`` with an exact or PLAID
            index, or ``QdrantLateInteractionStore``); shared, not copied.

    Key init args — client params (``from_texts``):
        embedding: str | Path | ColBERTEncoder
            The ColBERT model: Hub id, local folder or loaded encoder (a single-vector
            ``Embeddings`` cannot be used).
        index: str
            ``"exact"`` (default) or ``"plaid"`` (compressed, needs ``faiss-cpu``).

    Instantiate:
        .. code-block:: python

            from lateint_plugins.langchain import LateInteractionVectorStore

            vector_store = LateInteractionVectorStore.from_texts([], "answerdotai/answerai-colbert-small-v1")
            # or over any store: LateInteractionVectorStore(LateInteractionStore.from_pretrained(...))
            # or an existing Qdrant collection:
            # LateInteractionVectorStore.from_existing_collection("docs", model, url="http://localhost:6333")

    Add Documents:
        .. code-block:: python

            from langchain_core.documents import Document

            document_1 = Document(page_content="foo", metadata={"baz": "bar"})
            document_2 = Document(page_content="thud", metadata={"bar": "baz"})
            document_3 = Document(page_content="i will be deleted :(")
            vector_store.add_documents(documents=[document_1, document_2, document_3], ids=["1", "2", "3"])

    Delete Documents:
        .. code-block:: python

            vector_store.delete(ids=["3"])   # unknown ids are ignored; delete() removes everything

    Search:
        .. code-block:: python

            results = vector_store.similarity_search(query="thud", k=1)
            for doc in results:
                print(f"* {doc.page_content} [{doc.metadata}]")

        .. code-block:: none

            * thud [{'bar': 'baz'}]

    Search with filter:
        .. code-block:: python

            results = vector_store.similarity_search(query="thud", k=1, filter={"bar": "baz"})

    Search with score:
        .. code-block:: python

            results = vector_store.similarity_search_with_score(query="qux", k=1)   # raw MaxSim
            results = vector_store.similarity_search_with_relevance_scores("qux", k=1)  # in [0, 1]

    Max marginal relevance:
        .. code-block:: python

            results = vector_store.max_marginal_relevance_search("qux", k=2, fetch_k=20, lambda_mult=0.5)

    Use as Retriever:
        .. code-block:: python

            retriever = vector_store.as_retriever(search_type="mmr", search_kwargs={"k": 1, "fetch_k": 10})
            retriever.invoke("thud")
            # search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.5} also works

    Save and load (core stores; Qdrant persists on its own):
        .. code-block:: python

            vector_store.save("my_store")
            vector_store = LateInteractionVectorStore.load("my_store")

    Async:
        .. code-block:: python

            await vector_store.aadd_documents(documents=[document_1, document_2], ids=["1", "2"])
            await vector_store.adelete(ids=["2"])
            results = await vector_store.asimilarity_search(query="thud", k=1)
            results = await vector_store.amax_marginal_relevance_search(query="thud", k=1)

        LangChain's default async methods run these sync methods in a worker thread; the core store and
        encoder are thread-safe, so concurrent calls are too.

    Scores: :meth:`similarity_search_with_score` returns raw MaxSim (higher is better);
    relevance scores are ``(score - floor) / (query_length - floor)`` clipped to [0, 1], where
    ``floor`` is the query's MaxSim against an empty document (see ``_scores``). Adding a document
    whose id is already stored replaces it (upsert). Store-specific search options (those in
    ``store.search_options``, e.g. Qdrant's) pass through ``search_kwargs`` / keyword arguments.
    """

    def __init__(self, store: DocumentStore) -> None:
        if not isinstance(store, DocumentStore):
            raise InvalidInputError(STORE_TYPE_MESSAGE.format(type(store).__name__))
        self.store = store
        self._scale = RelevanceScale(store.encoder)

    @property
    def embeddings(self) -> None:
        """None: the store encodes with its own ColBERT encoder (``store.encoder``), not an ``Embeddings``."""
        return None

    # ------------------------------------------------------------------ construction and persistence
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
            new_store(
                embedding, index=index, device=device, index_options=index_options, encoder_options=encoder_options
            )
        )
        store.add_texts(texts, metadatas, ids=ids, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return store

    def save(self, path: str | Path) -> None:
        """Write the store to the folder ``path`` atomically (:meth:`LateInteractionStore.save`)."""
        save_store(self.store, path, "vector store", ": reopen it with from_existing_collection")

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
        **index_options: Any,
    ) -> LateInteractionVectorStore:
        """A vector store over the store saved at ``path``; the arguments are :meth:`LateInteractionStore.load`'s.

        The model's fingerprint must match the one recorded at save time (else ``ModelMismatchError``).
        """
        return cls(
            LateInteractionStore.load(
                path,
                encoder,
                model=model,
                device=device,
                precision=precision,
                allow_model_mismatch=allow_model_mismatch,
                **index_options,
            )
        )

    @classmethod
    def from_existing_collection(
        cls,
        collection_name: str,
        embedding: Model,
        *,
        client: Any = None,
        location: str | None = None,
        url: str | None = None,
        path: str | Path | None = None,
        api_key: str | None = None,
        device: str | torch.device | None = None,
        encoder_options: Mapping[str, Any] | None = None,
        **store_options: Any,
    ) -> LateInteractionVectorStore:
        """A vector store over an existing Qdrant collection written by ``QdrantLateInteractionStore``.

        Args:
            collection_name: the collection; it must exist (else ``CollectionNotFoundError``) and have
                been written with the same model (else ``ModelMismatchError``).
            embedding: the ColBERT model (Hub id, folder or loaded encoder).
            client: a ``QdrantClient`` to use; otherwise one is made from ``location`` (e.g.
                ``":memory:"``), ``url`` (+ ``api_key``) or ``path``.
            device, encoder_options: for loading ``embedding`` when it is a name or folder.
            **store_options: ``QdrantLateInteractionStore`` options (``mode``, ``candidate_depth``, ...).
        """
        try:
            from qdrant_client import QdrantClient

            from ..qdrant import QdrantLateInteractionStore
        except ImportError as exc:
            raise MissingDependencyError(
                f"from_existing_collection needs qdrant-client ({exc}). "
                "Install it with: pip install 'lateint-plugins[qdrant]'"
            ) from exc
        if client is None:
            given = {"location": location, "url": url, "path": path}
            if sum(v is not None for v in given.values()) != 1:
                raise InvalidInputError(
                    f"from_existing_collection needs client= or exactly one of location=, url=, path=; got "
                    f"{ {k: v for k, v in given.items() if v is not None} }."
                )
            client = QdrantClient(location=location, url=url, path=None if path is None else str(path), api_key=api_key)
        elif any(v is not None for v in (location, url, path, api_key)):
            raise InvalidInputError("pass either client= or location= / url= / path= / api_key=, not both.")
        if isinstance(embedding, ColBERTEncoder):
            if encoder_options:
                raise InvalidInputError("encoder_options only apply when embedding is a checkpoint name or folder.")
            encoder = embedding
        elif isinstance(embedding, (str, Path)):
            encoder = ColBERTEncoder.from_pretrained(embedding, device=device, **dict(encoder_options or {}))
        else:
            raise InvalidInputError(
                f"embedding must be a Hub id, a local checkpoint folder or a ColBERTEncoder, got "
                f"{type(embedding).__name__}."
            )
        store_options.setdefault("device", device)
        return cls(QdrantLateInteractionStore(client, collection_name, encoder, create=False, **store_options))

    # ------------------------------------------------------------------ documents
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
            plain_metadatas(metadatas),
            fill_ids(ids, len(items)),
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            replace=True,
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the stored documents among ``ids`` (others are ignored), or every document when ``ids``
        is None (LangChain's contract). Returns True."""
        if kwargs:
            raise InvalidInputError(f"Unknown option(s) {sorted(kwargs)} for delete; it takes ids only.")
        targets = all_ids(self.store) if ids is None else existing_ids(self.store, ids)
        if targets:
            self.store.delete(targets)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Stored documents with these ids, in the order asked; unknown ids are skipped."""
        return [to_document(r) for r in self.store.get(check_ids(ids, "ids", unique=False))]

    # ------------------------------------------------------------------ search
    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` best documents for ``query``; ``filter``: a metadata filter; ``kwargs``: store options."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` best documents for ``query`` with their MaxSim scores, best first."""
        options = self._options(kwargs)
        return [(to_document(r), r.score) for r in search(self.store, query, k, filter, options)]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        # The map depends on the query (its floor), so it cannot be a function of the score alone.
        hits = self.similarity_search_with_score(query, k, **kwargs)
        return [(doc, self._scale.relevance(query, score)) for doc, score in hits]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        raise NotImplementedError(
            "LateInteractionVectorStore's relevance depends on the query as well as the score; use "
            "similarity_search_with_relevance_scores (or RelevanceScale(store.encoder).relevance(query, score))."
        )

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents among the ``fetch_k`` best, relevant to ``query`` and different from each other.

        Relevance is MaxSim on the relevance scale; the similarity of two documents is their symmetrised
        document–document MaxSim on the same scale; the selection is LangChain's
        ``maximal_marginal_relevance`` (``lambda_mult``: 1 relevance only, 0 diversity only).
        Documents are returned in selection order.
        """
        options = self._options(kwargs)
        results = mmr_search(
            self.store,
            self._scale,
            query,
            k=check_k(k),
            fetch_k=fetch_k,
            lambda_mult=lambda_mult,
            filter=filter,
            options=options,
        )
        return [to_document(r) for r in results]

    def _options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return check_search_options(self.store, kwargs, "search option")
