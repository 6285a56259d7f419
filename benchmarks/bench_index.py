"""Our indexes side by side on SciFact: build time, size, query latency and quality.

Use this when you change an index (the PLAID codec, candidate generation, pruning, re-scoring) or
its defaults, and want to know what it costs or buys against the exact fp16 index on real ColBERT
embeddings: build seconds, bytes per token (in memory and on disk), latency of one query at a time,
agreement with exact search and retrieval quality against the SciFact judgments.

Method: the corpus is encoded once and cached on disk as a ``LateInteractionStore`` (exact index),
the test queries once next to it (``queries-*.pt``); encoding is never timed. Each build then runs
in its own child process (this script re-invoked with ``--only BUILD``), so its peak RSS is its own
and builds cannot warm each other's caches. A child loads the cached token vectors and query
embeddings, builds its index from them (timed: ``add`` plus, for PLAID, the inverted lists), saves
it to a temporary folder (for the on-disk size), then for each search setting runs a few warm-up
queries and times every query alone (``index.search(q, k=100)``, ``time.perf_counter``). Rows:

* ``exact``: ``ExactIndex``, exhaustive MaxSim over fp16 vectors; the reference.
* ``plaid-{1,2,4}bit fast``: ``PLAIDIndex(nbits)``, ``SearchConfig(n_ivf_probe=4,
  n_centroid_interaction=32, n_full_scores=256)``.
* ``plaid-{1,2,4}bit accurate``: the same index, ``SearchConfig()`` (defaults).
* ``plaid-2bit+fp16 rescore64``: ``PLAIDConfig(nbits=2, keep_fp16=True)``, ``SearchConfig(rescore=64)``:
  the best 64 re-scored against the original vectors, memory-mapped from disk.

Recall@10 vs exact is the overlap of a row's top-10 ids with the exact index's top-10, averaged
over queries; nDCG@10 and Recall@100 are against the qrels of the measured queries. The peer
engines (fast-plaid, PyLate, Stanford ColBERT, Qdrant Edge) are listed as not measured: they need
their own environments and are not part of this version.

Run from the repository root::

    python benchmarks/bench_index.py --cache /work/cache/scifact-store             # all 300 test queries
    python benchmarks/bench_index.py --queries 30 --builds exact,plaid-2bit          # smoke test

The table goes to stdout, progress to stderr, everything (every query's latency, per-file sizes,
machine, versions) to ``--output`` as JSON. Latencies compare only on the same machine and load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import ROOT, cpu_model, git_revision, machine_lines, package_version, prepare_process

DEFAULT_MODEL = ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1"
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "scifact"
DEFAULT_CACHE = ROOT / "benchmarks" / "cache" / "scifact-answerai"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_index.json"

FAST = {"n_ivf_probe": 4, "n_centroid_interaction": 32, "n_full_scores": 256}
# One entry per index build (one child process each): PLAIDConfig kwargs (None = ExactIndex) and
# the search settings measured on that build, as SearchConfig kwargs. Plain data, so the parent
# never needs to import torch to know what to run.
BUILDS: dict[str, dict[str, Any]] = {
    "exact": {"plaid": None, "searches": {"": None}},
    "plaid-1bit": {"plaid": {"nbits": 1}, "searches": {"fast": FAST, "accurate": {}}},
    "plaid-2bit": {"plaid": {"nbits": 2}, "searches": {"fast": FAST, "accurate": {}}},
    "plaid-4bit": {"plaid": {"nbits": 4}, "searches": {"fast": FAST, "accurate": {}}},
    "plaid-2bit+fp16": {"plaid": {"nbits": 2, "keep_fp16": True}, "searches": {"rescore64": {"rescore": 64}}},
    "plaid-2bit-pool2": {"plaid": {"nbits": 2, "pool_factor": 2}, "searches": {"accurate": {}}},
}
FP16_FILE = "tokens_fp16.npy"
WARMUP_QUERIES = 5

PEERS = [
    {"engine": "fast-plaid", "package": "fast-plaid"},
    {"engine": "PyLate PLAID", "package": "pylate"},
    {"engine": "PyLate Voyager", "package": "pylate"},
    {"engine": "Stanford ColBERT", "package": "colbert-ai"},
    {"engine": "Qdrant Edge", "package": "qdrant-edge-py"},
]
PEER_STATUS = "not measured in this version of the benchmark"

logger = logging.getLogger("bench_index")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build time, bytes/token, latency and quality of ExactIndex and PLAIDIndex on SciFact.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL.resolve(), help="local checkpoint folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA.resolve(), help="BEIR dataset folder")
    parser.add_argument("--split", default="test", help="qrels split whose queries are searched")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="saved LateInteractionStore of the corpus (encoded and saved here when missing); "
        "query embeddings are cached next to it",
    )
    parser.add_argument("--queries", type=int, default=None, help="first N queries of the split (None: all)")
    parser.add_argument("--k", type=int, default=100, help="hits per query")
    parser.add_argument("--builds", default=",".join(BUILDS), help="comma-separated builds to run (exact always)")
    parser.add_argument("--threads", type=int, default=2, help="torch (and FAISS) CPU threads, in every process")
    parser.add_argument("--device", default="cpu", help="torch device for the indexes, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size (cache misses only)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # Internal: the parent re-invokes this script once per build with these.
    parser.add_argument("--only", choices=list(BUILDS), help=argparse.SUPPRESS)
    parser.add_argument("--emit-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--query-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("queries", "k", "threads", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    builds = [b.strip() for b in args.builds.split(",") if b.strip()]
    unknown = [b for b in builds if b not in BUILDS]
    if unknown:
        parser.error(f"--builds: unknown build(s) {unknown}; choose from {', '.join(BUILDS)}.")
    # Exact search is the reference for Recall@10 vs exact and the speed-up, so it always runs.
    args.builds = ["exact", *(b for b in BUILDS if b in builds and b != "exact")]
    if args.only is not None and (args.emit_json is None or args.query_file is None):
        parser.error("--only is internal and needs --emit-json and --query-file.")
    return args


# ---------------------------------------------------------------------- inputs
def check_inputs(model: Path, data: Path, split: str, cache: Path) -> None:
    """Exit with a message saying what is missing and how to point at it."""
    problems = []
    if not data.is_dir():
        problems.append(f"data folder {data} does not exist (pass --data PATH to a BEIR folder)")
    elif not (data / "qrels" / f"{split}.tsv").is_file():
        problems.append(f"data folder {data} has no qrels/{split}.tsv (pass --split or another --data)")
    if not model.is_dir():
        problems.append(f"model folder {model} does not exist (pass --model PATH to a local checkpoint folder)")
    if cache.exists() and not (cache / "manifest.json").is_file():
        problems.append(f"--cache {cache} exists but holds no saved store (no manifest.json); pass an empty path")
    if problems:
        raise SystemExit("bench_index: " + "; ".join(problems) + ".")


def corpus_texts(corpus: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
    """Document ids and ``title + " " + text`` as in BEIR."""
    ids = list(corpus)
    texts = [f"{corpus[i].get('title', '')} {corpus[i].get('text', '')}".strip() for i in ids]
    empty = [i for i, t in zip(ids, texts, strict=True) if not t]
    if empty:
        raise SystemExit(f"bench_index: {len(empty)} corpus documents are empty (first {empty[:5]}).")
    return ids, texts


def ensure_store(args: argparse.Namespace, corpus: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The cached store's manifest, encoding and saving the corpus first when the cache is empty."""
    from lateint_plugins.core import ColBERTEncoder, LateInteractionStore
    from lateint_plugins.core.index import load_index

    cache: Path = args.cache
    info: dict[str, Any] = {"store": str(cache), "store_encoded_now": False}
    if not (cache / "manifest.json").is_file():
        logger.info("No store at %s: encoding %d documents (once; later runs reuse it)", cache, len(corpus))
        encoder = ColBERTEncoder.from_pretrained(args.model, device=args.device, local_files_only=True)
        store = LateInteractionStore(encoder)
        ids, texts = corpus_texts(corpus)
        start = time.perf_counter()
        store.add_texts(texts, ids=ids, batch_size=args.batch_size, show_progress_bar=True)
        info["store_encode_seconds"] = time.perf_counter() - start
        store.save(cache)
        info["store_encoded_now"] = True
        del store, encoder
    manifest = json.loads((cache / "manifest.json").read_text(encoding="utf-8"))
    index = load_index(cache / "index", device="cpu")
    if type(index).__name__ != "ExactIndex":
        raise SystemExit(f"bench_index: {cache} holds a {type(index).__name__}; the benchmark needs an exact store.")
    if set(index.ids) != set(corpus):
        raise SystemExit(
            f"bench_index: the store at {cache} holds {len(index)} documents but {args.data} has {len(corpus)} "
            "(or different ids); point --cache at an empty folder to encode this corpus."
        )
    recorded = Path(str(manifest.get("model", "")))
    if recorded.name != args.model.name:
        logger.warning("The store was encoded with %s but queries are encoded with %s", recorded, args.model)
    info.update(
        model_recorded=str(recorded), n_documents=len(index), n_tokens=index.n_tokens, dim=index.dim, manifest=manifest
    )
    return info


def ensure_queries(args: argparse.Namespace, queries: dict[str, str], store_manifest: dict[str, Any]) -> dict[str, Any]:
    """Path of the cached query embeddings for exactly these queries, encoding them on a miss.

    The key covers the model folder, the store's encoder settings (queries are encoded with the
    settings the documents were) and every query id and text.
    """
    import torch

    encoder_config = dict(store_manifest.get("encoder_config") or {})
    key = json.dumps(
        {"model": str(args.model), "encoder_config": encoder_config, "queries": list(queries.items())},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    path = args.cache / f"queries-{args.split}-{digest}.pt"
    info: dict[str, Any] = {"query_file": str(path), "queries_encoded_now": False}
    if path.is_file():
        return info
    from lateint_plugins.core import ColBERTEncoder

    if "skiplist_words" in encoder_config:
        encoder_config["skiplist_words"] = tuple(encoder_config["skiplist_words"])
    logger.info("Encoding %d queries (cached as %s)", len(queries), path)
    encoder = ColBERTEncoder.from_pretrained(args.model, device=args.device, local_files_only=True, **encoder_config)
    start = time.perf_counter()
    vectors = encoder.encode_queries(list(queries.values()), batch_size=args.batch_size)
    info.update(queries_encoded_now=True, query_encode_seconds=time.perf_counter() - start)
    tmp = path.with_suffix(".tmp")
    torch.save({"ids": list(queries), "embeddings": [v.float().cpu() for v in vectors]}, tmp)
    os.replace(tmp, path)
    return info


# ---------------------------------------------------------------------- machine


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(torch: Any, device: str, threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
        "versions": {
            name: package_version(name) for name in ("torch", "numpy", "faiss-cpu", "transformers", "lateint-plugins")
        },
        "git_revision": git_revision(),
        # Other processes' load shifts the latencies; recorded so a reader can tell.
        "load_average_start": load_average(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------- child: one build
def folder_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def run_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build one index from the cached vectors and time its searches (runs in a child process)."""
    import torch
    from lateint_plugins.core.index import ExactIndex, load_index
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig

    torch.set_num_threads(args.threads)
    try:
        import faiss  # k-means in PLAID training uses FAISS's own OpenMP pool

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    name, spec = args.only, BUILDS[args.only]

    cached = load_index(args.cache / "index", device="cpu")
    doc_ids = cached.ids
    docs = cached.embeddings()
    saved = torch.load(args.query_file, weights_only=True)
    n = len(saved["ids"]) if args.queries is None else min(args.queries, len(saved["ids"]))
    query_ids, queries = saved["ids"][:n], saved["embeddings"][:n]
    rss_inputs = peak_rss_mib()
    logger.info("[%s] %d documents, %d tokens, %d queries loaded", name, len(docs), cached.n_tokens, n)

    index: Any
    start = time.perf_counter()
    if spec["plaid"] is None:
        index = ExactIndex(device=args.device)
        index.add(doc_ids, docs)
        index._store()  # appends are concatenated lazily; that is part of building
    else:
        index = PLAIDIndex(config=PLAIDConfig(**spec["plaid"]), device=args.device)
        index.add(doc_ids, docs)
        index._ivf_lists()  # inverted lists are built lazily on first search; part of building
    build_seconds = time.perf_counter() - start
    rss_built = peak_rss_mib()
    n_tokens, dim = index.n_tokens, index.dim
    logger.info("[%s] built in %.1f s", name, build_seconds)

    if spec["plaid"] is None:
        memory = {"tokens": n_tokens * dim * 2, "doc_lengths": len(index) * 8}
        vector_bytes = memory["tokens"]
    else:
        memory = index.nbytes()
        vector_bytes = memory["codes"] + memory["residuals"]
        logger.info("[%s] %d centroids, bytes in memory %s", name, index.codec.n_centroids, memory)

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        folder = Path(tmp) / "index"
        start = time.perf_counter()
        index.save(folder)
        save_seconds = time.perf_counter() - start
        files = folder_sizes(folder)
    disk_bytes = sum(size for file, size in files.items() if file != FP16_FILE)

    searches: dict[str, Any] = {}
    for label, search_kwargs in spec["searches"].items():
        if search_kwargs is not None:
            index.search_config = SearchConfig(**search_kwargs)
        for q in queries[:WARMUP_QUERIES]:
            index.search(q, k=args.k)
        latencies, ranked = [], []
        for q in queries:
            start = time.perf_counter()
            hits = index.search(q, k=args.k)
            latencies.append(time.perf_counter() - start)
            ranked.append([h.id for h in hits])
        searches[label] = {
            "search_config": repr(index.search_config) if search_kwargs is not None else None,
            "latencies_ms": [s * 1e3 for s in latencies],
            "run": dict(zip(query_ids, ranked, strict=True)),
        }
        logger.info("[%s] median %.2f ms/query", f"{name} {label}".strip(), statistics.median(latencies) * 1e3)

    return {
        "build": name,
        "index": type(index).__name__,
        "plaid_config": repr(index.config) if spec["plaid"] is not None else None,
        "n_centroids": index.codec.n_centroids if spec["plaid"] is not None else None,
        "n_documents": len(index),
        "n_tokens": n_tokens,
        "dim": dim,
        "build_seconds": build_seconds,
        "save_seconds": save_seconds,
        "memory_bytes": memory,
        "vector_bytes": vector_bytes,
        "disk_files": files,
        "disk_bytes_without_fp16": disk_bytes,
        "peak_rss_mib": {"inputs_loaded": rss_inputs, "after_build": rss_built, "end": peak_rss_mib()},
        "searches": searches,
    }


def spawn_build(name: str, args: argparse.Namespace, query_file: Path, workdir: Path) -> dict[str, Any]:
    """Run one build in a fresh interpreter; its progress goes to our stderr, its result to a file."""
    out = workdir / f"{name}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--only",
        name,
        "--emit-json",
        str(out),
        "--query-file",
        str(query_file),
        "--cache",
        str(args.cache),
        "--k",
        str(args.k),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    if args.queries is not None:
        command += ["--queries", str(args.queries)]
    if args.verbose:
        command.append("--verbose")
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        logger.error("Build %s failed (exit code %d); see the messages above", name, proc.returncode)
        return {"build": name, "error": f"child exited with code {proc.returncode}", "wall_seconds": wall}
    result = json.loads(out.read_text(encoding="utf-8"))
    result["wall_seconds"] = wall
    return result


# ---------------------------------------------------------------------- report
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), without needing numpy here."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def make_rows(builds: list[dict[str, Any]], qrels: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per (build, search setting), with quality against qrels and against exact search."""
    from lateint_plugins.core import evaluate

    exact = next(b for b in builds if b["build"] == "exact" and "error" not in b)
    exact_run = exact["searches"][""]["run"]
    exact_latency = statistics.fmean(exact["searches"][""]["latencies_ms"])
    fp16_bytes_per_token = 2 * exact["dim"]
    rows = []
    for b in builds:
        if "error" in b:
            rows.append({"config": b["build"], "build": b["build"], "error": b["error"]})
            continue
        n_tokens = b["n_tokens"]
        for label, s in b["searches"].items():
            run, lat = s["run"], s["latencies_ms"]
            judged = {q: qrels[q] for q in run}
            overlap = [len(set(run[q][:10]) & set(exact_run[q][:10])) / 10 for q in run]
            mean_ms = statistics.fmean(lat)
            memory_per_token = sum(b["memory_bytes"].values()) / n_tokens
            rows.append(
                {
                    "config": f"{b['build']} {label}".strip(),
                    "build": b["build"],
                    "search": label or None,
                    "index": b["index"],
                    "plaid_config": b["plaid_config"],
                    "search_config": s["search_config"],
                    "n_centroids": b["n_centroids"],
                    "build_seconds": b["build_seconds"],
                    "bytes_per_token_memory": memory_per_token,
                    "bytes_per_token_vectors": b["vector_bytes"] / n_tokens,
                    "bytes_per_token_disk": b["disk_bytes_without_fp16"] / n_tokens,
                    "fp16_file_bytes": b["disk_files"].get(FP16_FILE),
                    "size_ratio_vs_fp16": memory_per_token / fp16_bytes_per_token,
                    "latency_ms": {
                        "p50": statistics.median(lat),
                        "p95": percentile(lat, 95),
                        "mean": mean_ms,
                        "max": max(lat),
                    },
                    "qps": 1000 / mean_ms,
                    "speedup_vs_exact": exact_latency / mean_ms,
                    "recall@10_vs_exact": statistics.fmean(overlap),
                    **evaluate(run, judged, metrics=("ndcg@10", "recall@100")),
                    "peak_rss_mib": b["peak_rss_mib"],
                    "latencies_ms": lat,
                }
            )
    return rows


def format_table(report: dict[str, Any]) -> str:
    cfg, m, inputs = report["config"], report["machine"], report["inputs"]
    title = (
        f"Indexes on SciFact ({cfg['split']}): {inputs['n_documents']} docs, {inputs['n_tokens']} tokens x "
        f"{inputs['dim']}, {cfg['n_queries']} queries one at a time, k={cfg['k']}, {m['device']}, "
        f"{m['torch_threads']} threads"
    )
    header = (
        "config",
        "build s",
        "B/tok mem",
        "B/tok vec",
        "B/tok disk",
        "vs fp16",
        "p50 ms",
        "p95 ms",
        "QPS",
        "speed-up",
        "R@10 vs exact",
        "nDCG@10",
        "R@100",
        "peak RSS MiB",
    )
    rows = [header]
    for r in report["results"]:
        if "error" in r:
            rows.append((r["config"], "FAILED: " + r["error"], *[""] * (len(header) - 2)))
            continue
        rss = r["peak_rss_mib"]
        rows.append(
            (
                r["config"],
                f"{r['build_seconds']:.1f}",
                f"{r['bytes_per_token_memory']:.1f}",
                f"{r['bytes_per_token_vectors']:.1f}",
                f"{r['bytes_per_token_disk']:.1f}",
                f"{r['size_ratio_vs_fp16']:.3f}x",
                f"{r['latency_ms']['p50']:.2f}",
                f"{r['latency_ms']['p95']:.2f}",
                f"{r['qps']:.1f}",
                f"{r['speedup_vs_exact']:.2f}x",
                f"{r['recall@10_vs_exact']:.3f}",
                f"{r['ndcg@10']:.4f}",
                f"{r['recall@100']:.4f}",
                f"{rss['end']:.0f} (+{rss['end'] - rss['inputs_loaded']:.0f})",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title, ""]
    for r in rows:
        cells = [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
    fp16_file = next((x["fp16_file_bytes"] for x in report["results"] if x.get("fp16_file_bytes")), None)
    lines += [
        "",
        "B/tok mem: every in-memory part / tokens; vec: fp16 vectors (exact) or codes + residuals (PLAID);",
        "disk: saved folder / tokens, without the fp16 copy PLAID's re-score keeps memory-mapped"
        + (f" ({fp16_file / 2**20:.0f} MiB more on disk)" if fp16_file else "")
        + ";",
        "vs fp16: B/tok mem / (2 x dim); speed-up: exact mean latency / mean latency; QPS: 1 / mean latency;",
        "peak RSS: the build's child process, (+ growth after loading the cached fp16 vectors and queries).",
        "",
        "peers:",
    ]
    for p in report["peers"]:
        lines.append(f"  {p['engine']} ({p['package']}): {p['status']}")
    lines.append("")
    lines.append(f"load average (1, 5, 15 min): start {m['load_average_start']}, end {m['load_average_end']}")
    lines.extend(machine_lines(m))
    return "\n".join(lines)


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    prepare_process()  # before transformers is imported
    args = parse_args(argv)
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    args.cache = args.cache.resolve()

    if args.only is not None:
        result = run_build(args)
        args.emit_json.write_text(json.dumps(result) + "\n", encoding="utf-8")
        return 0

    args.model, args.data = args.model.resolve(), args.data.resolve()
    check_inputs(args.model, args.data, args.split, args.cache)

    import torch
    from lateint_plugins.core import load_beir

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = machine_info(torch, args.device, args.threads)
    data = load_beir(args.data, split=args.split)
    queries = dict(list(data.queries.items())[: args.queries])
    logger.info(
        "%d documents, %d of %d %s queries from %s",
        len(data.corpus),
        len(queries),
        len(data.queries),
        args.split,
        args.data,
    )

    inputs = ensure_store(args, data.corpus)
    store_manifest = inputs.pop("manifest")
    # All the split's queries are cached, so a smoke run and a full run share one file.
    inputs.update(ensure_queries(args, data.queries, store_manifest))

    builds = []
    with tempfile.TemporaryDirectory(prefix="bench-index-results-") as workdir:
        for name in args.builds:
            logger.info("Build %s (child process)", name)
            builds.append(spawn_build(name, args, Path(inputs["query_file"]), Path(workdir)))
    if "error" in builds[0]:
        raise SystemExit("bench_index: the exact build failed, so nothing can be compared; see the messages above.")
    machine["load_average_end"] = load_average()

    report = {
        "benchmark": "bench_index",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {
            "data": str(args.data),
            "split": args.split,
            "model": str(args.model),
            "cache": str(args.cache),
            "n_queries": len(queries),
            "k": args.k,
            "builds": {name: BUILDS[name] for name in args.builds},
            "warmup_queries": WARMUP_QUERIES,
            "timing": "one query per index.search(q, k) call, time.perf_counter around it, after warm-up queries",
            "build_timing": "index.add from the cached fp16 vectors plus the lazy consolidation / inverted lists; "
            "no encoding",
            "isolation": "each build in its own child process; peak RSS is the child's ru_maxrss",
            "recall@10_vs_exact": "mean over queries of |top-10 ids ∩ exact top-10 ids| / 10",
            "quality": "nDCG@10 and Recall@100 against the qrels of the measured queries",
        },
        "machine": machine,
        "inputs": inputs,
        "results": make_rows(builds, data.qrels),
        "builds": [
            {k: v for k, v in b.items() if k != "searches"}
            | {"searches": {label: s["search_config"] for label, s in b.get("searches", {}).items()}}
            for b in builds
        ],
        "peers": [{**p, "status": PEER_STATUS} for p in PEERS],
        "wall_seconds": time.perf_counter() - started,
    }

    print(format_table(report))
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote %s", output)
    return 1 if any("error" in b for b in builds) else 0


if __name__ == "__main__":
    sys.exit(main())
