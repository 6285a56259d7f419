"""Encoder throughput per precision: our ``ColBERTEncoder`` vs sentence-transformers 6 and fastembed.

Use this when you change the encoder (precision, batching, framing, device handling) and want to know
whether it got faster or slower than the references, and whether each precision still produces the
fp32 vectors. Every encoder loads the same checkpoint and encodes the same texts in one process (fastembed
in its own venv, see ``--fastembed-python``), so ratios are directly comparable; absolute numbers only on
the same machine and load.

Encoders: ours at every ``--precisions`` (``default`` is ``from_pretrained()`` with no precision, i.e.
``"auto"``) and sentence-transformers 6 ``MultiVectorEncoder`` in fp32, the reference. Method: load
all (timed), one warm-up batch each, then per repeat every encoder in turn on the documents, then on
the queries (ABCD... ABCD...), so drift (thermal, other processes) hits all alike. Reported: median
documents/s, tokens/s (document vectors returned per second) and queries/s over repeats, each with
its ratio to sentence-transformers fp32; load averages before and after; per-token cosine of each of our
precisions against our fp32 (and ours fp32 against sentence-transformers) with token counts compared.
Everything is timed up to float32 CPU tensors, which is what our encoder returns.

``--processes P`` instead times multi-process encoding (``start_multi_process_pool``): the same
documents through one process with ``--threads`` threads and through P workers with ``threads // P``
each, alternated per repeat, with the per-repeat ratio (interleaved, so load drift hits both alike).

``--e2e`` instead times end-to-end SciFact indexing, encode + PLAID build, on the same texts and
checkpoint: ours (default precision, ``PLAIDIndex`` at its default 2 bits) in this process, then PyLate
1.6 (``models.ColBERT``, sentence-transformers underneath, fp32, and ``indexes.PLAID`` at its default
4 bits; the Stanford backend where fast-plaid cannot be imported) in its own venv
(``--pylate-python``). ``--limit N`` takes the first N documents; ``--e2e-nbits`` gives both the same
bits. One run each, not interleaved: on a busy machine compare the load averages recorded.

``--quality`` instead measures SciFact nDCG@10 / Recall@100 per precision: the whole corpus encoded
at each precision (cached under ``--quality-cache``), exact MaxSim search of every test query, scored
by ``lateint_plugins.core.evaluation.evaluate`` (what ``lateint eval`` does); the gate is bf16 within
0.003 and int8 within 0.005 of fp32.

Run from the repository root::

    python benchmarks/bench_encoder.py                      # 256 docs, 300 queries, 3 repeats
    python benchmarks/bench_encoder.py --n-docs 64 --n-queries 64 --repeats 1   # smoke test
    python benchmarks/bench_encoder.py --fastembed-python ../venvs/fastembed/bin/python
    python benchmarks/bench_encoder.py --quality --quality-cache /tmp/quality-cache
    python benchmarks/bench_encoder.py --processes 2 --threads 2 --n-docs 256 --repeats 3
    python benchmarks/bench_encoder.py --e2e --limit 500 --pylate-python ../venvs/pylate/bin/python
    python benchmarks/bench_encoder.py --e2e --pylate-python ../venvs/pylate/bin/python   # full SciFact

The table goes to stdout, progress to stderr, everything to ``--output`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import ROOT, add_data_arguments, load_average, machine_info, machine_lines, prepare_process

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_encoder.json"
DEFAULT_QUALITY_OUTPUT = ROOT / "benchmarks" / "results" / "bench_encoder_quality.json"
DEFAULT_PROCESSES_OUTPUT = ROOT / "benchmarks" / "results" / "bench_encoder_processes.json"
DEFAULT_E2E_OUTPUT = ROOT / "benchmarks" / "results" / "bench_encoder_e2e.json"
PRECISIONS = ("default", "fp32", "bf16", "int8", "fp16", "auto")
REFERENCE = "sentence-transformers fp32"
QUALITY_GATE = {"bf16": 0.003, "int8": 0.005, "fp16": 0.003}

logger = logging.getLogger("bench_encoder")

Encode = Callable[[Sequence[str]], list[Any]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Documents/s per precision: ColBERTEncoder vs sentence-transformers 6 (and fastembed).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser, split=False)
    parser.add_argument("--n-docs", type=int, default=256, help="first N documents of corpus.jsonl")
    parser.add_argument("--n-queries", type=int, default=300, help="first N queries of queries.jsonl")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder (median reported)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size for documents and queries")
    parser.add_argument(
        "--precisions",
        default="default,fp32,bf16,int8",
        help=f"our precisions, comma-separated, from {PRECISIONS} ('default': no precision= given; "
        "--processes times the first)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (None: keep torch's current number)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for every encoder, e.g. cpu or cuda")
    parser.add_argument(
        "--fastembed-python",
        type=Path,
        default=None,
        help="python of a venv with fastembed (outside the repo): also time LateInteractionTextEmbedding on a "
        "local ONNX export of the same checkpoint",
    )
    parser.add_argument("--quality", action="store_true", help="SciFact nDCG@10 per precision instead of speed")
    parser.add_argument("--quality-cache", type=Path, default=None, help="--quality: encoded corpora are kept here")
    parser.add_argument(
        "--quality-docs",
        type=int,
        default=None,
        help="--quality on a subset: every document judged for the split's queries plus the first N others "
        "(file order); default: the whole corpus",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="time P pool workers (threads // P each) against one process, interleaved, instead",
    )
    parser.add_argument("--e2e", action="store_true", help="SciFact indexing (encode + PLAID build) vs PyLate")
    parser.add_argument("--limit", type=int, default=None, help="--e2e: first N documents (default: all)")
    parser.add_argument(
        "--e2e-nbits",
        type=int,
        choices=(1, 2, 4),
        default=None,
        help="--e2e: PLAID bits for both (default: each library's own, ours 2, PyLate 4)",
    )
    parser.add_argument(
        "--pylate-python",
        type=Path,
        default=ROOT.parent / "venvs" / "pylate" / "bin" / "python",
        help="--e2e: python of a venv with pylate 1.6 (outside the repo)",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write (default: results/...)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    for name in ("n_docs", "n_queries", "repeats", "batch_size", "threads", "processes", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in args.precisions if p not in PRECISIONS]
    if unknown or not args.precisions:
        parser.error(f"--precisions: {unknown or 'none'} not in {PRECISIONS}.")
    if sum(map(bool, (args.quality, args.e2e, args.processes))) > 1:
        parser.error("--quality, --e2e and --processes are separate runs; pass one of them.")
    if args.output is None:
        args.output = (
            DEFAULT_QUALITY_OUTPUT
            if args.quality
            else DEFAULT_E2E_OUTPUT
            if args.e2e
            else DEFAULT_PROCESSES_OUTPUT
            if args.processes
            else DEFAULT_OUTPUT
        )
    return args


# ---------------------------------------------------------------------- inputs
def check_inputs(model: Path, data: Path) -> None:
    """Exit with a message saying what is missing and how to point at it."""
    problems = []
    if not model.is_dir():
        problems.append(f"model folder {model} does not exist (pass --model PATH to a local checkpoint folder)")
    elif not (model / "config.json").is_file():
        problems.append(f"model folder {model} has no config.json; is it a Hugging Face checkpoint?")
    if not data.is_dir():
        problems.append(f"data folder {data} does not exist (pass --data PATH to a BEIR folder)")
    else:
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (data / name).is_file():
                problems.append(f"data folder {data} has no {name} (expected the BEIR layout)")
    if problems:
        raise SystemExit("bench_encoder: " + "; ".join(problems) + ".")


def read_jsonl_texts(path: Path, n: int, *, with_title: bool) -> list[str]:
    """The first ``n`` non-empty texts; documents are ``title + " " + text`` as in BEIR."""
    texts: list[str] = []
    skipped = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            text = (f"{row.get('title', '')} {row.get('text', '')}" if with_title else row.get("text", "")).strip()
            # Our encoder rejects empty texts, so both sides get the same non-empty list.
            if not text:
                skipped += 1
                continue
            texts.append(text)
            if len(texts) == n:
                break
    if skipped:
        logger.warning("Skipped %d empty texts in %s", skipped, path)
    if len(texts) < n:
        logger.warning("%s has only %d usable texts; asked for %d", path, len(texts), n)
    if not texts:
        raise SystemExit(f"bench_encoder: {path} has no usable texts.")
    return texts


# ---------------------------------------------------------------------- timing
def timed(encode: Encode, texts: Sequence[str], sync: Callable[[], None]) -> tuple[float, list[Any]]:
    sync()
    start = time.perf_counter()
    out = encode(texts)
    sync()
    return time.perf_counter() - start, out


def parity(ours: list[Any], theirs: list[Any], torch: Any) -> dict[str, Any]:
    """Token counts per text and per-token cosine between two encoders' outputs."""
    mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a.shape[0] != b.shape[0]]
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=True) if a.shape[0] == b.shape[0] and a.shape[0] > 0]
    result: dict[str, Any] = {
        "texts": len(ours),
        "same_token_count": len(ours) - len(mismatched),
        "mismatched_indices": mismatched[:20],
        "tokens_compared": 0,
        "cosine_min": None,
        "cosine_mean": None,
    }
    if pairs and all(a.shape[1] == b.shape[1] for a, b in pairs):
        cos = torch.cat([torch.nn.functional.cosine_similarity(a, b, dim=-1) for a, b in pairs])
        result.update(tokens_compared=int(cos.numel()), cosine_min=float(cos.min()), cosine_mean=float(cos.mean()))
    elif pairs:
        logger.warning("Output dimensions differ (ours %d, theirs %d)", pairs[0][0].shape[1], pairs[0][1].shape[1])
    return result


def summarise(seconds: list[float], n: int) -> dict[str, Any]:
    rates = [n / s for s in seconds]
    return {
        "seconds": seconds,
        "per_second": rates,
        "median_per_second": statistics.median(rates),
        "min_per_second": min(rates),
        "max_per_second": max(rates),
    }


# ---------------------------------------------------------------------- report
def _rate_cell(s: dict[str, Any]) -> str:
    """Median, with the min-max range when there is more than one repeat."""
    if len(s["per_second"]) == 1:
        return f"{s['median_per_second']:.1f}"
    return f"{s['median_per_second']:.1f} ({s['min_per_second']:.1f}-{s['max_per_second']:.1f})"


def format_table(report: dict[str, Any]) -> str:
    cfg, res, m = report["config"], report["results"], report["machine"]
    title = (
        f"Encoder throughput: {Path(cfg['model']).name}, {cfg['n_docs']} docs / {cfg['n_queries']} queries, "
        f"{m['device']}, {m['torch_threads']} threads, batch {cfg['batch_size']}, median of {cfg['repeats']}"
    )
    rows = [
        (
            "encoder",
            "load s",
            "docs/s",
            "tokens/s",
            "queries/s",
            f"docs/s vs {REFERENCE}",
            "paired",
            "cosine vs ours fp32",
        )
    ]
    for name, r in res["encoders"].items():
        p = r.get("parity_vs_ours_fp32")
        cos = (
            f"min {p['cosine_min']:.4f} mean {p['cosine_mean']:.5f} ({p['same_token_count']}/{p['texts']} same count)"
            if p and p["cosine_min"] is not None
            else ""
        )
        rows.append(
            (
                name,
                f"{r['load_seconds']:.1f}",
                _rate_cell(r["documents"]),
                f"{r['documents_tokens_per_second']:.0f}",
                _rate_cell(r["queries"]) if "queries" in r else "",
                f"{r['documents_ratio_vs_reference']:.2f}x",
                f"{r['documents_ratio_median_of_pairs']:.2f}x" if "documents_ratio_median_of_pairs" in r else "",
                cos,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title, ""]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    ref = res.get("parity_ours_fp32_vs_reference")
    if ref and ref["cosine_min"] is not None:
        lines.append(
            f"\nours fp32 vs {REFERENCE}: same token count {ref['same_token_count']}/{ref['texts']}, "
            f"cosine min {ref['cosine_min']:.6f} mean {ref['cosine_mean']:.7f}"
        )
    if res.get("fastembed_status"):
        lines.append(f"fastembed: {res['fastembed_status']}")
    lines.append("")
    lines.extend(machine_lines(m))
    lines.append(f"load average: start {m['load_average_start']}, end {m['load_average_end']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- fastembed (in its own venv)
FASTEMBED_DRIVER = r"""
import json, sys, time
from fastembed import LateInteractionTextEmbedding
spec = json.loads(sys.stdin.read())
model = LateInteractionTextEmbedding(spec["name"], specific_model_path=spec["folder"], threads=spec["threads"])
docs, queries = spec["docs"], spec["queries"]
list(model.embed(docs[: spec["batch_size"]], batch_size=spec["batch_size"]))
out = {"documents": [], "queries": []}
for _ in range(spec["repeats"]):
    t = time.perf_counter(); d = list(model.embed(docs, batch_size=spec["batch_size"]))
    out["documents"].append(time.perf_counter() - t)
    t = time.perf_counter(); list(model.query_embed(queries))
    out["queries"].append(time.perf_counter() - t)
out["tokens"] = int(sum(len(x) for x in d))
out["counts"] = [int(len(x)) for x in d]
out["version"] = __import__("fastembed").__version__
print(json.dumps(out))
"""


def run_fastembed(python: Path, folder: Path, docs: list[str], queries: list[str], args: argparse.Namespace) -> Any:
    """Time fastembed in its venv on ``folder`` (an ONNX export); returns its timings or raises with why not."""
    import subprocess

    spec = {
        "name": "answerdotai/answerai-colbert-small-v1",
        "folder": str(folder),
        "threads": args.threads,
        "docs": docs,
        "queries": queries,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(python), "-c", FASTEMBED_DRIVER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- quality gate
def quality(args: argparse.Namespace) -> int:
    """SciFact nDCG@10 per precision: the full corpus, exact search, ``evaluate`` as ``lateint eval`` does."""
    import torch
    from lateint_plugins.core.encoder import ColBERTEncoder
    from lateint_plugins.core.evaluation import evaluate, load_beir
    from lateint_plugins.core.index import ExactIndex
    from safetensors.torch import load_file, save_file

    dataset = load_beir(args.data, split="test")
    all_ids, all_texts = dataset.document_texts()
    subset = list(range(len(all_ids)))
    if args.quality_docs is not None:
        judged = {d for per_query in dataset.qrels.values() for d in per_query}
        others = [i for i, d in enumerate(all_ids) if d not in judged][: args.quality_docs]
        subset = sorted({i for i, d in enumerate(all_ids) if d in judged} | set(others))
    doc_ids, doc_texts = [all_ids[i] for i in subset], [all_texts[i] for i in subset]
    query_ids = [q for q, t in dataset.queries.items() if t.strip()]
    cache = args.quality_cache
    results: dict[str, Any] = {}
    machine = machine_info(torch, args.device, ("torch", "transformers"))
    for precision in [p for p in args.precisions if p != "default"]:
        encoder = ColBERTEncoder.from_pretrained(
            args.model, device=args.device, precision=precision, local_files_only=True
        )
        # The whole corpus's cache serves any subset; a subset's cache only that subset.
        full = cache / f"docs-{precision}.safetensors" if cache is not None else None
        part = cache / f"docs-{precision}-{len(subset)}of{len(all_ids)}.safetensors" if cache is not None else None
        cached = full if full is not None and full.is_file() else part
        seconds = None
        if cached is not None and cached.is_file():
            state = load_file(cached)
            docs = list(state["tokens"].split(state["lengths"].tolist()))
            if cached == full and len(subset) < len(all_ids):
                docs = [docs[i] for i in subset]
        else:
            start = time.perf_counter()
            docs = encoder.encode_documents(doc_texts, batch_size=args.batch_size, show_progress_bar=True)
            seconds = time.perf_counter() - start
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tokens = torch.cat(docs).contiguous()
                save_file({"tokens": tokens, "lengths": torch.tensor([len(d) for d in docs])}, str(cached))
        index = ExactIndex(device=args.device)
        index.add(doc_ids, docs)
        hits = index.search(encoder.encode_queries([dataset.queries[q] for q in query_ids]), k=100)
        run = {q: [h.id for h in row] for q, row in zip(query_ids, hits, strict=True)}
        scores = evaluate(run, dataset.qrels, metrics=("ndcg@10", "recall@100", "mrr@10"))
        results[precision] = {
            "encoder": repr(encoder),
            "encode_seconds": seconds,
            "encoded_from_cache": seconds is None,
            **scores,
        }
        logger.info("%s: %s", precision, results[precision])
    if "fp32" in results:
        for precision, r in results.items():
            if precision in QUALITY_GATE:
                r["ndcg@10_delta_vs_fp32"] = r["ndcg@10"] - results["fp32"]["ndcg@10"]
                r["gate"] = QUALITY_GATE[precision]
                r["passes"] = abs(r["ndcg@10_delta_vs_fp32"]) <= QUALITY_GATE[precision]
    machine["load_average_end"] = load_average()
    report = {
        "benchmark": "bench_encoder --quality",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "data": str(args.data),
        "documents": len(doc_ids),
        "corpus_documents": len(all_ids),
        "subset": None
        if args.quality_docs is None
        else f"every judged document plus the first {args.quality_docs} unjudged ones in file order",
        "queries": len(query_ids),
        "machine": machine,
        "results": results,
    }
    print(
        f"SciFact test ({len(doc_ids)} of {len(all_ids)} docs, {len(query_ids)} queries), exact MaxSim, "
        f"{Path(args.model).name}"
    )
    for precision, r in results.items():
        line = f"{precision:<6} nDCG@10 {r['ndcg@10']:.4f}  R@100 {r['recall@100']:.4f}"
        if "gate" in r:
            verdict = "pass" if r["passes"] else "FAIL"
            line += f"  delta {r['ndcg@10_delta_vs_fp32']:+.4f} (gate {r['gate']}: {verdict})"
        print(line)
    write_json(args.output, report)
    return 0


# ---------------------------------------------------------------------- several processes
def processes(args: argparse.Namespace) -> int:
    """One process x ``threads`` vs ``--processes`` workers x ``threads // processes``, alternated per repeat."""
    import torch
    from lateint_plugins.core.encoder import ColBERTEncoder

    threads = args.threads or torch.get_num_threads()
    per_worker = max(1, threads // args.processes)
    machine = machine_info(torch, args.device, ("torch", "transformers"))
    docs = read_jsonl_texts(args.data / "corpus.jsonl", args.n_docs, with_title=True)
    precision = args.precisions[0]  # "default": no precision= (auto)
    options = {} if precision == "default" else {"precision": precision}
    encoder = ColBERTEncoder.from_pretrained(
        args.model, device=args.device, local_files_only=True, num_threads=threads, **options
    )
    start = time.perf_counter()
    pool = encoder.start_multi_process_pool(processes=args.processes, threads_per_process=per_worker)
    pool_start = time.perf_counter() - start
    logger.info("%r: %d workers started in %.1f s", encoder, args.processes, pool_start)
    one, many, same = [], [], True
    try:
        encoder.encode_documents(docs[: args.batch_size], batch_size=args.batch_size)  # warm-up, both ways
        encoder.encode_documents(docs[: args.batch_size], batch_size=args.batch_size, pool=pool)
        for r in range(args.repeats):
            t = time.perf_counter()
            single = encoder.encode_documents(docs, batch_size=args.batch_size)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            pooled = encoder.encode_documents(docs, batch_size=args.batch_size, pool=pool)
            many.append(time.perf_counter() - t)
            same = same and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(single, pooled, strict=True))
            logger.info(
                "repeat %d/%d: 1x%d %.1f docs/s, %dx%d %.1f docs/s (ratio %.2f), load %s",
                r + 1,
                args.repeats,
                threads,
                len(docs) / one[-1],
                args.processes,
                per_worker,
                len(docs) / many[-1],
                one[-1] / many[-1],
                load_average(),
            )
    finally:
        pool.close()
    ratios = [a / b for a, b in zip(one, many, strict=True)]
    machine["load_average_end"] = load_average()
    report = {
        "benchmark": "bench_encoder --processes",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {"model": str(args.model), "n_docs": len(docs), "batch_size": args.batch_size},
        "encoder": repr(encoder),
        "one_process": {"threads": threads, **summarise(one, len(docs))},
        "pool": {"processes": args.processes, "threads_per_process": per_worker, **summarise(many, len(docs))},
        "pool_start_seconds": pool_start,
        "ratio_pool_over_one_per_repeat": ratios,
        "ratio_median": statistics.median(ratios),
        "same_vectors": same,
        "machine": machine,
    }
    print(
        f"{len(docs)} docs, {encoder.precision}: 1 process x {threads} threads {_rate_cell(report['one_process'])} "
        f"docs/s; {args.processes} processes x {per_worker} {_rate_cell(report['pool'])} docs/s; pool / one per "
        f"repeat {', '.join(f'{x:.2f}' for x in ratios)} (median {report['ratio_median']:.2f}); pool start "
        f"{pool_start:.1f} s; same vectors: {same}; load {machine['load_average_start']} -> "
        f"{machine['load_average_end']}"
    )
    write_json(args.output, report)
    return 0


# ---------------------------------------------------------------------- end to end (encode + PLAID build)
PYLATE_DRIVER = r"""
import json, sys, tempfile, time
spec = json.loads(sys.stdin.read())
import torch
if spec["threads"]:
    torch.set_num_threads(spec["threads"])
from pylate import indexes, models
import pylate, sentence_transformers
out = {"version": pylate.__version__, "sentence_transformers": sentence_transformers.__version__}
t = time.perf_counter()
model = models.ColBERT(model_name_or_path=spec["model"], device="cpu")
out["load_seconds"] = time.perf_counter() - t
t = time.perf_counter()
vectors = model.encode(spec["docs"], is_query=False, batch_size=spec["batch_size"], show_progress_bar=False)
out["encode_seconds"] = time.perf_counter() - t
out["tokens"] = int(sum(len(v) for v in vectors))
try:
    import fast_plaid  # noqa: F401
    use_fast = True
except Exception as exc:
    use_fast = False
    out["fast_plaid"] = f"not importable ({type(exc).__name__}); Stanford backend (use_fast=False)"
    # The vendored Stanford code compiles C++ extensions on first use: not timed, as for colbert-ai.
    from pylate.indexes.stanford_nlp.search.index_storage import IndexScorer
    t = time.perf_counter()
    IndexScorer.try_load_torch_extensions(use_gpu=False)
    out["extension_load_seconds"] = time.perf_counter() - t
options = {} if spec["nbits"] is None else {"nbits": spec["nbits"]}
if not use_fast:
    options["embedding_size"] = int(vectors[0].shape[1])
folder = tempfile.mkdtemp(prefix="pylate-e2e-")
t = time.perf_counter()
index = indexes.PLAID(index_folder=folder, index_name="index", override=True, use_fast=use_fast, show_progress=False,
                      **options)
index.add_documents(documents_ids=spec["ids"], documents_embeddings=vectors)
out["build_seconds"] = time.perf_counter() - t
backend = index._index
out["nbits"] = getattr(backend, "nbits", None) or getattr(getattr(backend, "config", None), "nbits", None)
out["backend"] = "fast-plaid" if use_fast else "Stanford PLAID (use_fast=False)"
__import__("shutil").rmtree(folder, ignore_errors=True)
print(json.dumps(out))
"""


def run_pylate(python: Path, model: Path, ids: list[str], docs: list[str], args: argparse.Namespace) -> Any:
    """PyLate's encode + PLAID build in its venv; returns its timings or raises with the reason."""
    import subprocess

    if not python.is_file():
        raise FileNotFoundError(f"no python at {python} (pass --pylate-python PATH to a venv with pylate 1.6)")
    spec = {
        "model": str(model),
        "ids": ids,
        "docs": docs,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "nbits": args.e2e_nbits,
    }
    done = subprocess.run(
        [str(python), "-c", PYLATE_DRIVER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def end_to_end(args: argparse.Namespace) -> int:
    """Ours (encode at the default precision + PLAID build) then PyLate's, on the same SciFact texts."""
    import torch
    from lateint_plugins.core.encoder import ColBERTEncoder
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex

    try:
        import faiss  # PLAID's k-means runs in FAISS's own OpenMP pool

        if args.threads is not None:
            faiss.omp_set_num_threads(args.threads)
    except ImportError as exc:
        raise SystemExit(
            f"bench_encoder --e2e: PLAID needs FAISS: pip install 'lateint-plugins[faiss]' ({exc})"
        ) from exc
    machine = machine_info(torch, args.device, ("torch", "transformers", "faiss-cpu"))
    docs = read_jsonl_texts(args.data / "corpus.jsonl", args.limit or 10**9, with_title=True)
    ids = [str(i) for i in range(len(docs))]
    rows: dict[str, dict[str, Any]] = {}

    load_before = load_average()
    start = time.perf_counter()
    encoder = ColBERTEncoder.from_pretrained(args.model, device=args.device, local_files_only=True)
    load_seconds = time.perf_counter() - start
    logger.info("ours: %r, encoding %d documents", encoder, len(docs))
    start = time.perf_counter()
    vectors = encoder.encode_documents(docs, batch_size=args.batch_size, show_progress_bar=True)
    encode_seconds = time.perf_counter() - start
    config = PLAIDConfig() if args.e2e_nbits is None else PLAIDConfig(nbits=args.e2e_nbits)
    start = time.perf_counter()
    index = PLAIDIndex(config=config, device=args.device)
    index.add(ids, vectors)
    if hasattr(index, "_ivf_lists"):  # built lazily on the first search: forced here so it is timed
        index._ivf_lists()
    build_seconds = time.perf_counter() - start
    rows["ours"] = {
        "name": f"ours {encoder.precision} + PLAIDIndex nbits={config.nbits}",
        "load_seconds": load_seconds,
        "encode_seconds": encode_seconds,
        "build_seconds": build_seconds,
        "tokens": int(sum(v.shape[0] for v in vectors)),
        "repr": repr(encoder),
        "plaid_config": repr(config),
        "load_average": [load_before, load_average()],
    }
    logger.info("ours: %s", rows["ours"])
    del vectors, index

    load_before = load_average()
    try:
        theirs = run_pylate(args.pylate_python, args.model, ids, docs, args)
    except Exception as exc:
        logger.warning("PyLate not measured: %s", exc)
        pylate_status = f"not measured: {type(exc).__name__}: {exc}"
    else:
        pylate_status = f"PyLate {theirs['version']} (sentence-transformers {theirs['sentence_transformers']})"
        rows["pylate"] = {
            "name": f"PyLate {theirs['version']} ColBERT fp32 + PLAID {theirs['backend']} nbits={theirs['nbits']}",
            **theirs,
            "load_average": [load_before, load_average()],
        }
    for row in rows.values():
        row["total_seconds"] = row["encode_seconds"] + row["build_seconds"]
        row["docs_per_second"] = len(docs) / row["total_seconds"]
    if "pylate" in rows:
        rows["ours"]["speedup_vs_pylate"] = rows["pylate"]["total_seconds"] / rows["ours"]["total_seconds"]
    machine["load_average_end"] = load_average()
    report = {
        "benchmark": "bench_encoder --e2e",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {
            "model": str(args.model),
            "data": str(args.data),
            "n_docs": len(docs),
            "batch_size": args.batch_size,
            "nbits": args.e2e_nbits,
            "order": "ours, then PyLate in its own process (not interleaved); model load not in the totals",
        },
        "pylate_status": pylate_status,
        "machine": machine,
        "results": rows,
    }
    print(format_e2e(report))
    write_json(args.output, report)
    return 0


def format_e2e(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    lines = [
        f"SciFact indexing, {cfg['n_docs']} documents, {Path(cfg['model']).name}, {m['torch_threads']} threads, "
        f"batch {cfg['batch_size']} (model load excluded)",
        "",
    ]
    table = [("pipeline", "encode s", "build s", "total s", "docs/s", "tokens", "load avg (before -> after)")]
    for row in report["results"].values():
        table.append(
            (
                row["name"],
                f"{row['encode_seconds']:.1f}",
                f"{row['build_seconds']:.1f}",
                f"{row['total_seconds']:.1f}",
                f"{row['docs_per_second']:.1f}",
                str(row["tokens"]),
                f"{row['load_average'][0][0]:.2f} -> {row['load_average'][1][0]:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    ours = report["results"]["ours"]
    if "speedup_vs_pylate" in ours:
        lines.append(f"\nours / PyLate end to end: {ours['speedup_vs_pylate']:.2f}x faster")
    lines.append(f"PyLate: {report['pylate_status']}")
    lines.append("")
    lines.extend(machine_lines(m))
    lines.append(f"load average: start {m['load_average_start']}, end {m['load_average_end']}")
    return "\n".join(lines)


def write_json(path: Path, report: dict[str, Any]) -> None:
    output = path.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, output)
    logger.info("Wrote %s", output)


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    prepare_process()  # before transformers is imported
    args = parse_args(argv)
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)

    args.model, args.data = args.model.resolve(), args.data.resolve()
    check_inputs(args.model, args.data)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quality:
        return quality(args)
    if args.processes:
        return processes(args)
    if args.e2e:
        return end_to_end(args)
    try:
        from sentence_transformers import MultiVectorEncoder
    except ImportError as exc:
        raise SystemExit(
            "bench_encoder: sentence-transformers >= 6.2 is needed for the comparison: "
            f"pip install 'lateint-plugins[test]' ({exc})"
        ) from exc
    from lateint_plugins.core.encoder import ColBERTEncoder

    device = str(args.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"bench_encoder: --device {device} asked for, but torch sees no CUDA device.")

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    machine = machine_info(torch, device, ("torch", "transformers", "sentence-transformers", "tokenizers"))
    docs = read_jsonl_texts(args.data / "corpus.jsonl", args.n_docs, with_title=True)
    queries = read_jsonl_texts(args.data / "queries.jsonl", args.n_queries, with_title=False)
    logger.info("%d documents, %d queries from %s", len(docs), len(queries), args.data)
    bs = args.batch_size

    encoders: dict[str, dict[str, Encode]] = {}
    loads: dict[str, float] = {}
    reprs: dict[str, str] = {}
    for precision in args.precisions:
        start = time.perf_counter()
        options = {} if precision == "default" else {"precision": precision}
        model = ColBERTEncoder.from_pretrained(args.model, device=device, local_files_only=True, **options)
        sync()
        name = f"ours {precision}" + (f" ({model.precision})" if precision in ("default", "auto") else "")
        loads[name] = time.perf_counter() - start
        reprs[name] = repr(model)
        logger.info("Loaded %s in %.2f s: %r", name, loads[name], model)
        encoders[name] = {
            "documents": lambda t, m=model: m.encode_documents(t, batch_size=bs),
            "queries": lambda t, m=model: m.encode_queries(t, batch_size=bs),
        }

    start = time.perf_counter()
    theirs = MultiVectorEncoder(str(args.model), device=device, local_files_only=True)
    sync()
    loads[REFERENCE] = time.perf_counter() - start

    # Both sides end in float32 CPU tensors, our encoder's output contract.
    def theirs_documents(t: Sequence[str]) -> list[Any]:
        return [e.float().cpu() for e in theirs.encode_document(list(t), batch_size=bs, show_progress_bar=False)]

    def theirs_queries(t: Sequence[str]) -> list[Any]:
        return [e.float().cpu() for e in theirs.encode_query(list(t), batch_size=bs, show_progress_bar=False)]

    encoders[REFERENCE] = {"documents": theirs_documents, "queries": theirs_queries}
    texts = {"documents": docs, "queries": queries}

    logger.info("Warm-up: one batch of documents and of queries per encoder")
    for pair in encoders.values():
        for kind in texts:
            timed(pair[kind], texts[kind][:bs], sync)

    seconds: dict[str, dict[str, list[float]]] = {n: {k: [] for k in texts} for n in encoders}
    last: dict[str, dict[str, list[Any]]] = {n: {} for n in encoders}
    for r in range(args.repeats):
        for kind in texts:
            for name, pair in encoders.items():
                elapsed, out = timed(pair[kind], texts[kind], sync)
                seconds[name][kind].append(elapsed)
                last[name][kind] = out
                logger.info(
                    "repeat %d/%d %-9s %-32s %.3f s (%.1f/s)",
                    r + 1,
                    args.repeats,
                    kind,
                    name,
                    elapsed,
                    len(texts[kind]) / elapsed,
                )

    fp32_name = next((n for n in encoders if n == "ours fp32"), None)
    results: dict[str, Any] = {"encoders": {}}
    for name in encoders:
        entry: dict[str, Any] = {"load_seconds": loads[name], "repr": reprs.get(name, "MultiVectorEncoder")}
        for kind in texts:
            entry[kind] = summarise(seconds[name][kind], len(texts[kind]))
        tokens = int(sum(v.shape[0] for v in last[name]["documents"]))
        entry["documents_tokens"] = tokens
        entry["documents_counts"] = [int(v.shape[0]) for v in last[name]["documents"]]
        entry["documents_tokens_per_second"] = statistics.median(tokens / s for s in seconds[name]["documents"])
        if fp32_name is not None and name != REFERENCE:
            entry["parity_vs_ours_fp32"] = {
                kind: parity(last[name][kind], last[fp32_name][kind], torch) for kind in texts
            }["documents"]
            entry["parity_queries_vs_ours_fp32"] = parity(last[name]["queries"], last[fp32_name]["queries"], torch)
        results["encoders"][name] = entry
    if fp32_name is not None:
        results["parity_ours_fp32_vs_reference"] = parity(
            last[fp32_name]["documents"], last[REFERENCE]["documents"], torch
        )

    if args.fastembed_python is not None:
        results["fastembed_status"] = fastembed_entry(args, docs, queries, results, torch)

    # Paired per repeat (the same repeat's reference time over ours): robust to load drift between repeats.
    for name in encoders:
        paired = [t / o for t, o in zip(seconds[REFERENCE]["documents"], seconds[name]["documents"], strict=True)]
        results["encoders"][name]["documents_ratio_per_repeat"] = paired
        results["encoders"][name]["documents_ratio_median_of_pairs"] = statistics.median(paired)
    reference = results["encoders"][REFERENCE]
    for entry in results["encoders"].values():
        entry["documents_ratio_vs_reference"] = (
            entry["documents"]["median_per_second"] / reference["documents"]["median_per_second"]
        )
        entry["queries_ratio_vs_reference"] = (
            entry["queries"]["median_per_second"] / reference["queries"]["median_per_second"]
        )
    machine["load_average_end"] = load_average()
    report = {
        "benchmark": "bench_encoder",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {
            "model": str(args.model),
            "data": str(args.data),
            "n_docs": len(docs),
            "n_queries": len(queries),
            "repeats": args.repeats,
            "batch_size": bs,
            "precisions": args.precisions,
            "reference": REFERENCE,
            "order": "warm-up each; per repeat documents then queries, every encoder in turn (interleaved)",
            "timed_until": "float32 CPU tensors for every encoder",
            "load_note": "ours loads first and so also pays first-use import costs inside transformers",
        },
        "machine": machine,
        "results": results,
    }
    print(format_table(report))
    write_json(args.output, report)
    return 0


def fastembed_entry(
    args: argparse.Namespace, docs: list[str], queries: list[str], results: dict[str, Any], torch: Any
) -> str:
    """Export the checkpoint to ONNX (ours, fp32), time fastembed on it; the status line for the table."""
    import tempfile

    from lateint_plugins.core.encoder import ColBERTEncoder

    folder = Path(tempfile.mkdtemp(prefix="fastembed-onnx-"))
    try:
        export_onnx(ColBERTEncoder.from_pretrained(args.model, precision="fp32", local_files_only=True), folder, torch)
        timings = run_fastembed(args.fastembed_python, folder, docs, queries, args)
    except Exception as exc:  # the reason goes into the report instead of the numbers
        logger.warning("fastembed not measured: %s", exc)
        return f"not measured: {type(exc).__name__}: {exc}"
    name = f"fastembed {timings['version']} (ONNX fp32 export)"
    entry: dict[str, Any] = {"load_seconds": float("nan"), "repr": name}
    for kind, texts in (("documents", docs), ("queries", queries)):
        entry[kind] = summarise(timings[kind], len(texts))
    entry["documents_tokens"] = timings["tokens"]
    entry["documents_tokens_per_second"] = statistics.median(timings["tokens"] / s for s in timings["documents"])
    ours = results["encoders"].get("ours fp32", {}).get("documents_counts")
    same = None if ours is None else sum(a == b for a, b in zip(ours, timings["counts"], strict=True))
    results["encoders"][name] = entry
    return "measured in its own process after the others (not interleaved); " + (
        f"same token count as ours fp32 for {same}/{len(docs)} documents" if same is not None else ""
    )


def export_onnx(encoder: Any, folder: Path, torch: Any) -> None:
    """Our fp32 model (backbone + projection, un-normalised token vectors) as ``model.onnx`` plus the
    checkpoint's tokenizer and config files, the layout fastembed reads with ``specific_model_path``."""
    import shutil

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.projection = encoder.backbone, encoder.projection

        # No token_type_ids input: fastembed builds them before inserting its marker token, so they
        # would be one position short; the model's own default (all zeros) is what a single sequence has.
        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.projection(self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)

    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(  # vespa_colbert.onnx: the file name fastembed's registry gives this checkpoint
        Wrapped().eval(),
        (ids, torch.ones_like(ids)),
        str(folder / "vespa_colbert.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask")},
        opset_version=17,
        dynamo=False,
    )
    for item in Path(encoder.name_or_path).iterdir():
        if item.is_file() and item.suffix in (".json", ".txt"):
            shutil.copy(item, folder / item.name)
    # fastembed truncates documents at the tokenizer's limit (512 here) minus its marker; ours at
    # document_length (180). The same limit makes both encode the same tokens.
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["model_max_length"] = config["max_length"] = encoder.config.document_length
    config_file.write_text(json.dumps(config), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
