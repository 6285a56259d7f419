"""Index-free reranking: score candidates you already have with the same MaxSim as the indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._checks import check_encoder, check_k, check_matrices, check_matrix, check_text, check_texts
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
        query: the query text (not empty).
        documents: candidate texts (e.g. BM25's top 100); empty ones are legal.
        k: keep the best ``k`` (default: all).
        encoder: the ColBERT encoder.
        batch_size: documents per encoder batch.
        document_embeddings: precomputed ``(n_tokens, dim)`` matrices for ``documents`` (skips encoding);
            finite floats of the encoder's width (a matrix with no rows scores 0).

    Raises:
        InvalidInputError: a bad argument, named as ``query``, ``documents[i]``, ``k`` or
            ``document_embeddings[i]`` (NaN/inf, integer dtype, wrong rank or width included).

    Returns:
        ``RerankResult`` items; ``index`` points back into ``documents``.
    """
    encoder = check_encoder(encoder)
    query = check_text(query, "query")
    documents = check_texts(documents, "documents")
    if k is not None:
        k = check_k(k)
    if not documents:
        return []
    if document_embeddings is None:
        document_embeddings = encoder.encode_documents(documents, batch_size=batch_size)
    else:
        items = check_matrices(document_embeddings, "document_embeddings")
        if len(items) != len(documents):
            raise InvalidInputError(
                f"Got {len(documents)} documents but {len(items)} document_embeddings; pass one per document."
            )
        # A document with no tokens scores 0, as in maxsim.
        document_embeddings = [
            check_matrix(e, f"document_embeddings[{i}]", encoder.dim, allow_empty=True) for i, e in enumerate(items)
        ]
    query_embeddings = encoder.encode_queries(query)
    scores = maxsim(query_embeddings[None], list(document_embeddings), device=encoder.device)[0].cpu()
    order = torch.argsort(scores, descending=True, stable=True)[:k]
    return [RerankResult(int(i), float(scores[i]), documents[i]) for i in order]
