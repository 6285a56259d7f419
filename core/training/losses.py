"""Training losses over MaxSim scores: tensors in, a scalar loss out (no model, no I/O).

Scores follow :func:`lateint_plugins.core.scoring.maxsim`: for each query token the best document
token similarity, summed over query tokens. Padding and skiplisted document tokens are sent to the
dtype minimum before the max (multiplying by zero would let padding win over negative
similarities), and query positions outside ``query_mask`` add nothing. Everything is accumulated in
float32 whatever the autocast dtype of the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError

__all__ = ["colbert_scores", "contrastive_loss", "distillation_loss", "grouped_scores"]


def colbert_scores(
    queries: torch.Tensor, query_mask: torch.Tensor, documents: torch.Tensor, document_mask: torch.Tensor
) -> torch.Tensor:
    """MaxSim of every query against every document: ``(n_queries, n_documents)`` float32.

    Args:
        queries: ``(n_queries, q_len, dim)`` L2-normalised token vectors.
        query_mask: ``(n_queries, q_len)`` bool, the query positions that count.
        documents: ``(n_documents, d_len, dim)`` L2-normalised token vectors.
        document_mask: ``(n_documents, d_len)`` bool, the document tokens that may be matched.
    """
    _check_pair(queries, query_mask, "queries")
    _check_pair(documents, document_mask, "documents")
    sim = torch.einsum("qid,njd->qnij", queries.float(), documents.float())
    sim = sim.masked_fill(~document_mask[None, :, None, :], torch.finfo(sim.dtype).min)
    best = sim.max(dim=-1).values  # (n_queries, n_documents, q_len)
    return (best * query_mask[:, None, :].to(best.dtype)).sum(-1)


def grouped_scores(
    queries: torch.Tensor, query_mask: torch.Tensor, documents: torch.Tensor, document_mask: torch.Tensor
) -> torch.Tensor:
    """MaxSim of each query against its own documents only: ``(n_queries, n_way)`` float32.

    Args:
        queries: ``(n_queries, q_len, dim)``; ``query_mask``: ``(n_queries, q_len)`` bool.
        documents: ``(n_queries, n_way, d_len, dim)``; ``document_mask``: ``(n_queries, n_way, d_len)`` bool.
    """
    _check_pair(queries, query_mask, "queries")
    if documents.ndim != 4 or documents.shape[0] != queries.shape[0] or document_mask.shape != documents.shape[:3]:
        raise InvalidInputError(
            f"documents: expected (n_queries={queries.shape[0]}, n_way, d_len, dim) with a mask of its first three "
            f"sizes, got {tuple(documents.shape)} and a mask of {tuple(document_mask.shape)}."
        )
    sim = torch.einsum("qid,qnjd->qnij", queries.float(), documents.float())
    sim = sim.masked_fill(~document_mask[:, :, None, :], torch.finfo(sim.dtype).min)
    best = sim.max(dim=-1).values
    return (best * query_mask[:, None, :].to(best.dtype)).sum(-1)


def contrastive_loss(
    scores: torch.Tensor, targets: torch.Tensor, *, temperature: float = 1.0, ignore: torch.Tensor | None = None
) -> torch.Tensor:
    """In-batch contrastive loss: cross-entropy of each query's positive against every document in the batch.

    Args:
        scores: ``(n_queries, n_documents)`` MaxSim scores (positives, hard negatives and the other
            queries' documents).
        targets: ``(n_queries,)`` long, the column of each query's positive.
        temperature: scores are divided by it (1.0, PyLate's default, suits MaxSim sums of up to
            ``query_length`` cosine similarities).
        ignore: ``(n_queries, n_documents)`` bool, columns left out of a row's softmax (another
            positive of the same query in the batch is not a negative).
    """
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise InvalidInputError(f"temperature must be a number > 0, got {temperature!r}.")
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise InvalidInputError(
            f"scores must be (n_queries, n_documents) and targets (n_queries,), got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}."
        )
    logits = scores.float() / temperature
    if ignore is not None:
        keep_target = F.one_hot(targets, logits.shape[1]).bool()
        logits = logits.masked_fill(ignore & ~keep_target, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, targets)


def distillation_loss(scores: torch.Tensor, teacher: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """KL divergence from the teacher's score distribution to the student's, per query (ColBERTv2).

    Args:
        scores: ``(n_queries, n_way)`` student MaxSim scores of each query's documents.
        teacher: ``(n_queries, n_way)`` teacher scores (logits) of the same documents.
        normalize: min-max scale the student's scores per query first, as PyLate's ``Distillation``
            does (MaxSim sums are on another scale than cross-encoder logits).
    """
    if scores.shape != teacher.shape or scores.ndim != 2:
        raise InvalidInputError(
            f"teacher scores must match the student's (n_queries, n_way) {tuple(scores.shape)}, got "
            f"{tuple(teacher.shape)}."
        )
    student = scores.float()
    if normalize:
        low = student.min(dim=1, keepdim=True).values
        high = student.max(dim=1, keepdim=True).values
        student = (student - low) / (high - low + 1e-8)
    return F.kl_div(
        F.log_softmax(student, dim=-1), F.log_softmax(teacher.float(), dim=-1), reduction="batchmean", log_target=True
    )


def _check_pair(x: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    if x.ndim != 3 or mask.shape != x.shape[:2] or mask.dtype != torch.bool:
        raise InvalidInputError(
            f"{name}: expected (n, length, dim) vectors and an (n, length) bool mask, got {tuple(x.shape)} and "
            f"{tuple(mask.shape)} {mask.dtype}."
        )
