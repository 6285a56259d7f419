"""Our encoder against the reference libraries, through golden vectors (no reference library needed).

``benchmarks/compat/build_fixtures.py`` built a tiny replica of each model family with the reference's own
save code (colbert-ai 0.2.22 or PyLate 1.6.0, each in its own venv) and stored what the reference encodes
for a few queries and documents in ``tests/fixtures/compat/<family>/``. Here every family must load with
``ColBERTEncoder.from_pretrained`` and give the same number of vectors per text, per-token cosine >= 0.9999
and, for each query, the same ranking of the family's documents by MaxSim as the reference's own scores.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lateint_plugins.core.encoder import ColBERTEncoder

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "compat"
SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared next to the repository, as in conftest.py
FAMILIES = sorted(p.parent.name for p in FIXTURES.glob("*/golden.json"))
COSINE_MIN = 0.9999

# Families our encoder does not match yet, each with its cause; strict xfail, so a fix shows up as a failure
# until its line is removed. Empty: every family matches (issue 11).
PENDING: dict[str, str] = {}


def _golden(family: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    folder = FIXTURES / family
    record = json.loads((folder / "golden.json").read_text(encoding="utf-8"))
    return record, load_file(str(folder / "golden.safetensors"))


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[a:b].astype(np.float32) for a, b in itertools.pairwise(offsets)]


def _maxsim(queries: list[np.ndarray], documents: list[np.ndarray]) -> np.ndarray:
    return np.array([[float((q @ d.T).max(axis=1).sum()) for d in documents] for q in queries])


def _model_path(family: str, record: dict[str, Any]) -> Path:
    where: str = record["model"]
    if where.startswith("shared:"):
        path = SHARED / where.removeprefix("shared:")
        if not path.is_dir():
            pytest.skip(f"{family}: the shared model is not at {path} (see ../shared/models/README.md)")
        return path
    return FIXTURES / family / where


def _params() -> list[Any]:
    params = []
    for family in FAMILIES:
        marks = []
        if json.loads((FIXTURES / family / "golden.json").read_text(encoding="utf-8"))["model"].startswith("shared:"):
            marks.append(pytest.mark.slow)  # the real shared checkpoint, as elsewhere in the suite
        if family in PENDING:
            marks.append(pytest.mark.xfail(strict=True, reason=PENDING[family]))
        params.append(pytest.param(family, marks=marks))
    return params


def test_every_family_has_a_fixture() -> None:
    """The harness's families are all here (a lost folder would silently shrink the check)."""
    assert set(FAMILIES) >= {
        "stanford-bert",
        "answerai-small",
        "pylate-modernbert",
        "pylate-bert",
        "pylate-dense-stack",
        "jina-colbert-v2",
        "pylate-japanese",
        "stanford-xlmr",
    }
    assert set(PENDING) <= set(FAMILIES)


@pytest.mark.parametrize("family", _params())
def test_encodes_like_its_reference(family: str) -> None:
    record, arrays = _golden(family)
    for module in record.get("requires", []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{family} needs {module}: pip install fugashi unidic-lite")
    encoder = ColBERTEncoder.from_pretrained(_model_path(family, record), device="cpu", **record.get("load_kwargs", {}))
    ours_q = [t.numpy() for t in encoder.encode_queries(record["queries"])]
    ours_d = [t.numpy() for t in encoder.encode_documents(record["documents"])]

    assert [len(q) for q in ours_q] == record["query_token_counts"], "query token counts differ"
    assert [len(d) for d in ours_d] == record["document_token_counts"], "document token counts differ"

    golden_q = _split(arrays["queries"], arrays["query_lengths"])
    golden_d = _split(arrays["documents"], arrays["document_lengths"])
    for kind, ours, gold in (("query", ours_q, golden_q), ("document", ours_d, golden_d)):
        for i, (a, b) in enumerate(zip(ours, gold, strict=True)):
            cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            assert cosine.min() >= COSINE_MIN, f"{kind} {i}: per-token cosine {cosine.min():.6f} < {COSINE_MIN}"

    ours_scores, reference_scores = _maxsim(ours_q, ours_d), arrays["reference_scores"]
    for i in range(len(ours_q)):
        ours_rank = np.argsort(-ours_scores[i], kind="stable")
        reference_rank = np.argsort(-reference_scores[i], kind="stable")
        assert ours_rank.tolist() == reference_rank.tolist(), f"query {i}: ranking differs from the reference"
