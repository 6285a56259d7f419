"""Encoder precision (fp32 / bf16 / int8), token-budget batching, threads and progress.

Parity floors: per-token cosine against the fp32 encoder of the same checkpoint, and identical token
counts (precision never changes framing or the skiplist).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lateint_plugins.core import encoder as encoder_module
from lateint_plugins.core.encoder import ColBERTEncoder, cpu_has_native_bf16, resolve_precision
from lateint_plugins.core.errors import InvalidInputError
from lateint_plugins.core.store import LateInteractionStore

TEXTS = [
    "Late interaction keeps one vector per token.",
    "Cats, dogs and birds!",
    "a much longer document about many other different things, with commas, stops. and more words here",
    "",
    "x",
]
CPU = torch.device("cpu")


def token_cosines(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    assert [len(x) for x in a] == [len(y) for y in b]  # identical token counts per text
    return torch.cat([torch.nn.functional.cosine_similarity(x, y, dim=-1) for x, y in zip(a, b, strict=True)])


@pytest.fixture(scope="module")
def fp32(tiny_pylate_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision="fp32")


# ---------------------------------------------------------------------- resolving precision / dtype
def test_cpu_flags_decide_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_has_native_bf16(amx) is True
    assert cpu_has_native_bf16(avx2) is False
    assert cpu_has_native_bf16(tmp_path / "missing") is False

    monkeypatch.delenv("LATEINT_PRECISION", raising=False)  # conftest sets it to fp32 for the suite
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(None, None, CPU) == ("bf16", torch.bfloat16)
    assert resolve_precision("auto", None, CPU) == ("bf16", torch.bfloat16)
    assert resolve_precision("auto", None, torch.device("mps")) == ("fp32", torch.float32)
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(None, None, CPU) == ("fp32", torch.float32)
    # LATEINT_PRECISION replaces the default only: explicit arguments still win.
    monkeypatch.setenv("LATEINT_PRECISION", "int8")
    assert resolve_precision(None, None, CPU) == ("int8", torch.float32)
    assert resolve_precision("bf16", None, CPU) == ("bf16", torch.bfloat16)
    assert resolve_precision(None, torch.float16, CPU) == ("fp16", torch.float16)
    monkeypatch.setenv("LATEINT_PRECISION", "half")
    with pytest.raises(InvalidInputError, match="LATEINT_PRECISION='half'"):
        resolve_precision(None, None, CPU)


def test_precision_and_dtype_interact() -> None:
    # dtype alone is the low-level knob, used as is; precision alone picks its dtype.
    assert resolve_precision(None, torch.bfloat16, CPU) == ("bf16", torch.bfloat16)
    assert resolve_precision(None, torch.float64, CPU) == ("float64", torch.float64)
    assert resolve_precision("fp16", None, CPU) == ("fp16", torch.float16)
    assert resolve_precision("int8", None, CPU) == ("int8", torch.float32)
    # Both: they must agree.
    assert resolve_precision("bf16", torch.bfloat16, CPU) == ("bf16", torch.bfloat16)
    assert resolve_precision("int8", torch.float32, CPU) == ("int8", torch.float32)
    with pytest.raises(InvalidInputError, match=r"precision='bf16'.*dtype=torch.float16"):
        resolve_precision("bf16", torch.float16, CPU)
    with pytest.raises(InvalidInputError, match=r"precision='auto' and dtype"):
        resolve_precision("auto", torch.float32, CPU)
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        resolve_precision("int4", None, CPU)
    with pytest.raises(InvalidInputError, match=r"dtype must be a torch\.dtype"):
        resolve_precision(None, "bfloat16", CPU)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="CPU only"):
        resolve_precision("int8", None, torch.device("cuda"))


def test_bad_options_fail_before_loading(tiny_pylate_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        ColBERTEncoder.from_pretrained(tiny_pylate_path, precision="half")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="drop dtype="):
        ColBERTEncoder.from_pretrained(tiny_pylate_path, precision="fp32", dtype=torch.bfloat16)
    with pytest.raises(InvalidInputError, match="max_tokens_per_batch"):
        ColBERTEncoder.from_pretrained(tiny_pylate_path, max_tokens_per_batch=0)
    with pytest.raises(InvalidInputError, match="num_threads"):
        ColBERTEncoder.from_pretrained(tiny_pylate_path, num_threads="2")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- parity on the tiny fixture
@pytest.mark.parametrize(("precision", "cosine_min", "cosine_mean"), [("bf16", 0.99, 0.999), ("int8", 0.95, 0.99)])
def test_reduced_precision_parity(
    tiny_pylate_path: Path, fp32: ColBERTEncoder, precision: str, cosine_min: float, cosine_mean: float
) -> None:
    reduced = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision=precision)  # type: ignore[arg-type]
    assert reduced.precision == precision and f"precision={precision!r}" in repr(reduced)
    assert reduced.dim == fp32.dim == 16
    # The fingerprint is the float32 checkpoint's at every precision.
    assert reduced.fingerprint == fp32.fingerprint
    docs, want = reduced.encode_documents(TEXTS), fp32.encode_documents(TEXTS)
    queries, want_q = reduced.encode_queries(TEXTS[:3]), fp32.encode_queries(TEXTS[:3])
    assert all(d.dtype == torch.float32 for d in docs + queries)
    for got, ref in ((docs, want), (queries, want_q)):
        cos = token_cosines(got, ref)
        assert cos.min() >= cosine_min and cos.mean() >= cosine_mean, (precision, cos.min(), cos.mean())
        assert not torch.equal(torch.cat(got), torch.cat(ref))  # it really ran at another precision


def test_int8_quantises_every_linear(tiny_pylate_path: Path, fp32: ColBERTEncoder) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    int8 = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision="int8")
    modules = [*int8.backbone.modules(), *int8.projection.modules()]
    floats = [m for m in (*fp32.backbone.modules(), *fp32.projection.modules()) if type(m) is torch.nn.Linear]
    assert not any(type(m) is torch.nn.Linear for m in modules)
    assert sum(isinstance(m, DynamicLinear) for m in modules) == len(floats) >= 2 * 6 + 1  # 6 per layer + head


def test_dtype_keyword_still_works(tiny_pylate_path: Path, fp32: ColBERTEncoder) -> None:
    bf16 = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", dtype=torch.bfloat16)
    assert bf16.precision == "bf16" and bf16.dtype == torch.bfloat16
    assert next(bf16.backbone.parameters()).dtype == torch.bfloat16
    assert token_cosines(bf16.encode_documents(TEXTS), fp32.encode_documents(TEXTS)).min() > 0.99


def test_cpu_bf16_autocasts_over_fp32_weights(tiny_pylate_path: Path, fp32: ColBERTEncoder) -> None:
    autocast = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision="bf16")
    cast = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", dtype=torch.bfloat16)
    assert autocast.precision == "bf16" and autocast.dtype == torch.bfloat16
    assert next(autocast.backbone.parameters()).dtype == torch.float32  # residual stream and LayerNorm stay fp32
    reference = fp32.encode_documents(TEXTS)
    autocast_error = 1 - token_cosines(autocast.encode_documents(TEXTS), reference).mean()
    cast_error = 1 - token_cosines(cast.encode_documents(TEXTS), reference).mean()
    assert 0 < autocast_error < cast_error  # bf16 products (not fp32), yet closer to fp32 than bf16 weights


def test_store_built_at_fp32_opens_with_bf16(tmp_path: Path, tiny_pylate_path: Path, fp32: ColBERTEncoder) -> None:
    store = LateInteractionStore(fp32)
    store.add_texts(TEXTS[:3], ids=["a", "b", "c"])
    store.save(tmp_path / "store")
    bf16 = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision="bf16")
    reopened = LateInteractionStore.load(tmp_path / "store", encoder=bf16)
    assert reopened.encoder.precision == "bf16"
    assert reopened.search(TEXTS[1], k=1)[0].id == "b"


def test_sdpa_attention_is_used(fp32: ColBERTEncoder) -> None:
    assert fp32.backbone.config._attn_implementation == "sdpa"


# ---------------------------------------------------------------------- batching, threads, progress
def test_batches_are_bounded_by_padded_tokens(tiny_pylate_path: Path, fp32: ColBERTEncoder) -> None:
    texts = [" ".join(["word"] * n) for n in (1, 50, 3, 20, 7, 40, 2, 12, 30, 5)]
    budget = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision="fp32", max_tokens_per_batch=96)
    shapes: list[tuple[int, int]] = []
    forward = budget._forward

    def spy(ids: torch.Tensor, attention: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(ids.shape))  # type: ignore[arg-type]
        return forward(ids, attention, keep)

    budget._forward = spy  # type: ignore[method-assign]
    got = budget.encode_documents(texts, batch_size=4)
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert all(rows <= 4 and (rows * width <= 96 or rows == 1) for rows, width in shapes), shapes
    assert [w for _, w in shapes] == sorted((w for _, w in shapes), reverse=True)  # longest first
    assert max(rows for rows, _ in shapes) == 4  # short texts fill a batch up to batch_size
    assert len(shapes) > -(-len(texts) // 4)  # the budget split batches that batch_size alone would not
    for a, b in zip(got, fp32.encode_documents(texts, batch_size=len(texts)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_threads_are_set_while_encoding_and_restored(tiny_pylate_path: Path) -> None:
    before = torch.get_num_threads()
    encoder = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", precision="fp32", num_threads=1)
    seen: list[int] = []
    forward = encoder._forward

    def spy(ids: torch.Tensor, attention: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return forward(ids, attention, keep)

    encoder._forward = spy  # type: ignore[method-assign]
    encoder.encode_queries(["one", "two"])
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_progress_callback_reports_each_batch(fp32: ColBERTEncoder) -> None:
    calls: list[tuple[int, int]] = []
    fp32.encode_documents(TEXTS, batch_size=2, progress_callback=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(InvalidInputError, match="progress_callback"):
        fp32.encode_queries(["q"], progress_callback=3)  # type: ignore[arg-type]


def test_windows_keep_every_token_with_the_vectorised_skiplist(tiny_pylate_path: Path) -> None:
    encoder = ColBERTEncoder.from_pretrained(
        tiny_pylate_path, device="cpu", precision="fp32", document_length=16, window_overlap=4
    )
    text = ", ".join(f"word{i}" for i in range(30))
    ids = encoder.tokenize([text])[0]
    n_commas = ids.count(encoder.tokenizer.convert_tokens_to_ids(","))
    windowed = encoder.encode_documents([text, "short, text"], long_documents="window", batch_size=3)
    assert windowed[0].shape[0] == len(ids) - n_commas + 3  # [CLS] [D] ... [SEP], commas skipped
    assert windowed[1].shape[0] == len(encoder.tokenize(["short, text"])[0]) - 1 + 3


# ---------------------------------------------------------------------- the real checkpoint
@pytest.mark.slow
@pytest.mark.parametrize(("precision", "cosine_min", "cosine_mean"), [("bf16", 0.995, 0.9999), ("int8", 0.85, 0.99)])
def test_real_model_parity(answerai_path: Path, precision: str, cosine_min: float, cosine_mean: float) -> None:
    texts = [
        "Microstructural development of human newborn cerebral white matter assessed in vivo by diffusion MRI.",
        "ColBERT scores a document by the sum over query tokens of the best matching document token.",
        "0-dimensional biomaterials show inductive properties.",
    ]
    fp32 = ColBERTEncoder.from_pretrained(answerai_path, device="cpu", precision="fp32")
    reduced = ColBERTEncoder.from_pretrained(answerai_path, device="cpu", precision=precision)  # type: ignore[arg-type]
    assert reduced.fingerprint == fp32.fingerprint
    for got, ref in (
        (reduced.encode_documents(texts), fp32.encode_documents(texts)),
        (reduced.encode_queries(texts), fp32.encode_queries(texts)),
    ):
        cos = token_cosines(got, ref)
        assert cos.min() >= cosine_min and cos.mean() >= cosine_mean, (precision, cos.min(), cos.mean())
