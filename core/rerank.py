"""Index-free reranking: score candidates you already have with the same MaxSim as the indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .encoder import ColBERTEncoder
from .errors import InvalidInputError
from .scoring import maxsim

__all__ = ["RerankResult", "rerank"]


@dataclass(frozen=True)
class RerankResult:
    """A candidate after reranking: its position in the input, MaxSim score and text."""

    index: int
    score: float
    text: str


def rerank(
    query: str,
    documents: Sequence[str],
    k: int | None = None,
    *,
    encoder: ColBERTEncoder,
    batch_size: int = 32,
    document_embeddings: Sequence[torch.Tensor] | None = None,
) -> list[RerankResult]:
    """Order ``documents`` by MaxSim against ``query``, best first.

    Args:
        query: the query text.
        documents: candidate texts (e.g. BM25's top 100).
        k: keep the best ``k`` (default: all).
        encoder: the ColBERT encoder.
        batch_size: documents per encoder batch.
        document_embeddings: precomputed ``(n_tokens, dim)`` matrices for ``documents`` (skips encoding).

    Returns:
        ``RerankResult`` items; ``index`` points back into ``documents``.
    """
    if isinstance(documents, str):
        raise InvalidInputError("documents must be a list of str; wrap a single document in a list.")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise InvalidInputError(f"k must be a positive int or None, got {k!r}.")
    documents = list(documents)
    if not documents:
        return []
    if document_embeddings is None:
        document_embeddings = encoder.encode_documents(documents, batch_size=batch_size)
    elif len(document_embeddings) != len(documents):
        raise InvalidInputError(
            f"Got {len(documents)} documents but {len(document_embeddings)} document_embeddings; pass one per document."
        )
    query_embeddings = encoder.encode_queries(query)
    scores = maxsim(query_embeddings[None], list(document_embeddings), device=encoder.device)[0].cpu()
    order = torch.argsort(scores, descending=True, stable=True)[:k]
    return [RerankResult(int(i), float(scores[i]), documents[i]) for i in order]
