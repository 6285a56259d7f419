"""Every script in examples/ runs as the README says (`python examples/NAME.py`), offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _forkrun import run_script

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
# What each example needs beyond the real checkpoint, and a line its output must contain.
NEEDS_SCIFACT = {"langchain_rag.py", "llamaindex_rerank.py"}
# Smaller runs than the defaults (same code paths) to keep the suite within its time budget.
ARGS = {"langchain_rag.py": ["--questions", "2", "--distractors", "10"], "llamaindex_rerank.py": ["--queries", "1"]}
EXPECTED = {
    "quickstart.py": "Statins lower LDL cholesterol",
    "qdrant_store.py": "3 documents in Qdrant, 3 in the rebuilt local index",
    "langchain_rag.py": "async top-1:",
    "llamaindex_rerank.py": "BM25 + ColBERT rerank:",
    "llamaindex_vector_store.py": "after delete_ref_doc: 3 nodes",
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES} == set(EXPECTED), "add the new example to EXPECTED (and the README)"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, answerai_path: Path, request: pytest.FixtureRequest) -> None:
    if script.name in NEEDS_SCIFACT:
        request.getfixturevalue("scifact_path")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LATEINT_MODEL", None)  # the scripts' own default: ../shared/models/answerai-colbert-small-v1
    proc = run_script(script.relative_to(REPO), ARGS.get(script.name, []), cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert EXPECTED[script.name] in proc.stdout, proc.stdout[-2000:]
