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


# ------------------------------------------------------------------ a finished tool: speed, entry points
def test_help_and_version_do_not_import_torch() -> None:
    """`--help`, every sub-command's `--help` and `--version` answer without importing torch."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from lateint_plugins.core.cli import main\n"
        "for args in (['--help'], ['--version'], *[[c, '--help'] for c in main.commands]):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    # The installed entry point, through `python -m`, checked with the interpreter's own import log.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lateint_plugins", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "click" in imported and not [m for m in imported if m.split(".")[0] in ("torch", "transformers")]


def test_version_is_single_sourced() -> None:
    from importlib.metadata import version

    import lateint_plugins

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"lateint {lateint_plugins.__version__}"
    assert version("lateint-plugins") == lateint_plugins.__version__


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lateint_plugins", "search", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "Usage: lateint search" in proc.stdout and "--queries" in proc.stdout


def test_default_model_matches_the_encoder() -> None:
    from lateint_plugins.core import cli, encoder

    assert cli.DEFAULT_MODEL == encoder.DEFAULT_MODEL


# ------------------------------------------------------------------ validation before any model loads
def _invoke_without_model(tmp_path: Path, args: list[str], stdin: str | None = None):
    """Run the CLI with a model path that cannot load: any model load would fail with ModelLoadError."""
    bad_model = str(tmp_path / "no-such-model")
    result = CliRunner().invoke(main, [*args, "--model", bad_model], input=stdin)
    assert "ModelLoadError" not in result.output and "Loading model" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"_id": "a", "text": "x"}, ["not", "an", "object"]], "docs.jsonl:2: expected a JSON object"),
        ([{"_id": "a", "text": "x"}, {"text": "no id"}], "docs.jsonl:2: the row has no '_id'"),
        ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "docs.jsonl:2: _id 'a' repeats line 1"),
        ([{"_id": "a", "text": "x"}, {"_id": "b", "body": "y"}], "docs.jsonl:2 (_id 'b'): the row has no 'text'"),
        ([{"_id": "a", "text": 3}], "docs.jsonl:1 (_id 'a'): 'text' must be a string"),
        ([{"_id": "", "text": "x"}], "docs.jsonl:1: '_id' must be a non-empty string"),
        ([{"_id": "a", "text": "x"}, {"_id": "b", "text": "bad \ud800"}], "docs.jsonl:2 (_id 'b', field texts)"),
    ],
)
def test_index_rejects_bad_rows_citing_file_and_line(tmp_path: Path, rows: list[object], expected: str) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", rows)
    result = _invoke_without_model(tmp_path, ["index", str(data), str(tmp_path / "out")])
    assert result.exit_code == 1 and expected in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_index_rejects_invalid_json_and_a_folder_without_corpus(tmp_path: Path) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', encoding="utf-8")
    result = _invoke_without_model(tmp_path, ["index", str(data), str(tmp_path / "out")])
    assert result.exit_code == 1 and "docs.jsonl:2: not valid JSON" in result.output
    folder = tmp_path / "not-beir"
    folder.mkdir()
    result = _invoke_without_model(tmp_path, ["index", str(folder), str(tmp_path / "out")])
    assert result.exit_code == 1 and "InvalidInputError" in result.output and "Traceback" not in result.output
    assert "has no corpus.jsonl" in result.output and "BEIR layout" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["search", "STORE", "q", "-k", "0"], "Invalid value for '-k'"),
        (["search", "STORE", "q", "--filter", "novalue"], "--filter expects KEY=VALUE"),
        (["search", "STORE", "   "], "QUERY is empty"),
        (["search", "STORE"], "give either QUERY or --queries"),
        (["search", "STORE", "q", "--queries", "QUERIES"], "give either QUERY or --queries"),
        (["search", "STORE", "--queries", "QUERIES"], "queries.txt:2 (query '2') is empty"),
        (["index", "DOCS", "OUT", "--nbits", "2"], "--nbits 2 only applies to --index plaid"),
        (["index", "DOCS", "OUT", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["eval", "--data", "BEIR", "--metric", "ndcg@x"], "the cutoff in 'ndcg@x' must be a positive integer"),
        (["eval", "--data", "BEIR", "--metric", "map@10"], "unknown metric 'map@10'"),
        (["eval", "--data", "BEIR", "--nbits", "4"], "--nbits 4 only applies to --index plaid"),
        (["eval", "--data", "BEIR", "--output", "NOWHERE/m.json"], "--output: the folder"),
        (["demo", "--query", " "], "--query number 1 is empty"),
        (["demo", "-k", "-1"], "Invalid value for '-k'"),
    ],
)
def test_cheap_arguments_are_checked_before_the_model_loads(tmp_path: Path, args: list[str], expected: str) -> None:
    paths = {
        "STORE": str(tmp_path),
        "QUERIES": str(tmp_path / "queries.txt"),
        "DOCS": str(write_jsonl(tmp_path / "docs.jsonl", [{"_id": "a", "text": "x"}])),
        "OUT": str(tmp_path / "out"),
        "BEIR": str(write_beir(tmp_path / "beir")),
        "NOWHERE/m.json": str(tmp_path / "nowhere" / "m.json"),
    }
    (tmp_path / "queries.txt").write_text('first query\n{"text": " "}\n', encoding="utf-8")
    result = _invoke_without_model(tmp_path, [paths.get(a, a) for a in args])
    assert result.exit_code in (1, 2) and expected in result.output, result.output


def test_eval_cache_is_keyed_by_dataset_and_model(tmp_path: Path, tiny_pylate_path: Path, tiny_bert_path: Path) -> None:
    runner = CliRunner()
    first = write_beir(tmp_path / "first")
    second = write_beir(tmp_path / "second")
    with open(second / "corpus.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "d4", "text": "Another corpus entirely."}) + "\n")
    cache = tmp_path / "cache"
    args = ["eval", "--cache", str(cache), "--metric", "recall@3"]
    result = runner.invoke(main, [*args, "--data", str(first), "--model", str(tiny_pylate_path)])
    assert result.exit_code == 0, result.output
    # Another corpus: refused before any model loads, naming both datasets and the way out.
    result = _invoke_without_model(tmp_path, [*args, "--data", str(second)])
    assert (
        result.exit_code == 1 and "holds the encoded corpus of" in result.output and "--rebuild-cache" in result.output
    )
    # Another model, same corpus: the store's fingerprint check refuses it.
    result = runner.invoke(main, [*args, "--data", str(first), "--model", str(tiny_bert_path)])
    assert result.exit_code == 1 and "encoded with another model" in result.output, result.output
    # --rebuild-cache re-encodes; the next run reuses the new cache.
    result = runner.invoke(main, [*args, "--data", str(second), "--model", str(tiny_pylate_path), "--rebuild-cache"])
    assert result.exit_code == 0 and "Loaded" not in result.output and "4 documents" in result.output, result.output
    result = runner.invoke(main, [*args, "--data", str(second), "--model", str(tiny_pylate_path)])
    assert result.exit_code == 0 and "Loaded 4 encoded documents" in result.output, result.output
    # A non-empty folder that is not a cache is never taken for one.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = _invoke_without_model(tmp_path, ["eval", "--cache", str(other), "--data", str(first)])
    assert result.exit_code == 1 and "is not a cache written by `lateint eval`" in result.output


def test_eval_output_records_settings_timings_and_versions(tmp_path: Path, tiny_pylate_path: Path) -> None:
    data = write_beir(tmp_path / "beir")
    report = tmp_path / "report.json"
    args = ["eval", "--data", str(data), "--model", str(tiny_pylate_path), "--metric", "recall@3"]
    result = CliRunner().invoke(main, [*args, "--index", "plaid", "--nbits", "1", "--output", str(report)])
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    assert payload["index"] == "plaid" and payload["nbits"] == 1 and payload["k"] == 3
    assert set(payload["timings"]) == {"load_model_s", "encode_corpus_s", "build_index_s", "search_s"}
    assert all(v >= 0 for v in payload["timings"].values())
    assert {"lateint-plugins", "torch", "transformers", "python"} <= set(payload["versions"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.json")] == []  # no temp file left


def test_index_plaid_ids_from_line_numbers_and_many_queries(tmp_path: Path, tiny_pylate_path: Path) -> None:
    runner = CliRunner()
    texts = ["Cats purr and sleep a lot.", "Rockets burn fuel to reach orbit.", "Bread rises because yeast makes gas."]
    data = write_jsonl(tmp_path / "docs.jsonl", [{"title": "t", "text": t, "kind": "demo"} for t in texts])
    out = tmp_path / "store"
    result = runner.invoke(main, ["index", str(data), str(out), "--model", str(tiny_pylate_path), "--index", "plaid"])
    assert result.exit_code == 0, result.output
    assert "Indexed 3 documents (plaid)" in result.output
    manifest = json.loads((out / "index" / "manifest.json").read_text())
    assert manifest["kind"] == "plaid", manifest["kind"]

    # Rows without ids are numbered by their line: stable across runs of the same file.
    result = runner.invoke(main, ["search", str(out), "rockets", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["id"] for line in result.stdout.splitlines()) == ["1", "2", "3"]

    # Many queries in one process: a file of plain lines and JSONL rows, or stdin.
    queries = tmp_path / "queries.jsonl"
    queries.write_text('why do cats purr\n{"_id": "q-bread", "text": "yeast"}\n', encoding="utf-8")
    result = runner.invoke(main, ["search", str(out), "--queries", str(queries), "-k", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["query_id"] for r in rows] == ["1", "q-bread"] and all(r["n_results"] == 2 for r in rows)
    assert all(len(r["results"]) == 2 and r["results"][0]["rank"] == 1 for r in rows)
    result = runner.invoke(main, ["search", str(out), "--queries", "-", "--filter", "kind=none"], input="cats\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"query_id": "1", "query": "cats", "n_results": 0, "results": []}

    # A search that matches nothing says so.
    result = runner.invoke(main, ["search", str(out), "cats", "--filter", "kind=none"])
    assert result.exit_code == 0 and "0 results (no document matches --filter)" in result.stdout


def _record_progress(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every update of the store's progress bar (what is drawn depends on timing; updates do not)."""
    from lateint_plugins.core import store as store_module
    from tqdm.auto import tqdm

    updates: list[int] = []

    class Recording(tqdm):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            updates.append(int(n or 0))
            return super().update(n)

    monkeypatch.setattr(store_module, "tqdm", Recording)
    return updates


def test_index_progress_moves_per_batch(
    tmp_path: Path, tiny_pylate_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar moves once per encoded batch (not once per 2,048-document chunk) and shows a rate."""
    updates = _record_progress(monkeypatch)
    rows = [{"_id": f"d{i}", "text": f"document number {i} " * (1 + i % 5)} for i in range(10)]
    data = write_jsonl(tmp_path / "docs.jsonl", rows)
    result = CliRunner().invoke(
        main, ["index", str(data), str(tmp_path / "out"), "--model", str(tiny_pylate_path), "--batch-size", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "Loading model" in result.stderr
    assert updates == [4, 4, 2]
    assert "10/10" in result.stderr and "doc/s" in result.stderr


def test_progress_moves_per_encoded_batch_and_changes_nothing(tiny_encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a bar, add_texts encodes exactly as without one; the bar moves per batch of 2, not per chunk of 4."""
    import torch
    from lateint_plugins.core.store import LateInteractionStore

    texts = [("word " * (1 + (7 * i) % 11)) + f"item {i}" for i in range(9)]
    ids = [f"d{i}" for i in range(9)]
    plain, shown = LateInteractionStore(tiny_encoder), LateInteractionStore(tiny_encoder)
    plain.add_texts(texts, ids=ids, batch_size=2, chunk_size=4)
    updates = _record_progress(monkeypatch)
    shown.add_texts(texts, ids=ids, batch_size=2, chunk_size=4, show_progress_bar=True)
    assert plain.index.ids == shown.index.ids == ids
    for a, b in zip(plain.index.embeddings(), shown.index.embeddings(), strict=True):
        torch.testing.assert_close(a, b)
    assert updates == [2, 2, 2, 2, 1]  # per batch of 2 (chunks of 4, then 4, then 1), not per chunk


def test_precision_reaches_the_encoder_and_a_store_opens_at_another_precision(
    tmp_path: Path, tiny_pylate_path: Path
) -> None:
    """--precision picks the encoder's precision; the fingerprint is precision-free, so an int8-built store
    is searched at bf16; an unknown precision is refused before any model loads."""
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"cell biology {i}"}) + "\n" for i in range(4)))
    runner = CliRunner()
    out = tmp_path / "store"
    built = runner.invoke(main, ["index", str(data), str(out), "--model", str(tiny_pylate_path), "--precision", "int8"])
    assert built.exit_code == 0, built.output
    found = runner.invoke(main, ["search", str(out), "cell", "--json", "--precision", "bf16"])
    assert found.exit_code == 0, found.output
    assert {json.loads(line)["id"] for line in found.stdout.splitlines()} == {"d0", "d1", "d2", "d3"}
    refused = runner.invoke(
        main, ["index", str(data), str(tmp_path / "x"), "--model", "/nonexistent", "--precision", "fp8"]
    )
    assert refused.exit_code == 2 and "fp8" in refused.output and "Loading model" not in refused.output
