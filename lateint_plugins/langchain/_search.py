"""The searches the retriever and the vector store share: plain, with relevance, and MMR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core._checks import check_k, check_text
from ..core.errors import InvalidInputError
from ..core.store import DocumentStore, SearchResult
from ._scores import RelevanceScale, mmr_select


def check_lambda(lambda_mult: object) -> float:
    """``lambda_mult`` as a float in [0, 1] (else an error that names it)."""
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, (int, float)) or not 0 <= lambda_mult <= 1:
        raise InvalidInputError(f"lambda_mult must be a number in [0, 1] (1: relevance only), got {lambda_mult!r}.")
    return float(lambda_mult)


def search(
    store: DocumentStore, query: str, k: int, filter: Mapping[str, Any] | None, options: Mapping[str, Any]
) -> list[SearchResult]:
    """``store.search`` with the arguments checked first (``options``: the store's own, already checked)."""
    check_text(query, "query")
    check_k(k)
    return store.search(query, k=k, filter=filter, **options)


def mmr_search(
    store: DocumentStore,
    scale: RelevanceScale,
    query: str,
    *,
    k: int,
    fetch_k: int,
    lambda_mult: float,
    filter: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> list[SearchResult]:
    """``k`` of the best ``fetch_k`` documents for ``query``, chosen by maximal marginal relevance.

    Relevance is the MaxSim score on :class:`RelevanceScale`'s [0, 1] scale; the similarity of two
    candidates is their symmetrised document–document MaxSim on the same scale, from token vectors
    re-encoded here (any store, whatever it keeps). Results keep their MaxSim scores, in MMR order.
    """
    check_k(fetch_k, "fetch_k")
    lambda_mult = check_lambda(lambda_mult)
    candidates = search(store, query, max(check_k(k), fetch_k), filter, options)
    if len(candidates) <= 1:
        return candidates[:k]
    floor, ceiling = scale.references(query)
    relevance = [min(1.0, max(0.0, (r.score - floor) / (ceiling - floor))) for r in candidates]
    vectors = scale.encoder.encode_documents([r.text for r in candidates])
    chosen = mmr_select(relevance, scale.document_similarity(vectors), k, lambda_mult)
    return [candidates[i] for i in chosen]
