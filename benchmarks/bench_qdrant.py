"""The Qdrant store on SciFact: our path (pooled prefetch + local MaxSim) vs Qdrant native vs the exact index.

Use this when you change the Qdrant adapter (collection layout, pooling, candidate depth, how
candidates are fetched) and want to know what it costs or buys against exact search on real
ColBERT embeddings: nDCG@10, Recall@10 against the exact index's top 10, query latency and bytes
held per document, side by side in one run.

Method: the corpus is encoded once and cached as a ``LateInteractionStore`` (exact index), the
test queries once next to it (``queries-*.pt``, shared with ``bench_index.py``); encoding is never
timed. The cached vectors are upserted into a Qdrant collection in **embedded local mode**
(``QdrantClient(path=...)``: pure Python, brute force, no HNSW; a server's latencies differ) with
the adapter's layout. Then every query runs alone (``time.perf_counter`` around one call, after
warm-up queries), ``k=100``:

* ``exact``: ``ExactIndex.search``, exhaustive MaxSim over fp16 vectors; the reference.
* ``ours d=N``: ``QdrantLateInteractionStore`` ``mode="local"``: the union of the ``N`` best points
  by the pooled (mean) vector and the ``N`` best by BM25 over WordPiece terms (sparse vector, IDF by
  Qdrant), with their token vectors, from Qdrant; exact MaxSim here (``core.scoring.maxsim``).
* ``native d=N``: ``mode="native"``: the same prefetch, then Qdrant's ``MAX_SIM`` rescoring.

Bytes per document: ``exact`` holds fp16 tokens and a length; the Qdrant rows show what the
layout holds on a server (fp16 tokens, the pooled vector in float32, its HNSW links at ``m=16``,
payload JSON) and what the embedded local-mode folder takes on disk (it pickles float32 lists).

Run from the repository root::

    python benchmarks/bench_qdrant.py --cache /work/cache/scifact-store       # all 300 test queries
    python benchmarks/bench_qdrant.py --queries 20 --native-queries 3            # smoke test

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
from collections.abc import Sequence
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
    parser.add_argument("--pooled-vectors", type=int, default=1, help="CollectionConfig.pooled_vectors")
    parser.add_argument("--no-lexical", action="store_true", help="CollectionConfig(lexical=False): pooled only")
    parser.add_argument(
        "--qdrant-path",
        type=Path,
        default=None,
        help="local-mode folder, kept after the run and reused when it holds the collection (default: a temp folder)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device for MaxSim, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size (cache misses only)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    for name in ("queries", "k", "threads", "batch_size", "pooled_vectors", "native_queries"):
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
                f"{r['bytes_per_doc_server']:,.0f}",
                f"{r['bytes_per_doc_disk']:,.0f}" if r.get("bytes_per_doc_disk") else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title, ""]
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]))
    b = inputs["bytes_breakdown_server"]
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
        f"B/doc server (Qdrant rows): fp16 tokens {b['tokens']:,.0f} + pooled fp32 {b['pooled']:,.0f} + HNSW links "
        f"{b['hnsw']:,.0f} + BM25 sparse {b['lexical']:,.0f} + payload {b['payload']:,.0f};",
        f"a default float32 multivector would hold {2 * b['tokens']:,.0f} for the tokens alone.",
        "B/doc local disk: the embedded local-mode folder / documents (pickled float32 lists); "
        + (
            f"collection upsert took {inputs['upsert_seconds']:.0f} s."
            if inputs["upsert_seconds"] is not None
            else "collection reused from --qdrant-path."
        ),
        "",
        f"load average (1, 5, 15 min): start {m['load_average_start']}, end {m['load_average_end']}",
        *machine_lines(m),
    ]
    return "\n".join(lines)


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
    from qdrant_client import QdrantClient

    from lateint_plugins.qdrant import CollectionConfig, QdrantLateInteractionStore

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
    try:
        client = QdrantClient(path=str(workdir))
        upsert_seconds = None
        reuse = client.collection_exists(COLLECTION) and client.count(COLLECTION).count > 0
        store = QdrantLateInteractionStore(
            client,
            COLLECTION,
            encoder,
            config=CollectionConfig(pooled_vectors=args.pooled_vectors, lexical=not args.no_lexical),
            device=args.device,
            write_batch_size=128,
        )
        if reuse and (store.config.pooled_vectors, store.config.lexical) != (args.pooled_vectors, not args.no_lexical):
            raise SystemExit(f"bench_qdrant: {workdir} holds a collection with {store.config}; pass another path.")
        if reuse and len(store) == len(doc_ids):
            logger.info("Reusing the collection at %s", workdir)
        else:
            logger.info("Upserting %d documents into Qdrant local mode at %s", len(doc_ids), workdir)
            start = time.perf_counter()
            store.add_embeddings([texts[i] for i in doc_ids], docs, ids=doc_ids, replace=True, show_progress_bar=True)
            upsert_seconds = time.perf_counter() - start
        client.close()  # flushes; reopened below so searches read what a fresh process would
        disk = folder_bytes(workdir)
        client = QdrantClient(path=str(workdir))
        store = QdrantLateInteractionStore(client, COLLECTION, encoder, device=args.device, create=False)

        fp16_per_doc = n_tokens * dim * 2 / len(doc_ids)
        payload = statistics.fmean(len(json.dumps({"page_content": texts[i], "doc_id": i})) + 200 for i in doc_ids)
        breakdown = {
            "tokens": fp16_per_doc,
            "pooled": args.pooled_vectors * dim * 4 if args.pooled_vectors == 1 else 0,
            "hnsw": 16 * 2 * 4,
            # BM25 sparse vector: a u32 index and an f32 weight per distinct WordPiece term.
            "lexical": 8 * statistics.fmean(len(set(t)) for t in store._lexical_ids([texts[i] for i in doc_ids])),
            "payload": payload,
        }
        if args.pooled_vectors > 1:
            breakdown["pooled"] = statistics.fmean(min(args.pooled_vectors, d.shape[0]) for d in docs) * dim * 4
        server = sum(breakdown.values())

        logger.info("exact: %d queries", n)
        runs["exact"] = timed_run(lambda q: index.search(q[0], k=args.k), queries, query_ids, "exact")
        runs["exact"].update(bytes_per_doc_server=fp16_per_doc + 8, bytes_per_doc_disk=None)
        our_runs = [("ours", "local", depth, n) for depth in args.depths]
        native_runs = [("native", "native", depth, args.native_queries) for depth in args.native_depths]
        for label, mode, depth, n_run in our_runs + native_runs:
            name = f"{label} d={depth}"
            logger.info("%s", name)
            runs[name] = timed_run(
                lambda q, m=mode, d=depth: store.search_embeddings(
                    [q[0]], k=args.k, mode=m, candidate_depth=d, query_texts=[q[1]]
                )[0],
                queries[:n_run],
                query_ids[:n_run],
                name,
            )
            runs[name].update(bytes_per_doc_server=server, bytes_per_doc_disk=disk / len(doc_ids))
        for depth in args.native_depths:
            name = f"native d={depth}"
            logger.info("%s", name)
            runs[name] = timed_run(
                lambda q, d=depth: store.search_embeddings(
                    [q[0]], k=args.k, mode="native", candidate_depth=d, query_texts=[q[1]]
                )[0],
                queries[: args.native_queries],
                query_ids[: args.native_queries],
                name,
            )
            runs[name].update(bytes_per_doc_server=server, bytes_per_doc_disk=disk / len(doc_ids))
        client.close()
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
            "pooled_vectors": args.pooled_vectors,
            "lexical": not args.no_lexical,
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
            "upsert_seconds": upsert_seconds,
            "local_mode_disk_bytes": disk,
            "bytes_breakdown_server": breakdown,
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
