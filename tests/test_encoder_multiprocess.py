"""Multi-process encoding: a pool of 2 CPU workers gives the vectors of one process, in input order."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from lateint_plugins.core.encoder import ColBERTEncoder, EncodePool
from lateint_plugins.core.errors import InvalidInputError

WORDS = [
    "the",
    "cell",
    "protein",
    "binds",
    "a",
    "receptor",
    "in",
    "mice",
    ",",
    "while",
    ".",
    "gene",
    "expression",
    "rises",
    "!",
    "under",
    "stress",
    "?",
]


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    # Lengths from empty to past document_length (64), so batches differ in width and windows appear.
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 90))) for _ in range(n)]


@pytest.fixture(scope="module")
def single(tiny_pylate_path: Path) -> ColBERTEncoder:
    # One thread, as each worker has: the same batches through the same kernels give the same bits.
    return ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", num_threads=1, max_tokens_per_batch=600)


@pytest.fixture(scope="module")
def pooled(tiny_pylate_path: Path) -> Iterator[tuple[ColBERTEncoder, EncodePool]]:
    encoder = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", max_tokens_per_batch=600)
    with encoder.start_multi_process_pool(processes=2) as pool:
        yield encoder, pool


def test_pool_matches_one_process_in_order(single: ColBERTEncoder, pooled: tuple[ColBERTEncoder, EncodePool]) -> None:
    encoder, pool = pooled
    assert [d.type for d in pool.devices] == ["cpu", "cpu"]
    assert pool.threads_per_process >= 1
    texts = _texts(61, seed=3)
    seen: list[tuple[int, int]] = []
    got = encoder.encode_documents(texts, batch_size=8, pool=pool, progress_callback=lambda d, t: seen.append((d, t)))
    want = single.encode_documents(texts, batch_size=8)
    assert len(got) == len(want) == len(texts)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, i
        assert torch.equal(g, w), i
    # One call per batch, counts rising to the total.
    assert len(seen) > 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (len(texts), len(texts))

    # Windows (several model inputs per text) and queries go through the same path.
    windowed = encoder.encode_documents(texts[:9], batch_size=4, pool=pool, long_documents="window")
    for g, w in zip(windowed, single.encode_documents(texts[:9], batch_size=4, long_documents="window"), strict=True):
        assert torch.equal(g, w)
    queries = [t or "empty" for t in texts[:7]]
    for g, w in zip(encoder.encode_queries(queries, pool=pool), single.encode_queries(queries), strict=True):
        assert torch.equal(g, w)


def test_encoder_pool_attribute_routes_calls(single: ColBERTEncoder, pooled: tuple[ColBERTEncoder, EncodePool]) -> None:
    encoder, pool = pooled
    encoder.pool = pool
    try:
        got = encoder.encode_documents("a receptor binds the protein .")
    finally:
        encoder.pool = None
    assert torch.equal(got, single.encode_documents("a receptor binds the protein ."))
    with pytest.raises(InvalidInputError, match="another encoder"):
        single.encode_documents(["x"], pool=pool)


def test_pool_refusals(tiny_pylate_path: Path, single: ColBERTEncoder) -> None:
    in_memory = ColBERTEncoder(single.backbone, single.tokenizer, single.projection, single.config, device="cpu")
    with pytest.raises(InvalidInputError, match="built in memory"):
        in_memory.start_multi_process_pool(processes=2)
    with pytest.raises(InvalidInputError, match="processes"):
        single.start_multi_process_pool(processes=0)
    with pytest.raises(InvalidInputError, match="target_devices"):
        single.start_multi_process_pool("cpu")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not both"):
        single.start_multi_process_pool(["cpu"], processes=2)


def test_closed_pool_is_refused(pooled: tuple[ColBERTEncoder, EncodePool]) -> None:
    # Last in the file: it closes the module's pool (closing again at teardown is a no-op).
    encoder, pool = pooled
    assert "running" in repr(pool)
    ColBERTEncoder.stop_multi_process_pool(pool)
    assert all(not p.is_alive() for p in pool._processes)
    pool.close()  # idempotent
    assert "closed" in repr(pool)
    with pytest.raises(InvalidInputError, match="closed"):
        encoder.encode_documents(["x"], pool=pool)
