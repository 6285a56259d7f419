"""The Qdrant store on SciFact: our path (prefetch + local MaxSim) vs Qdrant native vs the exact index, per layout.

Use this when you change the Qdrant adapter (collection layout, pooling, candidate depth, how
candidates are fetched) and want to know what it costs or buys against exact search on real
ColBERT embeddings: nDCG@10, Recall@10 against the exact index's top 10, query latency, bytes on the
wire per query and bytes held per document, side by side in one run.

Method: the corpus is encoded once and cached as a ``LateInteractionStore`` (exact index), the
test queries once next to it (``queries-*.pt``, shared with ``bench_index.py``); encoding is never
timed. For every layout named by ``--layouts`` (a ``CollectionConfig`` preset, see ``LAYOUTS``) the
cached vectors are upserted into a Qdrant collection in **embedded local mode**
(``QdrantClient(path=...)``: in-process, brute force, no HNSW; a server's latencies differ). Then
every query runs alone (``time.perf_counter`` around one call, after warm-up queries), ``k=100``:

* ``exact``: ``ExactIndex.search``, exhaustive MaxSim over fp16 vectors; the reference.
* ``<layout> ours d=N``: ``QdrantLateInteractionStore`` ``mode="local"``: the union of the ``N`` best
  points by the pooled (mean) vector and the ``N`` best by BM25 over WordPiece terms (sparse vector,
  IDF by Qdrant), with their token vectors; exact MaxSim here (``core.scoring.maxsim``). Local mode
  reads the token vectors and the BM25 prefetch from the client's arrays (``lateint_plugins.qdrant._local``).
* ``<layout> native d=N``: ``mode="native"``: the same prefetch, then Qdrant's ``MAX_SIM`` rescoring.

Bytes on the wire: no server runs here, so each config runs its first ``--wire-queries`` queries
again, untimed, through the public client API (what a server answers), with the store's client calls
metered: every response is serialised as the server would send it, REST as JSON (the response
envelope, float32 values printed shortest-round-trip as serde does; ``model_dump_json``'s longer
float64 text is in the JSON too) and gRPC as protobuf (``RestToGrpc`` conversions, ``ByteSize()``).
Requests (the query vectors) are counted apart. The metered run's rankings are compared with the
timed run's: local mode's array reads must give the public API's results.

Bytes per document: ``exact`` holds fp16 tokens and a length; the Qdrant rows show what the
layout holds on a server (tokens at the layout's bytes per token, the pooled vector in float32, its
HNSW links at ``m=16``, payload JSON) and what the embedded local-mode folder takes on disk (it
pickles float32 lists).

Run from the repository root::

    python benchmarks/bench_qdrant.py --cache /work/cache/scifact-store       # all 300 test queries
    python benchmarks/bench_qdrant.py --queries 20 --native-queries 3 --wire-queries 5   # smoke test
    python benchmarks/bench_qdrant.py --layouts fp16,fp16-nolex --qdrant-path /tmp/q      # two layouts, kept

The table goes to stdout, progress to stderr, everything to ``--output`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    add_data_arguments,
    check_inputs,
    encode_corpus_once,
    load_average,
    machine_info,
    machine_lines,
    prepare_process,
    query_embeddings_once,
)

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_qdrant.json"
WARMUP_QUERIES = 3
COLLECTION = "scifact"

logger = logging.getLogger("bench_qdrant")


def _config(**kwargs: Any) -> Any:
    """An fp16 collection (what native mode rescores); ``benchmarks/bench_qdrant_layouts.py`` measures the others."""
    from lateint_plugins.qdrant import CollectionConfig

    return CollectionConfig(token_layout="fp16", **kwargs)


@dataclass(frozen=True)
class Layout:
    """A collection layout the benchmark builds and measures: a ``CollectionConfig`` preset.

    Add a row by adding an entry to ``LAYOUTS`` (e.g. a compressed token layout with its own
    ``CollectionConfig`` options and ``token_bytes``).

    Args:
        description: one line for the table's notes.
        config: builds the ``CollectionConfig`` of a new collection.
        token_bytes: bytes a server holds per stored token (the token field), given the dimension.
        store_kwargs: extra ``QdrantLateInteractionStore`` arguments for this layout.
    """

    description: str
    config: Callable[[], Any] = _config
    token_bytes: Callable[[int], float] = lambda dim: 2.0 * dim  # float16 multivector
    store_kwargs: Mapping[str, Any] = field(default_factory=dict)


LAYOUTS: dict[str, Layout] = {
    "fp16": Layout(
        "float16 token multivector; prefetch: mean-pooled vector + BM25 sparse vector (the default prefetch)"
    ),
    "fp16-nolex": Layout("float16 tokens; prefetch: mean-pooled vector only", lambda: _config(lexical=False)),
    "fp16-pool4": Layout(
        "float16 tokens; prefetch: 4 k-means pooled vectors (MAX_SIM) + BM25", lambda: _config(pooled_vectors=4)
    ),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Qdrant store (ours and native) vs the exact index on SciFact: quality, latency, bytes/doc.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser, cache_help="query embeddings are cached next to it")
    parser.add_argument("--queries", type=int, default=None, help="first N queries of the split (None: all)")
    parser.add_argument("--k", type=int, default=100, help="hits per query")
    parser.add_argument("--depths", default="64,128", help="candidate depths of our path (first: native too)")
    parser.add_argument("--native-depths", default=None, help="prefetch depths of native mode (default: first depth)")
    parser.add_argument(
        "--native-queries",
        type=int,
        default=10,
        help="native mode runs on the first N queries only: local mode rescores by scanning every point",
    )
    parser.add_argument(
        "--layouts",
        default="fp16",
        help=f"comma-separated collection layouts (CollectionConfig presets): {list(LAYOUTS)}",
    )
    parser.add_argument(
        "--wire-queries",
        type=int,
        default=10,
        help="first N queries of each config rerun untimed through the public API to measure bytes on the wire",
    )
    parser.add_argument(
        "--qdrant-path",
        type=Path,
        default=None,
        help="local-mode folder (one subfolder per layout), kept after the run and reused when it holds the "
        "collection (default: a temp folder)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device for MaxSim, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size (cache misses only)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    for name in ("queries", "k", "threads", "batch_size", "native_queries", "wire_queries"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    try:
        args.depths = [int(d) for d in args.depths.split(",") if d.strip()]
        args.native_depths = (
            [int(d) for d in args.native_depths.split(",") if d.strip()] if args.native_depths else args.depths[:1]
        )
    except ValueError:
        parser.error("--depths / --native-depths must be comma-separated integers, e.g. 256,1024.")
    if not args.depths or min(args.depths + args.native_depths) < 1:
        parser.error("--depths must list positive integers.")
    args.layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    unknown = [name for name in args.layouts if name not in LAYOUTS]
    if unknown or not args.layouts:
        parser.error(f"--layouts: unknown {unknown}; pick from {list(LAYOUTS)}.")
    return args


# ---------------------------------------------------------------------- inputs
def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timed_run(search: Any, queries: list[Any], query_ids: list[str], label: str) -> dict[str, Any]:
    for q in queries[:WARMUP_QUERIES]:
        search(q)
    latencies, ranked = [], []
    for i, q in enumerate(queries):
        start = time.perf_counter()
        hits = search(q)
        latencies.append((time.perf_counter() - start) * 1e3)
        ranked.append([h.id for h in hits])
        if (i + 1) % 50 == 0:
            logger.info("[%s] %d/%d queries, median %.1f ms", label, i + 1, len(queries), statistics.median(latencies))
    return {"latencies_ms": latencies, "run": dict(zip(query_ids, ranked, strict=True))}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- wire
_ENVELOPE = '{{"result":{},"status":"ok","time":0.000123}}'  # REST wraps every answer; time: a typical value


def _f32_text(values: Any) -> list[Any]:
    """A float matrix/vector as Python floats that print as serde prints the server's float32 values.

    Python prints a float32 value widened to float64 with up to 17 digits; the server's JSON has the
    shortest text that reads back as the same float32 (at most 9 digits). fp16-stored tokens take
    at most 65,536 distinct values, so each distinct value is printed once.
    """
    import numpy as np

    array = np.asarray(values, dtype=np.float32)
    distinct, where = np.unique(array, return_inverse=True)
    shortest = np.array([float(str(v)) for v in distinct], dtype=np.float64)
    return shortest[where.reshape(array.shape)].tolist()


def _rest_point(point: Any) -> str:
    """One ``ScoredPoint``/``Record`` as the server's JSON."""
    data = point.model_dump(mode="python", exclude_none=True)
    vector = data.get("vector")
    if isinstance(vector, dict):
        data["vector"] = {k: v if isinstance(v, dict) else _f32_text(v) for k, v in vector.items()}
    elif isinstance(vector, list):
        data["vector"] = _f32_text(vector)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


_METERED = ("rest", "rest_pydantic", "grpc", "request_rest", "calls", "query_points")
"""What a meter adds up: response bytes (REST as the server prints it, REST as ``model_dump_json``, gRPC),
request bytes (REST), client calls, points in query responses (the candidates and their windows)."""


class WireMeter:
    """Adds up the REST and gRPC size of every response a store's client calls return.

    Hooks the store's ``_call(what, fn, *args, **kwargs)`` (every client request goes through it),
    so nothing in the library measures; :meth:`metering` installs and removes the hook.
    """

    def __init__(self) -> None:
        self.totals: dict[str, int] = dict.fromkeys(_METERED, 0)
        self.unmetered: set[str] = set()

    @contextmanager
    def metering(self, store: Any) -> Iterator[WireMeter]:
        inner = store._call

        def call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            result = inner(what, fn, *args, **kwargs)
            self.measure(getattr(fn, "__name__", str(fn)), result, kwargs)
            return result

        store._call = call  # an instance attribute shadows the method
        try:
            yield self
        finally:
            del store._call

    def measure(self, name: str, result: Any, kwargs: Mapping[str, Any]) -> None:
        from qdrant_client import grpc
        from qdrant_client.conversions.conversion import RestToGrpc

        if name == "query_batch_points":
            responses = list(result)
            rest = "[" + ",".join('{"points":[' + ",".join(map(_rest_point, r.points)) + "]}" for r in responses) + "]"
            pydantic = "[" + ",".join(r.model_dump_json(exclude_none=True) for r in responses) + "]"
            proto = grpc.QueryBatchResponse(
                result=[
                    grpc.BatchResult(result=[RestToGrpc.convert_scored_point(p) for p in r.points]) for r in responses
                ],
                time=1.23e-4,
            )
            self.totals["request_rest"] += sum(len(r.model_dump_json(exclude_none=True)) for r in kwargs["requests"])
            self.totals["query_points"] += sum(len(r.points) for r in responses)
        elif name == "query_points":
            rest = '{"points":[' + ",".join(map(_rest_point, result.points)) + "]}"
            pydantic = result.model_dump_json(exclude_none=True)
            proto = grpc.QueryResponse(result=[RestToGrpc.convert_scored_point(p) for p in result.points], time=1.23e-4)
            self.totals["query_points"] += len(result.points)
        elif name in ("retrieve", "scroll"):
            points, offset = (result, None) if name == "retrieve" else result
            body = "[" + ",".join(map(_rest_point, points)) + "]"
            plain = "[" + ",".join(p.model_dump_json(exclude_none=True) for p in points) + "]"
            records = [RestToGrpc.convert_record(p) for p in points]
            if name == "retrieve":
                rest, pydantic = body, plain
                proto = grpc.GetResponse(result=records, time=1.23e-4)
            else:
                tail = f',"next_page_offset":{json.dumps(offset)}}}'
                rest, pydantic = '{"points":' + body + tail, '{"points":' + plain + tail
                proto = grpc.ScrollResponse(
                    result=records,
                    next_page_offset=None if offset is None else RestToGrpc.convert_extended_point_id(offset),
                    time=1.23e-4,
                )
        else:
            self.unmetered.add(name)
            return
        self.totals["rest"] += len(_ENVELOPE.format(rest).encode("utf-8"))
        self.totals["rest_pydantic"] += len(_ENVELOPE.format(pydantic).encode("utf-8"))
        self.totals["grpc"] += proto.ByteSize()
        self.totals["calls"] += 1


def wire_run(
    store: Any, search: Any, queries: list[Any], query_ids: list[str], timed: dict[str, Any]
) -> dict[str, Any]:
    """Rerun ``queries`` through the public client API with every response metered; bytes per query."""
    per_query: dict[str, list[int]] = {k: [] for k in _METERED}
    same = []
    store._read_arrays = False  # what a server answers: local mode's array reads bypass the responses
    try:
        for q, qid in zip(queries, query_ids, strict=True):
            meter = WireMeter()
            with meter.metering(store):
                hits = search(q)
            for key, value in meter.totals.items():
                per_query[key].append(value)
            same.append([h.id for h in hits] == timed["run"][qid])
            if meter.unmetered:
                logger.warning("Responses of %s were not metered", sorted(meter.unmetered))
    finally:
        store._read_arrays = True
    return {
        "n_queries": len(queries),
        **{
            f"{key}_per_query" if key in ("calls", "query_points") else f"{key}_bytes_per_query": statistics.fmean(v)
            for key, v in per_query.items()
        },
        "per_query": per_query,
        "same_ranking_as_timed_run": statistics.fmean(same),
    }


# ---------------------------------------------------------------------- report
def make_rows(runs: dict[str, dict[str, Any]], qrels: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    from lateint_plugins.core import evaluate

    exact_run = runs["exact"]["run"]
    rows = []
    for name, r in runs.items():
        run, lat = r["run"], r["latencies_ms"]
        if len(run) < len(exact_run):
            # Quality of the other configs on the same (fewer) queries, so the row compares.
            r["same_queries"] = {}
            for other in runs:
                if other != name and len(runs[other]["run"]) == len(exact_run):
                    sub = {q: runs[other]["run"][q] for q in run}
                    r["same_queries"][other] = {
                        "recall@10_vs_exact": statistics.fmean(
                            len(set(sub[q][:10]) & set(exact_run[q][:10])) / 10 for q in sub
                        ),
                        **evaluate(sub, {q: qrels[q] for q in sub}, metrics=("ndcg@10",)),
                    }
        overlap = [len(set(run[q][:10]) & set(exact_run[q][:10])) / 10 for q in run]
        rows.append(
            {
                "config": name,
                "n_queries": len(run),
                **{k: v for k, v in r.items() if k not in ("run", "latencies_ms")},
                "latency_ms": {
                    "p50": statistics.median(lat),
                    "p95": percentile(lat, 95),
                    "mean": statistics.fmean(lat),
                },
                "recall@10_vs_exact": statistics.fmean(overlap),
                **evaluate(run, {q: qrels[q] for q in run}, metrics=("ndcg@10", "recall@100")),
                "latencies_ms": lat,
            }
        )
    return rows


def _kb(r: dict[str, Any], key: str) -> str:
    wire = r.get("wire")
    return f"{wire[key] / 1e3:,.0f}" if wire else "-"


def format_table(report: dict[str, Any]) -> str:
    cfg, m, inputs = report["config"], report["machine"], report["inputs"]
    title = (
        f"Qdrant adapter on SciFact ({cfg['split']}): {inputs['n_documents']} docs, {inputs['n_tokens']} tokens x "
        f"{inputs['dim']}, {cfg['n_queries']} queries one at a time, k={cfg['k']}, MaxSim on {m['device']}, "
        f"{m['torch_threads']} threads, Qdrant embedded local mode (qdrant-client {m['versions'].get('qdrant-client')})"
    )
    header = (
        "config",
        "queries",
        "nDCG@10",
        "R@10 vs exact",
        "R@100",
        "p50 ms",
        "p95 ms",
        "kB/q REST",
        "kB/q gRPC",
        "B/doc server",
        "B/doc local disk",
    )
    rows = [header]
    for r in report["results"]:
        rows.append(
            (
                r["config"],
                str(r["n_queries"]),
                f"{r['ndcg@10']:.4f}",
                f"{r['recall@10_vs_exact']:.3f}",
                f"{r['recall@100']:.4f}",
                f"{r['latency_ms']['p50']:.1f}",
                f"{r['latency_ms']['p95']:.1f}",
                _kb(r, "rest_bytes_per_query"),
                _kb(r, "grpc_bytes_per_query"),
                f"{r['bytes_per_doc_server']:,.0f}",
                f"{r['bytes_per_doc_disk']:,.0f}" if r.get("bytes_per_doc_disk") else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title, ""]
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]))
    wired = [r for r in report["results"] if r.get("wire")]
    lines += [
        "",
        "ours d=N: the union of the N best points by the pooled vector and the N best by BM25 (sparse, IDF)",
        "from Qdrant, with their token vectors, exact MaxSim here; native d=N: the same prefetches, Qdrant's",
        "MAX_SIM rescoring; R@10 vs exact: overlap with the exact index's top 10.",
        *[
            f"on the {r['n_queries']} queries of '{r['config']}': "
            + "; ".join(
                f"{o} nDCG@10 {v['ndcg@10']:.4f}, R@10 {v['recall@10_vs_exact']:.3f}"
                for o, v in r["same_queries"].items()
            )
            for r in report["results"]
            if r.get("same_queries")
        ],
        "native rows: Qdrant local mode rescores a prefetch by scoring every point (a Python loop), so their",
        "latency is local mode's, not a server's; native scores equal ours (tests/test_qdrant.py).",
        f"kB/q: response bytes per query (every client call of one search), mean over the first "
        f"{cfg['wire_queries']} queries rerun through the public API: REST = the server's JSON, gRPC = protobuf.",
        *[
            f"  {r['config']}: {r['wire']['calls_per_query']:.1f} calls/query, "
            f"{r['wire']['query_points_per_query']:.0f} points in query responses, request bodies "
            f"{r['wire']['request_rest_bytes_per_query'] / 1e3:,.1f} kB (REST), model_dump_json (float64 text) "
            f"{r['wire']['rest_pydantic_bytes_per_query'] / 1e3:,.0f} kB; same ranking as the timed run: "
            f"{r['wire']['same_ranking_as_timed_run']:.0%} of queries"
            for r in wired
        ],
    ]
    for name, layout in inputs["layouts"].items():
        b = layout["bytes_breakdown_server"]
        lines += [
            f"layout {name}: {layout['description']}",
            f"  B/doc server: tokens {b['tokens']:,.0f} + pooled fp32 {b['pooled']:,.0f} + HNSW links "
            f"{b['hnsw']:,.0f} + BM25 sparse {b['lexical']:,.0f} + payload {b['payload']:,.0f}; "
            "local disk: pickled float32 lists; "
            + (
                f"upsert took {layout['upsert_seconds']:.0f} s."
                if layout["upsert_seconds"] is not None
                else "collection reused from --qdrant-path."
            ),
        ]
    lines += [
        "",
        f"load average (1, 5, 15 min): start {m['load_average_start']}, end {m['load_average_end']}",
        *machine_lines(m),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- collections
def open_layout(
    name: str,
    layout: Layout,
    folder: Path,
    encoder: Any,
    doc_ids: list[str],
    docs: list[Any],
    texts: dict[str, str],
    device: str,
) -> tuple[Any, Any, dict[str, Any]]:
    """The layout's local-mode collection in ``folder`` (built, or reused when it holds the same layout)."""
    from qdrant_client import QdrantClient

    from lateint_plugins.qdrant import QdrantLateInteractionStore
    from lateint_plugins.qdrant.layout import _marker, recorded_config

    config = layout.config()
    folder.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(folder))
    reuse = client.collection_exists(COLLECTION) and client.count(COLLECTION).count > 0
    store = QdrantLateInteractionStore(
        client, COLLECTION, encoder, config=config, device=device, write_batch_size=128, **layout.store_kwargs
    )
    if reuse and store.config != recorded_config(_marker(encoder, config)):
        raise SystemExit(f"bench_qdrant: {folder} holds a collection with {store.config}, not layout {name!r}.")
    upsert_seconds = None
    if reuse and len(store) == len(doc_ids):
        logger.info("[%s] reusing the collection at %s", name, folder)
    else:
        logger.info("[%s] upserting %d documents into Qdrant local mode at %s", name, len(doc_ids), folder)
        start = time.perf_counter()
        store.add_embeddings([texts[i] for i in doc_ids], docs, ids=doc_ids, replace=True, show_progress_bar=True)
        upsert_seconds = time.perf_counter() - start
    client.close()  # flushes; reopened so searches read what a fresh process would
    disk = folder_bytes(folder)
    client = QdrantClient(path=str(folder))
    store = QdrantLateInteractionStore(client, COLLECTION, encoder, device=device, create=False, **layout.store_kwargs)
    return store, client, {"upsert_seconds": upsert_seconds, "local_mode_disk_bytes": disk}


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    prepare_process()
    args = parse_args(argv)
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    args.cache, args.model, args.data = args.cache.resolve(), args.model.resolve(), args.data.resolve()
    check_inputs("bench_qdrant", args.model, args.data, args.split, args.cache)

    import torch
    from lateint_plugins.core import ColBERTEncoder, load_beir
    from lateint_plugins.core.index import load_index

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = machine_info(torch, args.device, ("torch", "numpy", "qdrant-client"))
    data = load_beir(args.data, split=args.split)
    encoded_now = encode_corpus_once(args.cache, data.corpus, args.model, args.device, args.batch_size) is not None
    manifest = json.loads((args.cache / "manifest.json").read_text(encoding="utf-8"))
    query_file, _ = query_embeddings_once(
        args.cache, args.split, data.queries, args.model, args.device, args.batch_size
    )

    index = load_index(args.cache / "index", device=args.device)
    if set(index.ids) != set(data.corpus):
        raise SystemExit(f"bench_qdrant: the store at {args.cache} does not hold {args.data}'s corpus.")
    doc_ids, docs = index.ids, index.embeddings()
    texts = {}
    with (args.cache / "texts.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts[row["id"]] = row["text"]
    saved = torch.load(query_file, weights_only=True)
    n = len(saved["ids"]) if args.queries is None else min(args.queries, len(saved["ids"]))
    query_ids, embeddings = saved["ids"][:n], [q.float() for q in saved["embeddings"][:n]]
    queries = [(q, data.queries[i]) for q, i in zip(embeddings, query_ids, strict=True)]
    n_tokens, dim = index.n_tokens, index.dim

    config = dict(manifest.get("encoder_config") or {})
    config["skiplist_words"] = tuple(config.get("skiplist_words") or ())
    encoder = ColBERTEncoder.from_pretrained(args.model, device="cpu", local_files_only=True, **config)

    workdir = Path(tempfile.mkdtemp(prefix="bench-qdrant-")) if args.qdrant_path is None else args.qdrant_path
    runs: dict[str, dict[str, Any]] = {}
    layouts: dict[str, dict[str, Any]] = {}
    fp16_per_doc = n_tokens * dim * 2 / len(doc_ids)
    payload = statistics.fmean(len(json.dumps({"page_content": texts[i], "doc_id": i})) + 200 for i in doc_ids)
    try:
        logger.info("exact: %d queries", n)
        runs["exact"] = timed_run(lambda q: index.search(q[0], k=args.k), queries, query_ids, "exact")
        runs["exact"].update(layout=None, mode="exact", bytes_per_doc_server=fp16_per_doc + 8, bytes_per_doc_disk=None)
        for layout_name in args.layouts:
            layout = LAYOUTS[layout_name]
            store, client, info = open_layout(
                layout_name, layout, workdir / layout_name, encoder, doc_ids, docs, texts, args.device
            )
            preset = store.config
            breakdown = {
                "tokens": n_tokens * layout.token_bytes(dim) / len(doc_ids),
                "pooled": dim * 4 if preset.pooled_vectors == 1 else 0,
                "hnsw": 16 * 2 * 4,
                # BM25 sparse vector: a u32 index and an f32 weight per distinct WordPiece term.
                "lexical": 8 * statistics.fmean(len(set(t)) for t in store._lexical_ids([texts[i] for i in doc_ids]))
                if preset.lexical
                else 0,
                "payload": payload,
            }
            if preset.pooled_vectors > 1:
                breakdown["pooled"] = statistics.fmean(min(preset.pooled_vectors, d.shape[0]) for d in docs) * dim * 4
            server = sum(breakdown.values())
            layouts[layout_name] = {**info, "description": layout.description, "bytes_breakdown_server": breakdown}
            our_runs = [("ours", "local", depth, n) for depth in args.depths]
            native_runs = [("native", "native", depth, args.native_queries) for depth in args.native_depths]
            for label, mode, depth, n_run in our_runs + native_runs:
                name = f"{layout_name} {label} d={depth}"
                logger.info("%s", name)

                def search(q: Any, m: str = mode, d: int = depth, store: Any = store) -> Any:
                    return store.search_embeddings([q[0]], k=args.k, mode=m, candidate_depth=d, query_texts=[q[1]])[0]

                runs[name] = timed_run(search, queries[:n_run], query_ids[:n_run], name)
                n_wire = min(args.wire_queries, n_run)
                logger.info("%s: bytes on the wire, %d queries through the public API", name, n_wire)
                runs[name]["wire"] = wire_run(store, search, queries[:n_wire], query_ids[:n_wire], runs[name])
                runs[name].update(
                    layout=layout_name,
                    mode=mode,
                    depth=depth,
                    bytes_per_doc_server=server,
                    bytes_per_doc_disk=info["local_mode_disk_bytes"] / len(doc_ids),
                )
            client.close()
            del store, client, search  # local mode holds the collection in memory: one layout at a time
    finally:
        if args.qdrant_path is None:
            shutil.rmtree(workdir, ignore_errors=True)
    machine["load_average_end"] = load_average()

    report = {
        "benchmark": "bench_qdrant",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {
            "data": str(args.data),
            "split": args.split,
            "model": str(args.model),
            "cache": str(args.cache),
            "n_queries": n,
            "k": args.k,
            "depths": args.depths,
            "native_depths": args.native_depths,
            "layouts": args.layouts,
            "wire_queries": args.wire_queries,
            "wire": "each config's first wire_queries queries rerun untimed through the public client API; every "
            "response serialised as REST JSON (server envelope, float32 shortest text; rest_pydantic: "
            "model_dump_json) and as gRPC protobuf (RestToGrpc, ByteSize); request_rest: the request bodies",
            "qdrant": "embedded local mode, QdrantClient(path=...): pure Python, exhaustive (no HNSW)",
            "warmup_queries": WARMUP_QUERIES,
            "timing": "one query per call (index.search / store.search_embeddings), time.perf_counter, no encoding",
            "recall@10_vs_exact": "mean over queries of |top-10 ids ∩ exact top-10 ids| / 10",
        },
        "machine": machine,
        "inputs": {
            "n_documents": len(doc_ids),
            "n_tokens": n_tokens,
            "dim": dim,
            "store_encoded_now": encoded_now,
            "query_file": str(query_file),
            "layouts": layouts,
        },
        "results": make_rows(runs, data.qrels),
        "wall_seconds": time.perf_counter() - started,
    }
    print(format_table(report))
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote %s", output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
