"""Relevance in [0, 1] and maximal marginal relevance for MaxSim scores.

Relevance. MaxSim sums one best cosine per query token, and ColBERT cosines are mostly high: on
SciFact with answerai-colbert-small-v1 a document that has nothing to do with the query still reaches
~0.8 of the ceiling, so ``score / query_length`` crowds into a narrow band near 1. The map here puts
each score between two reference points of the same query:

    relevance = clip((score - floor) / (ceiling - floor), 0, 1)

* ``floor``: the query's MaxSim against an empty document (only the special tokens and the document
  marker survive encoding), i.e. what a document earns by existing. Unrelated documents score about
  that; the map sends them to ~0.
* ``ceiling``: ``query_length``, the MaxSim of a document holding every query token vector exactly
  (each term is a cosine, at most 1).

It is monotone in the score for a given query, the same for every query length (both references scale
with the query) and model-specific only through the model's own floor. It costs one extra query
encoding (cached per text) and one tiny MaxSim.

MMR. :func:`mmr_select` feeds the query–document relevances above and the document–document
similarities to ``langchain_core.vectorstores.utils.maximal_marginal_relevance`` (which takes
vectors and compares them by cosine) through vectors built so that the cosines with the query are the
relevances exactly and the cosines between documents are the document similarities (exactly when the
similarities are jointly consistent, else their nearest consistent approximation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ..core.encoder import ColBERTEncoder
from ..core.errors import InvalidInputError
from ..core.scoring import maxsim


def relevance_score(score: float, query_length: int, floor: float = 0.0) -> float:
    """A MaxSim ``score`` as a relevance in [0, 1]: ``(score - floor) / (query_length - floor)``, clipped.

    ``floor`` is the query's score against an empty document (:meth:`RelevanceScale.floor`); with the
    default 0 this is the plain mean best cosine ``score / query_length``. The vector store applies it
    with the real floor for ``similarity_search_with_relevance_scores``; to compare the retriever's or
    the reranker's ``metadata["score"]`` the same way, use :meth:`RelevanceScale.relevance`.
    """
    if not isinstance(query_length, int) or isinstance(query_length, bool) or query_length < 1:
        raise InvalidInputError(f"query_length must be a positive int, got {query_length!r}.")
    if not floor < query_length:
        raise InvalidInputError(f"floor must be below query_length ({query_length}), got {floor!r}.")
    return min(1.0, max(0.0, (float(score) - floor) / (query_length - floor)))


class RelevanceScale:
    """Per-query references of :func:`relevance_score` for one encoder (thread-safe, small LRU cache).

    Example:
        >>> scale = RelevanceScale(store.encoder)
        >>> [scale.relevance("statins", d.metadata["score"]) for d in retriever.invoke("statins")]
    """

    def __init__(self, encoder: ColBERTEncoder, cache_size: int = 256) -> None:
        self.encoder = encoder
        self._empty: torch.Tensor | None = None
        self._floors: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def floor(self, query: str) -> tuple[float, int]:
        """``(floor, ceiling)`` of ``query``: its MaxSim against an empty document, and its token count."""
        with self._lock:
            if query in self._floors:
                self._floors.move_to_end(query)
                return self._floors[query]
        if self._empty is None:
            self._empty = self.encoder.encode_documents("")
        q = self.encoder.encode_queries(query)
        value = (float(maxsim([q], [self._empty])[0, 0]), int(q.shape[0]))
        with self._lock:
            self._floors[query] = value
            while len(self._floors) > self._cache_size:
                self._floors.popitem(last=False)
        return value

    def relevance(self, query: str, score: float) -> float:
        """``score`` (a MaxSim of ``query``) as a relevance in [0, 1]."""
        floor, ceiling = self.floor(query)
        return relevance_score(score, ceiling, floor)

    def document_similarity(self, documents: Sequence[torch.Tensor]) -> np.ndarray:
        """``(n, n)`` similarity of documents in [0, 1]: symmetrised document–document MaxSim.

        Each document is read as a query against the others and its score put on the same scale as a
        query's relevance (floor: its score against an empty document; ceiling: its token count, its
        score against itself); the two directions are averaged and the diagonal is 1.
        """
        if self._empty is None:
            self._empty = self.encoder.encode_documents("")
        n = len(documents)
        similarity = np.eye(n)
        if n < 2:
            return similarity
        scores = maxsim(list(documents), list(documents)).double().numpy()  # row i: document i as the query
        floors = maxsim(list(documents), [self._empty])[:, 0].double().numpy()
        lengths = np.array([max(int(d.shape[0]), 1) for d in documents], dtype=np.float64)
        scaled = np.clip((scores - floors[:, None]) / np.maximum(lengths - floors, 1e-9)[:, None], 0.0, 1.0)
        similarity = (scaled + scaled.T) / 2
        np.fill_diagonal(similarity, 1.0)
        return similarity


def mmr_select(
    relevance: Sequence[float] | np.ndarray, similarity: np.ndarray, k: int, lambda_mult: float
) -> list[int]:
    """Indices of ``k`` documents chosen by maximal marginal relevance, in selection order.

    Args:
        relevance: ``(n,)`` query–document relevance in [0, 1].
        similarity: ``(n, n)`` document–document similarity in [0, 1], symmetric, unit diagonal.
        k: documents to select.
        lambda_mult: 1 ranks by relevance alone, 0 by diversity alone.

    ``maximal_marginal_relevance`` compares vectors by cosine, so each document becomes a unit vector
    ``[r_i, sqrt(1 - r_i^2) w_i]`` and the query ``[1, 0, ...]``: its cosine with document i is r_i
    exactly, and two documents' cosine is ``r_i r_j + sqrt((1 - r_i^2)(1 - r_j^2)) w_i . w_j``, which
    equals ``similarity[i, j]`` when the ``w`` are the factors of the matrix solved from that equation
    (its negative eigenvalues, if any, are dropped: the nearest consistent similarity).
    """
    r = np.clip(np.asarray(relevance, dtype=np.float64), 0.0, 1.0 - 1e-6)
    n = r.shape[0]
    if n == 0:
        return []
    s = np.sqrt(1.0 - r * r)
    w = (np.asarray(similarity, dtype=np.float64) - np.outer(r, r)) / np.outer(s, s)
    w = (w + w.T) / 2
    np.fill_diagonal(w, 1.0)
    values, vectors = np.linalg.eigh(w)
    factors = vectors * np.sqrt(np.clip(values, 0.0, None))
    factors = np.hstack([factors, 1e-6 * np.eye(n)])  # no zero rows
    factors /= np.linalg.norm(factors, axis=1, keepdims=True)
    documents = np.hstack([r[:, None], s[:, None] * factors])
    query = np.zeros(documents.shape[1])
    query[0] = 1.0
    return [int(i) for i in maximal_marginal_relevance(query, documents.tolist(), lambda_mult=lambda_mult, k=k)]


def pooled_similarity(documents: Sequence[torch.Tensor]) -> np.ndarray:
    """``(n, n)`` cosine of the documents' mean token vectors, clipped to [0, 1] (the alternative to MaxSim)."""
    pooled = torch.stack([d.float().mean(0) for d in documents])
    pooled = torch.nn.functional.normalize(pooled, dim=1)
    similarity = (pooled @ pooled.T).clamp(0, 1).double().numpy()
    np.fill_diagonal(similarity, 1.0)
    return similarity
