"""``LateInteractionReranker``: a ColBERT ``BaseDocumentCompressor`` (reorders any retriever's candidates)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch
from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from ..core._checks import check_k, check_text, check_texts
from ..core.encoder import ColBERTEncoder
from ..core.errors import InvalidInputError
from ..core.rerank import rerank
from ._common import as_documents, init_model


class LateInteractionReranker(BaseDocumentCompressor):
    """ColBERT reranker: reorders candidate documents by MaxSim against the query.

    Use it behind a cheap first stage (BM25, a dense retriever) in ``ContextualCompressionRetriever``.
    Scores come from :func:`lateint_plugins.core.rerank.rerank`, the same MaxSim the indexes use, so
    a reranked score equals the score a store with the same model would give. Each returned
    ``Document`` keeps its ``id`` and metadata and gains ``metadata[score_key]``.

    Setup:
        .. code-block:: bash

            pip install -U 'lateint-plugins[langchain]'

    Key init args:
        model: str | None
            Hub id or local checkpoint folder (ignored when ``encoder`` is given).
        encoder: ColBERTEncoder | None
            An already loaded encoder to share (e.g. ``store.encoder``).
        top_n: int | None
            Documents kept per query (None: all, reordered).
        device: str | None
            Where the encoder runs (default: CUDA, then MPS, then CPU).
        document_cache: MutableMapping[str, Tensor] | None
            ``text -> (n_tokens, dim)`` token matrices; candidates found there are not re-encoded and
            misses are added, so documents that come back across queries are encoded once (a ``dict``
            or any bounded mapping, e.g. an LRU cache).

    Instantiate:
        .. code-block:: python

            from lateint_plugins.langchain import LateInteractionReranker

            reranker = LateInteractionReranker(model="answerdotai/answerai-colbert-small-v1", top_n=5)

    Usage:
        .. code-block:: python

            reranked = reranker.compress_documents(documents, "how do statins work?")
            reranked[0].metadata["score"]   # MaxSim

    Use within a chain:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever

            retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=bm25)
            retriever.invoke("how do statins work?")

    Async:
        .. code-block:: python

            reranked = await reranker.acompress_documents(documents, "how do statins work?")  # worker thread
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
    For a score in [0, 1] use :class:`RelevanceScale` (``relevance(query, score)``)."""

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
        init_model(super(), data)
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
        documents = as_documents(documents)
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
