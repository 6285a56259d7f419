"""Our encoder against sentence-transformers' MultiVectorEncoder on the real checkpoint and real text."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from lateint_plugins.core.encoder import ColBERTEncoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def st_model(answerai_path: Path):
    st = pytest.importorskip("sentence_transformers", reason="pip install 'sentence-transformers>=6.2' (in [test])")
    if int(st.__version__.split(".")[0]) < 6:
        pytest.skip(f"sentence-transformers >= 6 provides MultiVectorEncoder; found {st.__version__}")
    return st.MultiVectorEncoder(str(answerai_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def ours(answerai_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(answerai_path, device="cpu")


@pytest.fixture(scope="module")
def scifact_texts(scifact_path: Path) -> tuple[list[str], list[str]]:
    with open(scifact_path / "corpus.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in itertools.islice(f, 25)]
    with open(scifact_path / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in itertools.islice(f, 25)]
    return [f"{d['title']} {d['text']}".strip() for d in docs], queries


def assert_same_vectors(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    for a, b in zip(ours, theirs, strict=True):
        b = torch.as_tensor(b).float()
        assert a.shape == b.shape
        assert float((a * b).sum(-1).min()) >= 0.999


def test_matches_multi_vector_encoder_on_50_scifact_texts(ours, st_model, scifact_texts) -> None:
    docs, queries = scifact_texts
    assert len(docs) + len(queries) == 50
    assert_same_vectors(ours.encode_documents(docs), st_model.encode_document(docs))
    assert_same_vectors(ours.encode_queries(queries), st_model.encode_query(queries))


def test_reads_a_sentence_transformers_6_save(ours, st_model, scifact_texts, tmp_path: Path) -> None:
    """The same model re-saved by sentence-transformers 6 (prompts, query_expansion, MultiVectorMask)."""
    st_model.save(str(tmp_path / "st6"))
    resaved = ColBERTEncoder.from_pretrained(tmp_path / "st6", device="cpu")
    # ST6 writes the markers as text prompts where PyLate has token prefixes: other fields, same framing.
    assert (resaved.checkpoint_format, ours.checkpoint_format) == ("sentence-transformers", "pylate")
    assert resaved.config.query_prompt == ours.config.query_prefix == "[unused0]"
    assert (resaved.config.query_length, resaved.config.document_length) == (32, 300)
    docs, queries = scifact_texts
    for a, b in zip(
        resaved.encode_documents(docs[:5]) + resaved.encode_queries(queries[:5]),
        ours.encode_documents(docs[:5]) + ours.encode_queries(queries[:5]),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
