"""MaxSim on hand-computed cases, every input form, chunking, and against a plain-loop oracle."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import torch
from lateint_plugins.core import scoring
from lateint_plugins.core.errors import DimensionMismatchError, InvalidInputError
from lateint_plugins.core.scoring import maxsim, segment_max


def loop_maxsim(query: torch.Tensor, doc: torch.Tensor) -> float:
    """The definition, written as plainly as possible."""
    total = 0.0
    for q in query:
        total += max(float(q @ d) for d in doc) if len(doc) else 0.0
    return total


def test_hand_computed_two_documents() -> None:
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    docs = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8], [-1.0, 0.0]])]
    # doc 0: token 1 -> max(1) = 1; token 2 -> max(0) = 0; total 1.
    # doc 1: token 1 -> max(0.6, -1) = 0.6; token 2 -> max(0.8, 0) = 0.8; total 1.4.
    torch.testing.assert_close(maxsim(q, docs), torch.tensor([[1.0, 1.4]]))


def test_padding_never_beats_negative_similarity() -> None:
    q = torch.tensor([[[1.0, 0.0]]])
    # The only real token has similarity -1; the zero pad would give 0 if it were allowed to win.
    d = torch.tensor([[[-1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    torch.testing.assert_close(maxsim(q, d, documents_mask=mask), torch.tensor([[-1.0]]))
    torch.testing.assert_close(maxsim(q, d), torch.tensor([[0.0]]))  # unmasked, the zero vector is a token


def test_query_padding_adds_nothing() -> None:
    q = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    d = [torch.tensor([[0.5, 0.5]])]
    torch.testing.assert_close(maxsim(q, d, queries_mask=torch.tensor([[True, False]])), torch.tensor([[0.5]]))


def test_empty_inputs() -> None:
    q = torch.randn(2, 3, 4)
    assert maxsim(q, []).shape == (2, 0)
    assert maxsim([], [torch.randn(3, 4)]).shape == (0, 1)
    # A document (or query) with no tokens scores 0.
    scores = maxsim(q, [torch.zeros(0, 4), torch.randn(2, 4)])
    assert scores[:, 0].tolist() == [0.0, 0.0]
    assert maxsim([torch.zeros(0, 4)], [torch.randn(2, 4)]).tolist() == [[0.0]]


def _random_case(seed: int, n_queries: int = 3, n_docs: int = 7, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    queries = [torch.randn(int(n), dim, generator=g) for n in torch.randint(1, 6, (n_queries,), generator=g)]
    docs = [torch.randn(int(n), dim, generator=g) for n in torch.randint(1, 9, (n_docs,), generator=g)]
    return queries, docs


def _pad(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(x) for x in items)
    out = torch.full((len(items), length, items[0].shape[1]), 7.0)  # junk in padding on purpose
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for i, x in enumerate(items):
        out[i, : len(x)] = x
        mask[i, : len(x)] = True
    return out, mask


@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_oracle_and_all_input_forms_agree(seed: int) -> None:
    queries, docs = _random_case(seed)
    expected = torch.tensor([[loop_maxsim(q, d) for d in docs] for q in queries])
    ragged = maxsim(queries, docs)
    torch.testing.assert_close(ragged, expected, rtol=1e-5, atol=1e-5)

    q_pad, q_mask = _pad(queries)
    d_pad, d_mask = _pad(docs)
    torch.testing.assert_close(maxsim(q_pad, d_pad, queries_mask=q_mask, documents_mask=d_mask), ragged)
    packed = torch.cat(docs)
    torch.testing.assert_close(maxsim(queries, packed, documents_lengths=[len(d) for d in docs]), ragged)
    numpy_docs = [d.numpy() for d in docs]
    torch.testing.assert_close(maxsim(queries, numpy_docs), ragged)


@pytest.mark.parametrize("max_chunk_bytes", [1, 64, 500, 10_000])
def test_chunked_equals_unchunked(max_chunk_bytes: int) -> None:
    queries, docs = _random_case(11, n_queries=4, n_docs=25)
    torch.testing.assert_close(maxsim(queries, docs, max_chunk_bytes=max_chunk_bytes), maxsim(queries, docs))


def test_many_query_rows_are_chunked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    queries, docs = _random_case(12, n_queries=9, n_docs=5)
    expected = maxsim(queries, docs)
    monkeypatch.setattr(scoring, "_ROWS_PER_CHUNK", 4)
    torch.testing.assert_close(maxsim(queries, docs), expected)


def test_half_precision_input_accumulates_in_float32() -> None:
    queries, docs = _random_case(13)
    scores = maxsim([q.half() for q in queries], [d.half() for d in docs])
    assert scores.dtype == torch.float32
    expected = maxsim([q.half().float() for q in queries], [d.half().float() for d in docs])
    torch.testing.assert_close(scores, expected)


def test_bad_input_raises_typed_errors() -> None:
    with pytest.raises(DimensionMismatchError, match="dimension"):
        maxsim([torch.randn(2, 4)], [torch.randn(3, 5)])
    with pytest.raises(DimensionMismatchError):
        maxsim([torch.randn(2, 4)], [torch.randn(3, 4), torch.randn(3, 5)])
    with pytest.raises(InvalidInputError, match="documents_mask"):
        maxsim(torch.randn(1, 2, 4), torch.randn(1, 3, 4), documents_mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="documents_lengths"):
        maxsim([torch.randn(2, 4)], torch.randn(5, 4), documents_lengths=[2, 2])
    with pytest.raises(InvalidInputError, match="2-D"):
        maxsim([torch.randn(2, 4)], [torch.randn(4)])
    with pytest.raises(InvalidInputError):
        maxsim([[1.0, 2.0]], [torch.randn(3, 2)])  # type: ignore[list-item]


@pytest.mark.parametrize("lengths", [[3, 1, 4], [0, 2, 0, 0, 3, 0], [0, 0], [5]])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_segment_max_matches_a_loop_empty_runs_included(lengths: list[int], requires_grad: bool) -> None:
    # requires_grad takes the scatter path (the one CUDA uses), otherwise NumPy's reduceat.
    values = torch.randn(3, sum(lengths), generator=torch.Generator().manual_seed(len(lengths)))
    values.requires_grad_(requires_grad)
    bounds = np.cumsum([0, *lengths])
    want = torch.tensor(
        [[float(row[a:b].max()) if b > a else -7.0 for a, b in itertools.pairwise(bounds)] for row in values.detach()]
    )
    got = segment_max(values, torch.tensor(lengths), empty=-7.0)
    assert got.shape == (3, len(lengths))
    torch.testing.assert_close(got.detach(), want)


def test_docstring_example() -> None:
    failures, _ = doctest.testmod(scoring, extraglobs={"torch": torch}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    queries, docs = _random_case(14, n_queries=4, n_docs=40)
    cpu = maxsim(queries, docs)
    gpu = maxsim([q.cuda() for q in queries], docs, device="cuda", max_chunk_bytes=4096)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    half = maxsim([q.cuda().half() for q in queries], [d.half() for d in docs], device="cuda")
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.cpu(), cpu, rtol=2e-2, atol=2e-2)


def test_numpy_queries() -> None:
    queries, docs = _random_case(15)
    torch.testing.assert_close(maxsim([np.asarray(q) for q in queries], docs), maxsim(queries, docs))
