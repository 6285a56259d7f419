"""PLAIDIndex and the residual codec, checked against ExactIndex (the oracle) on seeded data."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from lateint_plugins.core import plaid
from lateint_plugins.core.codec import (
    CentroidGroups,
    QueryTables,
    ResidualCodec,
    assign,
    default_n_centroids,
    pool_tokens,
    train_codec,
)
from lateint_plugins.core.errors import CorruptIndexError, DimensionMismatchError, InvalidInputError
from lateint_plugins.core.index import ExactIndex, load_index
from lateint_plugins.core.ivf import InvertedLists
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig
from lateint_plugins.core.scoring import maxsim

DIM = 32


def clustered_corpus(n_docs: int = 400, seed: int = 0, shift: float = 0.0):
    """Documents built like real ColBERT output: tokens near a few topic centres, each with its own twist.

    Queries paraphrase one document's tokens, so the exact ranking has a clear head.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(48, DIM, generator=g) + shift, dim=-1)
    docs = []
    for _ in range(n_docs):
        n = int(torch.randint(8, 30, (1,), generator=g))
        topics = torch.randint(0, 48, (3,), generator=g)[torch.randint(0, 3, (n,), generator=g)]
        noise = 0.08 * torch.randn(n, DIM, generator=g)
        docs.append(torch.nn.functional.normalize(centres[topics] + noise, dim=-1))
    ids = [f"d{seed}-{i}" for i in range(n_docs)]
    meta = [{"shard": i % 4} for i in range(n_docs)]
    targets = torch.randint(0, n_docs, (40,), generator=g)
    queries = []
    for t in targets.tolist():
        rows = torch.randint(0, len(docs[t]), (6,), generator=g)
        queries.append(torch.nn.functional.normalize(docs[t][rows] + 0.05 * torch.randn(6, DIM, generator=g), dim=-1))
    return ids, docs, meta, queries


@pytest.fixture(scope="module")
def corpus():
    return clustered_corpus()


@pytest.fixture(scope="module")
def exact(corpus) -> ExactIndex:
    ids, docs, meta, _ = corpus
    ix = ExactIndex(device="cpu")
    ix.add(ids, docs, meta)
    return ix


def recall_vs_exact(index, exact, queries, k=10, **search) -> float:
    got = index.search(queries, k=k, **search)
    want = exact.search(queries, k=k, **search)
    return float(np.mean([len({h.id for h in a} & {h.id for h in b}) / k for a, b in zip(got, want, strict=True)]))


# ---------------------------------------------------------------------- codec
@pytest.mark.parametrize("quantizer", ["pq", "scalar"])
def test_codec_round_trip_improves_with_bits(corpus, quantizer: str) -> None:
    _, docs, _, _ = corpus
    x = torch.cat(docs)
    quality = {}
    for nbits in (1, 2, 4):
        codec = train_codec(x, n_centroids=64, nbits=nbits, quantizer=quantizer)
        codes, packed = codec.compress(x)
        assert codes.shape == (len(x),) and packed.dtype == torch.uint8
        assert packed.shape == (len(x), DIM * nbits // 8) == (len(x), codec.bytes_per_token)
        restored = codec.decompress(codes, packed)
        torch.testing.assert_close(restored.norm(dim=-1), torch.ones(len(x)))
        quality[nbits] = float((restored * x).sum(-1).mean())
    assert 0.8 < quality[1] < quality[2] < quality[4] <= 1.0


@pytest.mark.parametrize("nbits", [4, 6])
def test_residual_quantiser_first_stage_decodes_alone_and_stages_add_accuracy(corpus, nbits: int) -> None:
    _, docs, _, queries = corpus
    x = torch.cat(docs)
    rq = train_codec(x, n_centroids=64, nbits=nbits, quantizer="rq")
    assert (rq.stages, rq.quantizer, rq.bytes_per_stage, rq.block_width) == (nbits // 2, "rq", DIM // 4, 4)
    codes, packed = rq.compress(x)
    assert packed.shape == (len(x), rq.bytes_per_token) == (len(x), DIM * nbits // 8)

    def error(codec: ResidualCodec, residuals: torch.Tensor) -> float:
        return float((1 - (codec.decompress(codes, residuals) * x).sum(-1)).mean())

    # The first j stages' bytes decode alone; each stage cuts what the ones before missed. The
    # first is as good as a one-stage 2-bit codec, two about as good as a one-stage 4-bit one.
    errors = [error(rq, packed[:, : j * rq.bytes_per_stage]) for j in range(1, rq.stages + 1)]
    assert all(later < earlier / 2.5 for earlier, later in itertools.pairwise(errors))
    two, four = train_codec(x, n_centroids=64, nbits=2), train_codec(x, n_centroids=64, nbits=4)
    assert errors[0] == pytest.approx(error(two, two.compress(x)[1]), rel=0.1)
    assert errors[1] == pytest.approx(error(four, four.compress(x)[1]), rel=0.3)
    # Each stage's bytes are its nearest codewords for what the stages before left (FAISS and torch agree).
    object.__setattr__(rq, "_pqs", None)
    assert torch.equal(rq.pack(x - rq.centroids[codes]), packed)
    # Lookup tables and similarities score the full codes and the first stage alike.
    tables = rq.query_tables(queries[0])
    for residuals in (packed, packed[:, : rq.bytes_per_stage]):
        want = queries[0] @ rq.decompress(codes, residuals).T
        torch.testing.assert_close(rq.similarities(queries[0], codes, residuals), want, atol=1e-5, rtol=1e-5)
        inverse_norms = 1 / rq._reconstruct(codes, residuals).norm(dim=1)
        torch.testing.assert_close(tables.token_scores(codes, residuals, inverse_norms), want.T, atol=1e-5, rtol=1e-5)


def test_scalar_codec_buckets_each_dimension_by_its_cutoffs(corpus) -> None:
    _, docs, _, _ = corpus
    x = torch.cat(docs)
    codec = train_codec(x, n_centroids=32, nbits=2, quantizer="scalar")
    assert codec.levels is not None and codec.levels.shape == (DIM, 4)
    residual = (x[:50] - codec.centroids[codec.compress(x[:50])[0]]) @ codec.rotation
    cutoffs = (codec.levels[:, 1:] + codec.levels[:, :-1]) / 2
    buckets = torch.stack([torch.bucketize(residual[:, d].contiguous(), cutoffs[d], right=True) for d in range(DIM)], 1)
    # 2 bits per dimension, four dimensions per byte, the first in the high bits
    expected = (buckets.reshape(50, -1, 4) * torch.tensor([64, 16, 4, 1])).sum(-1)
    assert torch.equal(codec.pack(x[:50] - codec.centroids[codec.compress(x[:50])[0]]).long(), expected)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_pq_codec_packs_each_block_as_its_nearest_codeword(corpus, nbits: int) -> None:
    _, docs, _, _ = corpus
    x = torch.cat(docs)
    codec = train_codec(x, n_centroids=32, nbits=nbits)
    residual = x[:200] - codec.centroids[codec.compress(x[:200])[0]]
    blocks = (residual @ codec.rotation).reshape(200, -1, 1, 8 // nbits)  # (n, blocks, 1, dims per byte)
    distances = ((blocks - codec.codebooks[None]) ** 2).sum(-1)  # (n, blocks, 256)
    packed = codec.pack(residual).long()
    assert packed.shape == distances.shape[:2]
    # The stored byte is the nearest codeword (up to float rounding between exact ties).
    chosen = distances.gather(-1, packed[..., None])[..., 0]
    torch.testing.assert_close(chosen, distances.amin(-1), atol=1e-6, rtol=0)
    assert (packed == distances.argmin(-1)).float().mean() > 0.999


def test_rotated_decompression_preserves_dot_products(corpus) -> None:
    _, docs, _, queries = corpus
    x = torch.cat(docs[:20])
    codec = train_codec(torch.cat(docs), n_centroids=32, nbits=2)
    codes, packed = codec.compress(x)
    plain = queries[0] @ codec.decompress(codes, packed).T
    rotated = codec.rotate(queries[0]) @ codec.decompress(codes, packed, rotated=True).T
    torch.testing.assert_close(plain, rotated, atol=1e-5, rtol=1e-5)


def test_similarities_equal_dot_products_with_the_decompressed_vectors(corpus, monkeypatch) -> None:
    _, docs, _, queries = corpus
    x = torch.cat(docs[:40])
    codec = train_codec(torch.cat(docs), n_centroids=32, nbits=2)
    codes, packed = codec.compress(x)
    monkeypatch.setattr("lateint_plugins.core.codec._SCORE_ROWS", 100)  # several blocks and a ragged last one
    want = queries[0] @ codec.decompress(codes, packed).T
    torch.testing.assert_close(codec.similarities(queries[0], codes, packed), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_token_scores_equal_dot_products_with_the_decompressed_vectors(corpus, nbits: int) -> None:
    _, docs, _, queries = corpus
    x = torch.cat(docs[:40])
    codec = train_codec(torch.cat(docs), n_centroids=32, nbits=nbits)
    codes, packed = codec.compress(x)

    def want_for(query: torch.Tensor) -> torch.Tensor:
        return codec.decompress(codes, packed) @ query.T

    want = want_for(queries[0])
    inverse_norms = codec.inverse_norms(codes, packed)
    tables = codec.query_tables(queries[0])
    torch.testing.assert_close(tables.token_scores(codes, packed, inverse_norms), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tables.centroid_scores(codes), codec.centroids[codes] @ queries[0].T)
    # A batch of queries: each token scored against the query its owner names.
    batch = torch.stack([queries[1], queries[0], queries[2]])
    owners = torch.arange(codes.numel()) % 3
    scores = codec.query_tables(batch).token_scores(codes, packed, inverse_norms, owners)
    for i in range(3):
        mine = owners == i
        torch.testing.assert_close(scores[mine], want_for(batch[i])[mine], atol=1e-5, rtol=1e-5)


def test_grouped_assignment_finds_the_nearest_centroid_almost_always() -> None:
    g = torch.Generator().manual_seed(0)
    centroids = torch.nn.functional.normalize(torch.randn(1024, 32, generator=g), dim=1)
    # Tokens near centroids, as in a trained index.
    x = torch.nn.functional.normalize(
        centroids[torch.randint(0, 1024, (5000,), generator=g)] + 0.05 * torch.randn(5000, 32, generator=g), dim=1
    )
    groups = CentroidGroups.fit(centroids)
    assert groups.centers.shape[0] == 32 and sorted(groups.members.tolist()) == list(range(1024))
    exact, grouped = assign(x, centroids), assign(x, centroids, groups)
    assert (grouped == exact).float().mean() >= 0.95
    # Misses are rare and cost little similarity on average; none can beat the exhaustive search.
    loss = (x * centroids[exact]).sum(1) - (x * centroids[grouped]).sum(1)
    assert loss.min() >= 0 and loss.mean() < 0.01
    # A few rows (one document's add) are assigned exhaustively: exactly the nearest, also for the
    # rows the grouped search missed.
    missed = (grouped != exact).nonzero().squeeze(1)
    assert 0 < missed.numel() < 512
    assert torch.equal(assign(x[missed], centroids, groups), exact[missed])


def test_codec_rejects_bad_settings() -> None:
    with pytest.raises(InvalidInputError, match="nbits"):
        PLAIDConfig(nbits=3)
    with pytest.raises(InvalidInputError, match="quantizer"):
        PLAIDConfig(quantizer="opq")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        ResidualCodec(torch.zeros(4, 6), torch.zeros(0), torch.eye(6), nbits=1)
    with pytest.raises(InvalidInputError, match="nbits"):
        PLAIDConfig(nbits=2, quantizer="rq")
    with pytest.raises(InvalidInputError, match="nbits=4"):
        ResidualCodec(torch.zeros(4, 8), torch.zeros(4, 256, 4), torch.eye(8), nbits=6, stages=2)
    with pytest.raises(InvalidInputError, match="n_full_scores"):
        SearchConfig(n_full_scores=0)
    assert default_n_centroids(1_221_388) == 4096 and default_n_centroids(10) == 16
    assert default_n_centroids(1_221_388, nbits=4) == 16384


# ---------------------------------------------------------------------- index vs oracle
@pytest.mark.parametrize(
    ("nbits", "quantizer", "floor"),
    [(1, "pq", 0.8), (2, "pq", 0.85), (4, "pq", 0.93), (4, "rq", 0.93), (6, "rq", 0.95)],
)
def test_recall_against_the_exact_oracle(corpus, exact, nbits: int, quantizer: str, floor: float) -> None:
    ids, docs, meta, queries = corpus
    config = PLAIDConfig(nbits=nbits, quantizer=quantizer)  # type: ignore[arg-type]
    ix = PLAIDIndex(config=config, device="cpu", search_config=SearchConfig(n_full_scores=128))
    ix.add(ids, docs, meta)
    assert recall_vs_exact(ix, exact, queries) >= floor
    hits = ix.search(queries[0], k=5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_residual_quantiser_refines_the_best_on_all_their_bytes(corpus, exact) -> None:
    ids, docs, meta, queries = corpus
    index = PLAIDIndex(config=PLAIDConfig(nbits=6, quantizer="rq", n_centroids=64), device="cpu")
    index.add(ids, docs, meta)
    codec = index.codec
    assert codec is not None and codec.stages == 3 and codec.bytes_per_stage == DIM // 4
    scores: dict[str, list[float]] = {}  # per document: MaxSim on its first stage, on all its stages
    for i, (c, r) in zip(ids, index.document_codes(ids), strict=True):
        scores[i] = [float(maxsim([queries[0]], [codec.decompress(c, r[:, :n])])[0, 0]) for n in (DIM // 4, r.shape[1])]
    first, full_scores = {i: s[0] for i, s in scores.items()}, {i: s[1] for i, s in scores.items()}
    everything = SearchConfig(n_full_scores=len(ids))  # every document reaches the exact stage
    index.search_config = everything
    plain = index.search(queries[0], k=10)
    assert [h.score for h in plain] == pytest.approx([full_scores[h.id] for h in plain], abs=1e-4)
    # n_refine: the exact stage on the first stage's bytes, the best n_refine again on all of them.
    index.search_config = dataclasses.replace(everything, n_refine=12)
    refined = index.search(queries[0], k=10)
    best_first = sorted(ids, key=lambda i: -first[i])[:12]
    assert {h.id for h in refined} <= set(best_first)
    assert [h.id for h in refined] == sorted(best_first, key=lambda i: -full_scores[i])[:10]
    assert [h.score for h in refined] == pytest.approx([full_scores[h.id] for h in refined], abs=1e-4)
    # With k above n_refine the rest keep their first-stage scores, after the refined ones.
    more = index.search(queries[0], k=20)
    assert [h.score for h in more[12:]] == pytest.approx([first[h.id] for h in more[12:]], abs=1e-4)
    # Refining two dozen keeps what scoring every candidate on all its bytes finds; the first stage
    # alone is a 2-bit code, well short of it.
    index.search_config = dataclasses.replace(everything, n_refine=24)
    with_refine = recall_vs_exact(index, exact, queries)
    index.search_config = everything
    assert with_refine >= recall_vs_exact(index, exact, queries) - 0.01
    two_bits = PLAIDIndex(config=PLAIDConfig(nbits=2, n_centroids=64), device="cpu", search_config=everything)
    two_bits.add(ids, docs, meta)
    assert with_refine >= recall_vs_exact(two_bits, exact, queries) + 0.04


def test_centroid_score_threshold_only_adds_centroids(corpus, exact) -> None:
    ids, docs, meta, queries = corpus
    narrow = SearchConfig(n_ivf_probe=1, n_centroid_interaction=1, n_full_scores=32)
    ix = PLAIDIndex(device="cpu", search_config=narrow)
    ix.add(ids, docs, meta)
    baseline = recall_vs_exact(ix, exact, queries)
    # A threshold below every score keeps every centroid in the centroid interaction (candidates
    # still come from the probed lists), so the approximate ranking can only get better.
    ix.search_config = SearchConfig(
        n_ivf_probe=1, n_centroid_interaction=1, n_full_scores=32, centroid_score_threshold=-1.0
    )
    assert recall_vs_exact(ix, exact, queries) > baseline


def test_full_precision_rescore_matches_exact(corpus, exact) -> None:
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(
        config=PLAIDConfig(nbits=1, keep_fp16=True),
        device="cpu",
        search_config=SearchConfig(n_full_scores=256, rescore=64),
    )
    ix.add(ids, docs, meta)
    got, want = ix.search(queries, k=10), exact.search(queries, k=10)
    assert recall_vs_exact(ix, exact, queries) >= 0.99
    for a, b in zip(got, want, strict=True):  # re-scored hits carry exact (fp16) scores
        common = {h.id: h.score for h in b}
        for h in a:
            if h.id in common:
                assert h.score == pytest.approx(common[h.id], abs=1e-4)


@pytest.mark.parametrize("n_docs", [None, 40])  # probed candidates; an index small enough to score every document
def test_a_rescore_covering_every_candidate_scores_the_fp16_vectors_only(corpus, monkeypatch, n_docs) -> None:
    ids, docs, meta, queries = corpus
    ids, docs, meta = ids[:n_docs], docs[:n_docs], meta[:n_docs]
    ix = PLAIDIndex(
        config=PLAIDConfig(keep_fp16=True),
        device="cpu",
        search_config=SearchConfig(n_ivf_probe=2, n_centroid_interaction=8, n_full_scores=64),
    )
    ix.add(ids, docs, meta)
    codes_scored = ix.search(queries, k=64)  # every candidate, scored on its codes

    def no_codes(*args: object, **kwargs: object) -> None:
        raise AssertionError("a compressed token was scored")

    monkeypatch.setattr(QueryTables, "token_scores", no_codes)
    ix.search_config = dataclasses.replace(ix.search_config, rescore=64)
    got = ix.search(queries, k=64)
    by_id = dict(zip(ids, docs, strict=True))
    for query, hits, before in zip(queries, got, codes_scored, strict=True):
        # The same documents, each with its exact MaxSim over the stored fp16 vectors, best first.
        assert {h.id for h in hits} == {h.id for h in before}
        exact_scores = maxsim([query], [by_id[h.id].half().float() for h in hits])[0]
        np.testing.assert_allclose([h.score for h in hits], exact_scores.numpy(), rtol=1e-5, atol=1e-5)
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_a_smaller_k_returns_the_first_hits_when_most_candidates_are_decompressed(corpus) -> None:
    # With k at least three quarters of n_full_scores every candidate is decompressed, so the
    # ranking no longer depends on k (a centroid pass choosing k of them would make it depend).
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(device="cpu", search_config=SearchConfig(n_ivf_probe=2, n_centroid_interaction=8, n_full_scores=64))
    ix.add(ids, docs, meta)
    for query in queries:
        everything = [h.id for h in ix.search(query, k=64)]
        assert [h.id for h in ix.search(query, k=48)] == everything[:48]


@pytest.mark.parametrize("n_queries", [1, 8])  # one query (a CPU search), several at once (a GPU batch)
def test_candidates_and_their_approximate_scores_follow_the_definition(corpus, n_queries: int) -> None:
    # Stages 1 and 2 against a direct computation: a document is a candidate when one of its
    # centroids is among a query token's n_ivf_probe best; its approximate score sums, per query
    # token, the best of the token's n_centroid_interaction centroids it holds, else the last kept
    # one's score; the n_full_scores best candidates come back, ties to the lower slot.
    ids, docs, _, queries = corpus
    config = SearchConfig(n_ivf_probe=2, n_centroid_interaction=4, n_full_scores=24)
    ix = PLAIDIndex(device="cpu", search_config=config)
    ix.add(ids[:380], docs[:380])
    ix.search(queries[0])  # builds the inverted lists; the next add's documents get lists of their own
    ix.add(ids[380:], docs[380:])
    ix.remove(ids[::7])
    ix._consolidate()
    assert len(ix._inverted_lists()) == 2
    search = plaid._Search(ix, ix.codec, ix._alive.clone(), len(ix), depth=config.n_full_scores)
    batch = torch.stack(queries[:n_queries])
    scores = batch @ ix.codec.centroids.T
    chosen = search._probe(scores, lambda: ix.codec.query_tables(batch, scores))
    centroids_of = [set(ix._codes[ix._token_rows(torch.tensor([slot]))].tolist()) for slot in range(len(ix._lengths))]
    for row, query_scores in zip(chosen, scores, strict=True):
        kept = query_scores.topk(config.n_centroid_interaction, dim=1)
        approx = {}
        for slot, held in enumerate(centroids_of):
            if not ix._alive[slot] or not held & set(kept.indices[:, : config.n_ivf_probe].flatten().tolist()):
                continue
            approx[slot] = sum(
                max([float(values[-1])] + [float(v) for c, v in zip(cs.tolist(), values, strict=True) if c in held])
                for cs, values in zip(kept.indices, kept.values, strict=True)
            )
        ranked = sorted(approx, key=lambda slot: (-approx[slot], slot))
        want, got = set(ranked[: config.n_full_scores]), set(row[row >= 0].tolist())
        assert row[row >= 0].tolist() == sorted(got) and len(got) == min(config.n_full_scores, len(approx))
        cut = approx[ranked[len(got) - 1]]
        assert all(abs(approx[slot] - cut) < 1e-5 for slot in want ^ got)  # only float near-ties at the cut differ


def test_scoring_in_several_runs_per_query_changes_nothing(corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    # A query's documents are scored in one padded run when they fit in _PAIR_TOKENS tokens, else
    # in several, shortest first; the hits and scores must not depend on which.
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(config=PLAIDConfig(keep_fp16=True), device="cpu", search_config=SearchConfig(rescore=16))
    ix.add(ids, docs, meta)
    one_run = ix.search(queries, k=20)
    monkeypatch.setattr(plaid, "_PAIR_TOKENS", 40)  # a few documents a run
    several = ix.search(queries, k=20)
    for a, b in zip(one_run, several, strict=True):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-6)


def test_filters_restrict_candidates_before_scoring(corpus, exact) -> None:
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(device="cpu")
    ix.add(ids, docs, meta)
    for hits in ix.search(queries, k=20, filter={"shard": 2}):
        assert len(hits) == 20 and all(h.metadata["shard"] == 2 for h in hits)
    # A narrow filter is scored exhaustively: every match comes back.
    ix.add(["rare-1", "rare-2"], docs[:2], [{"shard": "rare"}, {"shard": "rare"}])
    assert {h.id for h in ix.search(queries[0], k=10, filter={"shard": "rare"})} == {"rare-1", "rare-2"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_adds_and_removes_equal_a_rebuild_from_the_survivors(seed: int) -> None:
    ids, docs, meta, queries = clustered_corpus(300, seed=seed)
    g = torch.Generator().manual_seed(seed)
    ix = PLAIDIndex(device="cpu", search_config=SearchConfig(n_full_scores=64))
    ix.add(ids[:150], docs[:150], meta[:150])
    live = list(ids[:150])
    cursor = 150
    for step in range(6):
        if step % 2:  # a search takes the pending codes in; later adds append to the taken-in arrays
            ix.search(queries[0], k=5)
        drop = [live[int(i)] for i in torch.randperm(len(live), generator=g)[:15]]
        ix.remove(drop)
        live = [i for i in live if i not in set(drop)]
        ix.add(ids[cursor : cursor + 25], docs[cursor : cursor + 25], meta[cursor : cursor + 25])
        live += ids[cursor : cursor + 25]
        cursor += 25
    position = {d: i for i, d in enumerate(ids)}
    rebuilt = PLAIDIndex(codec=ix.codec, device="cpu", search_config=ix.search_config)
    rebuilt.add(live, [docs[position[i]] for i in live], [meta[position[i]] for i in live])
    assert len(ix) == len(rebuilt) == len(live) and ix.ids == rebuilt.ids
    for a, b in zip(ix.search(queries, k=10), rebuilt.search(queries, k=10), strict=True):
        assert [h.id for h in a] == [h.id for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    ix.compact()
    assert ix.n_tokens == rebuilt.n_tokens
    assert [h.id for h in ix.search(queries[0], k=10)] == [h.id for h in rebuilt.search(queries[0], k=10)]


def test_one_document_adds_extend_the_inverted_lists_without_rebuilding_them() -> None:
    ids, docs, meta, queries = clustered_corpus(260, seed=4)
    ix = PLAIDIndex(device="cpu", search_config=SearchConfig(n_ivf_probe=2, n_full_scores=32))
    ix.add(ids[:200], docs[:200], meta[:200])
    ix.search(queries[0], k=5)
    main = ix._ivf
    for i in range(200, 260):
        ix.add([ids[i]], [docs[i]], [meta[i]])
        if i % 3 == 0:
            ix.remove([ids[i - 100]])
        hits = ix.search(queries[i % len(queries)], k=10)
        assert all(h.id in ix for h in hits)
        if i < 205:  # a few small adds go to the recent lists; the main ones are kept as they are
            assert ix._ivf is main and ix._ivf_delta is not None
    assert ix._ivf is not main  # ... until the recent lists grew to an eighth of them and merged
    # Whatever the history, the lists are exactly the ones a build from the tokens gives.
    merged = ix._ivf_lists()
    built = InvertedLists.build(ix._codes, ix._lengths, ix.codec.n_centroids)
    assert torch.equal(merged[0], built.offsets) and torch.equal(merged[1], built.slots)
    # And the searches equal those of an index built at once from the survivors (compacted: with
    # tombstones the candidate arrays differ in length, and topk may break exact ties otherwise).
    ix.compact()
    position = {d: i for i, d in enumerate(ids)}
    rebuilt = PLAIDIndex(codec=ix.codec, device="cpu", search_config=ix.search_config)
    rebuilt.add(ix.ids, [docs[position[i]] for i in ix.ids])
    for a, b in zip(ix.search(queries, k=10), rebuilt.search(queries, k=10), strict=True):
        assert [h.id for h in a] == [h.id for h in b]


@pytest.mark.parametrize("ram_rows", [0, 5, 100])
def test_pending_rows_roll_back_and_drain_in_order_in_memory_or_spilled(monkeypatch, ram_rows: int) -> None:
    from lateint_plugins.core import plaid

    monkeypatch.setattr(plaid, "_PENDING_RAM_ROWS", ram_rows)
    pending = plaid._PendingCodes()
    chunks = [
        (torch.arange(a, b, dtype=torch.int16), torch.arange(a, b, dtype=torch.uint8)[:, None].repeat(1, 3))
        for a, b in ((0, 3), (3, 7), (7, 9))
    ]
    pending.append(*chunks[0])
    mark = pending.mark()
    pending.append(*chunks[1])  # 7 rows: over 5, the first 3 spill to the scratch files with these
    pending.rollback(mark)
    assert pending.n_rows == 3
    pending.append(*chunks[2])
    codes, residuals = torch.empty(5, dtype=torch.int16), torch.empty(5, 3, dtype=torch.uint8)
    pending.drain_into(codes, residuals)
    assert codes.tolist() == [0, 1, 2, 7, 8] and residuals[:, 2].tolist() == [0, 1, 2, 7, 8]
    assert pending.n_rows == 0 and pending._dir is None


def test_fp16_rows_read_across_the_saved_base_and_the_scratch_file(tmp_path: Path) -> None:
    from lateint_plugins.core.plaid import _Fp16Store

    everything = torch.arange(40 * 4, dtype=torch.float16).reshape(40, 4)
    np.save(tmp_path / "tokens_fp16.npy", everything[:10].numpy())
    store = _Fp16Store.open(tmp_path / "tokens_fp16.npy", 10, 4)
    store.append(everything[10:25])
    mixed = torch.tensor([24, 3, 10, 9, 17])
    assert torch.equal(store.rows(mixed), everything[mixed])
    mark = store.mark()
    store.append(everything[25:30])  # the scratch file grows under its map
    assert torch.equal(store.rows(torch.tensor([29, 11])), everything[[29, 11]])
    store.rollback(mark)  # ... and shrinks: rows 25-29 are now the next ones appended
    store.append(everything[30:40])
    assert torch.equal(store.rows(torch.tensor([25, 34, 0])), everything[[30, 39, 0]])
    assert store.rows(torch.tensor([], dtype=torch.long)).shape == (0, 4)


def test_inverted_lists_merge_equals_a_build_over_both() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 20, (50,), generator=g)
    codes = torch.randint(0, 16, (int(lengths.sum()),), generator=g)
    split = int(lengths[:30].sum())
    first = InvertedLists.build(codes[:split], lengths[:30], 16)
    later = InvertedLists.build(codes[split:], lengths[30:], 16, first_slot=30)
    whole = InvertedLists.build(codes, lengths, 16)
    merged = first.merge(later)
    assert torch.equal(merged.offsets, whole.offsets) and torch.equal(merged.slots, whole.slots)
    slots, owner = whole.postings(torch.tensor([3, 3, 7]))
    assert torch.equal(slots[owner == 2], whole.slots[whole.offsets[7] : whole.offsets[8]].long())


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize("quantizer", ["pq", "rq"])
def test_save_compacts_and_load_round_trips(corpus, tmp_path: Path, quantizer: str) -> None:
    ids, docs, meta, queries = corpus
    config = PLAIDConfig(keep_fp16=True, quantizer=quantizer, nbits=4 if quantizer == "rq" else 2)  # type: ignore[arg-type]
    ix = PLAIDIndex(config=config, device="cpu", search_config=SearchConfig(rescore=16))
    ix.add(ids, docs, meta)
    ix.remove(ids[:100])
    before = ix.search(queries, k=10)
    ix.save(tmp_path / "plaid")
    manifest = json.loads((tmp_path / "plaid" / "manifest.json").read_text())
    assert manifest["kind"] == "plaid" and manifest["n_documents"] == 300
    kept_tokens = sum(len(d) for d in docs[100:])
    assert np.load(tmp_path / "plaid" / "codes.npy").shape == (kept_tokens,)
    assert np.load(tmp_path / "plaid" / "tokens_fp16.npy", mmap_mode="r").shape == (kept_tokens, DIM)
    loaded = load_index(tmp_path / "plaid", device="cpu")
    assert isinstance(loaded, PLAIDIndex) and loaded.ids == ix.ids
    assert loaded.codec is not None and loaded.codec.quantizer == quantizer
    assert loaded.search(queries, k=10) == before
    loaded.add(["late"], [docs[0]], [{"shard": 9}])  # a loaded index keeps growing (fp16 rows included)
    assert loaded.search(docs[0], k=1, filter={"shard": 9})[0].id == "late"


def test_an_index_saved_before_n_refine_existed_loads(corpus, tmp_path: Path) -> None:
    from lateint_plugins.core import _io

    ids, docs, meta, _ = corpus
    index = PLAIDIndex(config=PLAIDConfig(n_centroids=16), device="cpu")
    index.add(ids[:50], docs[:50], meta[:50])
    index.save(tmp_path / "plaid")
    path = tmp_path / "plaid" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["search_config"]["n_refine"]  # as the version before it wrote it
    manifest["checksum"] = _io._manifest_checksum(manifest)
    path.write_text(json.dumps(manifest))
    assert load_index(tmp_path / "plaid", device="cpu").search_config.n_refine == 0


def test_crash_mid_save_keeps_previous_index(corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, docs, meta, _ = corpus
    ix = PLAIDIndex(device="cpu")
    ix.add(ids[:200], docs[:200], meta[:200])
    ix.save(tmp_path / "p")
    ix.add(ids[200:], docs[200:], meta[200:])
    monkeypatch.setattr(PLAIDIndex, "_write", lambda self, folder: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        ix.save(tmp_path / "p")
    assert len(load_index(tmp_path / "p")) == 200


def test_corrupt_files_are_reported(corpus, tmp_path: Path) -> None:
    ids, docs, meta, _ = corpus
    ix = PLAIDIndex(device="cpu")
    ix.add(ids, docs, meta)
    ix.save(tmp_path / "p")
    np.save(tmp_path / "p" / "codes.npy", np.zeros(3, dtype=np.int16))
    with pytest.raises(CorruptIndexError, match="damaged"):
        load_index(tmp_path / "p")


# ---------------------------------------------------------------------- updates and errors
def test_drift_signal_and_retrain(corpus, exact) -> None:
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(device="cpu", search_config=SearchConfig(n_full_scores=128))
    ix.add(ids[:200], docs[:200], meta[:200])
    assert ix.drift == pytest.approx(1.0, abs=0.3) and not ix.needs_retraining
    other_ids, other_docs, other_meta, _ = clustered_corpus(200, seed=7, shift=1.5)
    ix.add(other_ids, other_docs, other_meta)  # a different distribution: the centroids fit poorly
    assert ix.needs_retraining and ix.drift > 1.25
    ix.remove(other_ids)
    ix.add(ids[200:], docs[200:], meta[200:])
    ix.retrain()
    assert ix.drift == 1.0 and not ix.needs_retraining
    assert recall_vs_exact(ix, exact, queries) >= 0.85


def test_a_streamed_build_that_outgrows_its_centroids_says_so_and_retrain_resizes(corpus, caplog) -> None:
    ids, docs, *_ = corpus
    ix = PLAIDIndex(device="cpu")
    ix.add(ids[:12], docs[:12])  # the first add sizes the centroids for its own ~220 tokens
    first = ix.codec.n_centroids
    assert not ix.needs_retraining
    with caplog.at_level(logging.WARNING, logger="lateint_plugins.core.plaid"):
        for start in range(12, 400, 50):  # 16x more tokens: 4x more centroids would be the default
            ix.add(ids[start : start + 50], docs[start : start + 50])
    assert ix.needs_retraining and ix.drift < 1.25  # the centroids still fit; there are too few of them
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1  # said once
    assert "retrain()" in caplog.records[0].message
    ix.retrain()
    assert ix.codec.n_centroids >= 4 * first and not ix.needs_retraining
    sized = PLAIDIndex(device="cpu")  # trained for the corpus size up front: never outgrown
    sized.train(torch.cat(docs[::2]), n_tokens=sum(len(d) for d in docs))
    for start in range(0, 400, 50):
        sized.add(ids[start : start + 50], docs[start : start + 50])
    assert not sized.needs_retraining


def test_bad_input(corpus) -> None:
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(device="cpu")
    assert ix.search(queries[0], k=3) == []
    ix.add(ids, docs, meta)
    with pytest.raises(DimensionMismatchError):
        ix.add(["x"], [torch.randn(4, DIM + 8)])
    with pytest.raises(DimensionMismatchError):
        ix.search(torch.randn(3, DIM + 8))
    with pytest.raises(InvalidInputError, match="codec has nbits"):
        PLAIDIndex(codec=ix.codec, config=PLAIDConfig(nbits=4))
    assert len(ix) == len(ids)


def test_store_on_a_plaid_index(tiny_encoder, tmp_path: Path) -> None:
    from lateint_plugins.core.store import LateInteractionStore

    texts = [f"document number {i} about {topic}" for i in range(60) for topic in ("cats", "rockets", "bread")]
    store = LateInteractionStore(tiny_encoder, PLAIDIndex(device="cpu"))
    store.add_texts(texts, [{"n": i} for i in range(len(texts))])
    hits = store.search("rockets", k=5)
    assert len(hits) == 5 and all(isinstance(h.text, str) for h in hits)
    store.save(tmp_path / "s")
    reloaded = LateInteractionStore.load(tmp_path / "s", encoder=tiny_encoder, device="cpu")
    assert isinstance(reloaded.index, PLAIDIndex)
    assert reloaded.search("rockets", k=5) == hits


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_path_matches_cpu(corpus) -> None:
    ids, docs, meta, queries = corpus
    cpu = PLAIDIndex(device="cpu")
    cpu.add(ids, docs, meta)
    gpu = PLAIDIndex(codec=cpu.codec, device="cuda")
    gpu.add(ids, docs, meta)
    assert gpu._codes.device.type == "cuda" and gpu._residuals.device.type == "cuda"
    for a, b in zip(cpu.search(queries, k=10), gpu.search(queries, k=10), strict=True):
        assert [h.id for h in a] == [h.id for h in b]


def test_queries_with_fewer_hits_than_k_are_not_padded(corpus) -> None:
    ids, docs, meta, queries = corpus
    ix = PLAIDIndex(device="cpu", search_config=SearchConfig(n_ivf_probe=1, n_centroid_interaction=1, n_full_scores=8))
    ix.add(ids, docs, meta)
    for hits in ix.search(queries, k=300):
        assert len({h.id for h in hits}) == len(hits) <= 300
        assert all(h.score > -1e9 for h in hits)


def test_token_pooling_halves_the_index_and_keeps_the_ranking(corpus, exact) -> None:
    ids, docs, meta, queries = corpus
    doc = docs[0]
    pooled = pool_tokens(doc, 2)
    assert torch.equal(pooled[0], doc[0])  # [CLS] is protected
    assert pooled.shape[0] <= 1 + -(-(len(doc) - 1) // 2) and pooled.shape[1] == DIM
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(len(pooled)))
    assert torch.equal(pool_tokens(doc, 1), doc)
    with pytest.raises(InvalidInputError, match="pool_factor"):
        PLAIDConfig(pool_factor=0)

    ix = PLAIDIndex(config=PLAIDConfig(nbits=4, pool_factor=2), device="cpu")
    ix.add(ids, docs, meta)
    assert ix.n_tokens <= 0.6 * exact.n_tokens
    assert recall_vs_exact(ix, exact, queries) >= 0.7


def _hits(results):
    return [[(h.id, h.score) for h in row] for row in results]


@pytest.mark.parametrize("rescore", [0, 8])
@pytest.mark.parametrize("vectorised", [False, True])
def test_search_batch_equals_single_searches(
    corpus, rescore: int, vectorised: bool, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    ids, docs, meta, queries = corpus
    if vectorised:  # the GPU's path (batches of equal-length queries through every stage at once), run on the CPU
        monkeypatch.setattr("lateint_plugins.core.plaid._Search.batch_size", lambda self, q_len: 3)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a CPU batch is spread over as many worker threads
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    # With fp16 re-scoring, the codes are a residual quantiser's, refined too.
    codec = {"nbits": 4, "quantizer": "rq"} if rescore else {"nbits": 2}
    index = PLAIDIndex(
        config=PLAIDConfig(n_centroids=32, kmeans_niters=2, keep_fp16=bool(rescore), **codec),  # type: ignore[arg-type]
        search_config=SearchConfig(
            n_ivf_probe=2, n_centroid_interaction=8, n_full_scores=64, rescore=rescore, n_refine=rescore + 4
        ),
        device="cpu",
    )
    index.add(ids, docs, meta)
    index.remove(ids[::5])
    # Queries of different lengths, so the batch pads; one filtered call too.
    batch = [q[: 3 + i % 4] for i, q in enumerate(queries)]
    singles = [index.search(q, k=10) for q in batch]
    assert _hits(index.search(batch, k=10)) == _hits(singles)
    filtered = [index.search(q, k=10, filter={"shard": 1}) for q in batch]
    assert _hits(index.search(batch, k=10, filter={"shard": 1})) == _hits(filtered)
    assert all(len(row) == 10 for row in singles)
    # The workers ran single-threaded; threads started afterwards get the caller's thread count again.
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [2] and torch.get_num_threads() == 2
