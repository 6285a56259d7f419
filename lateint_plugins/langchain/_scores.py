"""Relevance in [0, 1] and maximal marginal relevance for MaxSim scores.

Relevance. MaxSim sums one best cosine per query token, and ColBERT cosines are mostly high: with
answerai-colbert-small-v1 an *empty* document already scores 0.90 of ``query_length`` (sd 0.02 over
100 SciFact queries), so ``score / query_length`` crowds into a narrow band near 1. The map here puts
each score between two reference points of the same query:

    relevance = clip((score - floor) / (ceiling - floor), 0, 1)

* ``floor``: the query's MaxSim against an empty document (only the special tokens and the document
  marker survive encoding): what a document earns by existing. Unrelated documents land near 0.
* ``ceiling``: the number of query vectors (``query_length`` with [MASK] expansion), the MaxSim of a
  document holding every query vector exactly (each term is a cosine, at most 1).

It is monotone in the score for a given query and does not depend on the query's length (both
references scale with it); the only model-specific quantity is the model's own floor. It costs one
extra query encoding (cached per text) and one tiny MaxSim.

Measured on SciFact test (100 queries with qrels, their 113 relevant documents + 300 random others,
answerai-colbert-small-v1; relevant vs non-relevant (query, document) pairs, p10 / p50 / p90):

=====================================  =================  =================  ==========  ==========
map                                    relevant           non-relevant       pooled AUC  best acc.
=====================================  =================  =================  ==========  ==========
``(1 + s / L) / 2`` (before)           0.964 0.976 0.984  0.942 0.958 0.966  0.942       0.869
``(s - floor) / (L - floor)`` (this)   0.280 0.526 0.706  0.025 0.110 0.206  0.984       0.946
same, ceiling = self-score             0.306 0.570 0.729  0.028 0.119 0.219  0.986       0.950
=====================================  =================  =================  ==========  ==========

(pooled AUC: relevant vs non-relevant pairs of all queries together, i.e. how well one global
threshold works; best acc.: balanced accuracy of the best global threshold, 0.25 here.) The
query-as-document self-score ceiling is marginally better but needs another encoding per query.

MMR. :func:`mmr_select` feeds the query–document relevances above and the document–document
similarities to ``langchain_core.vectorstores.utils.maximal_marginal_relevance`` (which takes
vectors and compares them by cosine) through vectors built so that the cosines with the query are the
relevances exactly and the cosines between documents are the document similarities (exactly when the
similarities are jointly consistent, else their nearest consistent approximation). The document
similarity is document–document MaxSim on the same floor/ceiling scale, symmetrised; the cosine of
pooled mean vectors was tried and rejected: it crowds near 1 (0.92 between a statin abstract and the
Eiffel Tower), so MMR with ``lambda_mult=0.5`` still returned three near-duplicates, where the MaxSim
similarity (0.95-0.98 between the duplicates, 0.0-0.37 to the rest) returns one.
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


def relevance_score(score: float, query_length: int, floor: float) -> float:
    """A MaxSim ``score`` as a relevance in [0, 1]: ``(score - floor) / (query_length - floor)``, clipped.

    ``floor`` is the query's MaxSim against an empty document (:meth:`RelevanceScale.references` gives both
    references). It is required: earlier versions took ``(score, query_length)`` and returned
    ``(1 + score / query_length) / 2``, which crowds into 0.94-0.99 (see the module docstring). The
    vector store uses this for ``similarity_search_with_relevance_scores``; for the retriever's or the
    reranker's ``metadata["score"]``, :meth:`RelevanceScale.relevance` finds the floor itself.
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

    def references(self, query: str) -> tuple[float, int]:
        """``(floor, ceiling)`` of ``query``: its MaxSim against an empty document, and its token count."""
        with self._lock:
            if query in self._floors:
                self._floors.move_to_end(query)
                return self._floors[query]
        if self._empty is None:
            self._empty = self.encoder.encode_documents("")
        q = self.encoder.encode_queries(query)
        ceiling = int(q.shape[0])
        # Kept below the ceiling so that a degenerate model (an empty document matching every query
        # vector exactly) gives relevances of 0 or 1 rather than an error at search time.
        value = (min(float(maxsim([q], [self._empty])[0, 0]), ceiling - 1e-6), ceiling)
        with self._lock:
            self._floors[query] = value
            while len(self._floors) > self._cache_size:
                self._floors.popitem(last=False)
        return value

    def relevance(self, query: str, score: float) -> float:
        """``score`` (a MaxSim of ``query``) as a relevance in [0, 1]."""
        floor, ceiling = self.references(query)
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
