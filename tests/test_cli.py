"""The `lateint` command line, end to end on tiny and real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lateint_plugins.core.cli import main


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "Cats", "Cats purr and sleep a lot."),
        ("d2", "Rockets", "Rockets burn fuel to reach orbit."),
        ("d3", "Bread", "Bread rises because yeast makes gas."),
    ]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x, "kind": "demo"}) + "\n" for i, t, x in docs)
    )
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "why do cats purr"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def test_index_search_and_eval_with_a_tiny_model(tmp_path: Path, tiny_pylate_path: Path) -> None:
    data = write_beir(tmp_path / "beir")
    runner = CliRunner()
    out = tmp_path / "store"
    result = runner.invoke(main, ["index", str(data), str(out), "--model", str(tiny_pylate_path)])
    assert result.exit_code == 0, result.output
    assert "Indexed 3 documents" in result.output

    result = runner.invoke(main, ["search", str(out), "cats", "-k", "2", "--json", "--filter", "kind=demo"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["score"] >= rows[1]["score"]
    assert all(r["metadata"] == {"kind": "demo"} for r in rows)

    report = tmp_path / "metrics.json"
    result = runner.invoke(
        main,
        [
            "eval",
            "--data",
            str(data),
            "--model",
            str(tiny_pylate_path),
            "--output",
            str(report),
            "--metric",
            "ndcg@10",
            "--metric",
            "recall@3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.output
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["recall@3"] == 1.0 and 0.0 < metrics["ndcg@10"] <= 1.0

    cache = tmp_path / "encoded"
    args = [
        "eval",
        "--data",
        str(data),
        "--model",
        str(tiny_pylate_path),
        "--cache",
        str(cache),
        "--metric",
        "recall@3",
    ]
    assert runner.invoke(main, args).exit_code == 0 and cache.is_dir()
    result = runner.invoke(main, [*args, "--index", "plaid", "--nbits", "4"])
    assert result.exit_code == 0, result.output
    assert "Loaded 3 encoded documents" in result.output and "PLAID nbits=4" in result.output


def test_errors_are_clean_messages(tmp_path: Path, tiny_pylate_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["search", str(tmp_path / "missing"), "q"])
    assert result.exit_code == 1 and "IndexNotFoundError" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["search", str(tmp_path), "q", "--filter", "novalue"])
    assert result.exit_code == 1


def test_unreachable_hub_says_to_pass_a_local_folder(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("LATEINT_MODEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "lateint_plugins.core.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "answerdotai/answerai-colbert-small-v1" in proc.stderr
    assert "pass a local checkpoint folder" in proc.stderr


@pytest.mark.slow
def test_demo_on_the_real_checkpoint(answerai_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--model", str(answerai_path), "-k", "1"])
    assert result.exit_code == 0, result.output
    # Each sample query is answered by its passage (see core/data/sample_queries.jsonl).
    top = [line for line in result.stdout.splitlines() if line.strip().startswith("1.")]
    assert len(top) == 5
    for line, passage in zip(top, ("[d25 ", "[d29 ", "[d0", "[d05 ", "[d17 "), strict=True):
        assert passage in line, line


@pytest.mark.slow
def test_quickstart_example_runs_as_written(answerai_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--model", str(answerai_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and "Statins" in lines[0] and "'topic': 'medicine'" in lines[2]
