"""Reranking BM25's top 100 on SciFact inside LlamaIndex: nothing vs our ColBERT vs LlamaIndex's ``ColbertRerank``.

Use this when you change the reranker (batching, device handling, scoring) or want to know what a
ColBERT reranker buys over BM25 in a LlamaIndex pipeline, and what it costs per query. All rows
rerank the same candidates in the same process:

* ``(a) BM25``: ``llama-index-retrievers-bm25``'s ``BM25Retriever`` top ``--top-k``, not reranked.
* ``(b) LateInteractionRerank``: ours (``lateint_plugins.llama_index``), real ColBERT (markers, ``[MASK]``
  query expansion, projection head, MaxSim summed over query tokens), documents encoded in batches.
* ``(c) ColbertRerank``: ``llama-index-postprocessor-colbert-rerank`` given the same checkpoint
  folder as ``model`` and ``tokenizer``, run as shipped: the backbone's raw hidden states (no
  projection, no markers, no expansion), the mean of per-token maxima, one document at a time. The
  harness calls every reranker under ``torch.inference_mode()``: ColbertRerank itself keeps autograd on
  (about 100 MiB per document, ~10 GiB for 100 candidates: the first recorded run was OOM-killed);
  inference mode changes none of its scores.

Method: the corpus (``title + " " + text`` per document) is indexed by BM25 once (not timed); for each of
the first ``--queries`` test queries (in qrels order) BM25 retrieves the top ``--top-k`` nodes, and every
reranker then reorders fresh copies of those nodes through LlamaIndex's public
``postprocess_nodes(nodes, query_bundle)`` with ``top_n = --top-k``. Rerankers are timed in turn on each
query (ABAB...), so load drift hits both alike, after one untimed warm-up call each. Latency is the
wall time of one ``postprocess_nodes`` call (query and candidates encoded, scored, sorted);
the table gives the median and p95 over queries. nDCG@10 and MRR@10 are against the qrels of the
measured queries only (``lateint_plugins.core.evaluation``, trec_eval definitions).

Run from the repository root::

    python benchmarks/bench_rerank.py --queries 30 --threads 1   # the recorded table (~16 min on 2 CPU cores)
    python benchmarks/bench_rerank.py --queries 300           # every SciFact test query (slow on CPU)
    python benchmarks/bench_rerank.py --queries 2 --top-k 10 --output /tmp/smoke.json   # smoke test

On two CPU cores one query costs each reranker 14-23 s (100 documents encoded), so the recorded run
uses the first N queries; the header says which N. Stop a run with Ctrl-C and it reports the queries
completed; the JSON is also rewritten after every query, so a run killed mid-way keeps the queries it
finished.
``--threads 1`` is faster than 2 when other processes share the two cores (no thread oversubscription).

The table goes to stdout, progress to stderr, everything (every query's latency and top-10, machine,
versions, load average) to ``--output`` as JSON. Latencies compare only on the same machine and load.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    add_data_arguments,
    load_average,
    machine_info,
    machine_lines,
    package_version,
    prepare_process,
)

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_rerank.json"
PEER_PACKAGE = "llama-index-postprocessor-colbert-rerank"

RERANK_PACKAGES = ("torch", "transformers", "llama-index-core", "llama-index-retrievers-bm25", PEER_PACKAGE, "bm25s")
logger = logging.getLogger("bench_rerank")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="nDCG@10 and rerank latency: BM25 top-k, + LateInteractionRerank, + LlamaIndex ColbertRerank.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument("--queries", type=int, default=300, help="first N judged queries (qrels order)")
    parser.add_argument("--top-k", type=int, default=100, help="BM25 candidates reranked per query")
    parser.add_argument("--batch-size", type=int, default=32, help="our reranker's documents per encoder batch")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="device given to both rerankers, e.g. cpu or cuda")
    parser.add_argument(
        "--rows", default="bm25,ours,peer", help="comma-separated rows to run: bm25, ours, peer (bm25 always runs)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    for name in ("queries", "top_k", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(args.rows) - {"bm25", "ours", "peer"}
    if unknown:
        parser.error(f"--rows: unknown {sorted(unknown)}; choose from bm25, ours, peer.")
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model} is not a checkpoint folder (no config.json).")
    if not (args.data / "corpus.jsonl").is_file():
        parser.error(f"--data {args.data} has no corpus.jsonl (expected the BEIR layout).")
    return args


# ---------------------------------------------------------------------- rerankers
def build_rerankers(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The rerankers to time, by row key, and a reason for every requested row that cannot run."""
    rerankers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if "ours" in args.rows:
        from lateint_plugins.llama_index import LateInteractionRerank

        start = time.perf_counter()
        rerankers["ours"] = LateInteractionRerank(
            top_n=args.top_k, model=args.model, device=args.device, batch_size=args.batch_size
        )
        logger.info("loaded ours in %.1fs", time.perf_counter() - start)
    if "peer" in args.rows:
        try:
            from llama_index.postprocessor.colbert_rerank import ColbertRerank
        except ImportError as exc:
            skipped["peer"] = f"not installed ({exc}); pip install {PEER_PACKAGE}"
        else:
            try:
                start = time.perf_counter()
                rerankers["peer"] = ColbertRerank(
                    top_n=args.top_k, model=str(args.model), tokenizer=str(args.model), device=args.device
                )
                logger.info("loaded peer in %.1fs", time.perf_counter() - start)
            except Exception as exc:  # report any load failure as the row's reason
                skipped["peer"] = f"cannot load {args.model} ({type(exc).__name__}: {exc})"
    return rerankers, skipped


def timed_rerank(reranker: Any, candidates: Sequence[Any], query: str, sync: Callable[[], None]) -> tuple[float, Any]:
    import torch
    from llama_index.core.schema import NodeWithScore, QueryBundle

    # Fresh NodeWithScore objects: ColbertRerank overwrites the scores of the nodes it is given.
    nodes = [NodeWithScore(node=n.node, score=n.score) for n in candidates]
    sync()
    start = time.perf_counter()
    # ColbertRerank runs with autograd on (~100 MiB per document); inference mode changes none of
    # its scores and keeps 100 candidates in memory. Ours already runs under it.
    with torch.inference_mode():
        out = reranker.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
    sync()
    return time.perf_counter() - start, out


# ---------------------------------------------------------------------- report
def summarise(seconds: list[float], n_docs: int) -> dict[str, Any]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    median = statistics.median(ordered)
    return {"median_s": median, "p95_s": p95, "docs_per_s": n_docs / median if median > 0 else None}


ROW_LABELS = {
    "bm25": "(a) BM25 top-{k}, no rerank",
    "ours": "(b) + LateInteractionRerank (ours)",
    "peer": "(c) + ColbertRerank (llama-index-postprocessor-colbert-rerank {v})",
}


def format_table(report: dict[str, Any]) -> str:
    cfg, rows = report["config"], report["rows"]
    k = cfg["top_k"]
    lines = [
        f"SciFact {cfg['split']}: first {cfg['n_queries']} of {cfg['n_queries_available']} queries"
        f"{'' if cfg['n_queries'] == cfg['n_queries_requested'] else ' (run stopped early)'}, "
        f"BM25 top-{k} reranked, {cfg['n_documents']} documents, model {Path(cfg['model']).name}, "
        f"device {cfg['device']}, {cfg['threads']} threads",
        "",
        f"| {'row':<68} | nDCG@10 | MRR@10 | rerank p50 ms/query | p95 ms | docs/s |",
        f"|{'-' * 70}|--------:|-------:|--------------------:|-------:|-------:|",
    ]
    for key in ("bm25", "ours", "peer"):
        row = rows.get(key)
        if row is None:
            continue
        label = ROW_LABELS[key].format(k=k, v=package_version(PEER_PACKAGE) or "")
        if row.get("skipped"):
            lines.append(f"| {label:<68} | not measured: {row['skipped']} |")
            continue
        lat = row.get("latency")
        cells = (
            (f"{lat['median_s'] * 1000:>19.0f}", f"{lat['p95_s'] * 1000:>6.0f}", f"{lat['docs_per_s']:>6.1f}")
            if lat
            else (f"{'-':>19}", f"{'-':>6}", f"{'-':>6}")
        )
        lines.append(f"| {label:<68} | {row['ndcg@10']:7.4f} | {row['mrr@10']:6.4f} | {' | '.join(cells)} |")
    bm25 = rows["bm25"]["retrieval_latency"]
    lines += [
        "",
        f"BM25 retrieval (not part of the rerank latency): p50 {bm25['median_s'] * 1000:.1f} ms/query.",
        f"load average at start/end: {report['load_average']['start']} / {report['load_average']['end']}",
        *machine_lines(report["machine"]),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    load_start = load_average()

    import torch
    from lateint_plugins.core.evaluation import evaluate, load_beir
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    torch.set_num_threads(args.threads)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    data = load_beir(args.data, split=args.split)
    doc_ids, doc_texts = data.document_texts()
    query_ids, query_texts = data.query_texts()
    query_ids, query_texts = query_ids[: args.queries], query_texts[: args.queries]
    qrels = {q: data.qrels[q] for q in query_ids}

    start = time.perf_counter()
    nodes = [TextNode(id_=i, text=t) for i, t in zip(doc_ids, doc_texts, strict=True)]
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=args.top_k)
    logger.info("BM25 index over %d documents in %.1fs", len(nodes), time.perf_counter() - start)

    candidates: list[list[Any]] = []
    bm25_seconds: list[float] = []
    for text in query_texts:
        start = time.perf_counter()
        candidates.append(bm25.retrieve(text))
        bm25_seconds.append(time.perf_counter() - start)

    rerankers, skipped = build_rerankers(args)
    runs: dict[str, dict[str, list[str]]] = {"bm25": {}}
    seconds: dict[str, list[float]] = {key: [] for key in rerankers}
    per_query: list[dict[str, Any]] = []
    for key in rerankers:
        runs[key] = {}
        timed_rerank(rerankers[key], candidates[0], query_texts[0], sync)  # warm-up, not timed

    def write_report() -> dict[str, Any]:
        """Score the queries done so far and write the JSON (after every query, so a stopped run keeps them)."""
        done = list(runs["bm25"])
        judged = {q: qrels[q] for q in done}
        metrics = ("ndcg@10", "mrr@10")
        rows: dict[str, dict[str, Any]] = {
            "bm25": {
                **evaluate(runs["bm25"], judged, metrics),
                f"recall@{args.top_k}": evaluate(runs["bm25"], judged, f"recall@{args.top_k}")[f"recall@{args.top_k}"],
                "retrieval_latency": summarise(bm25_seconds[: len(done)], args.top_k),
            }
        }
        for key in rerankers:
            rows[key] = {**evaluate(runs[key], judged, metrics), "latency": summarise(seconds[key], args.top_k)}
        for key, reason in skipped.items():
            rows[key] = {"skipped": reason}
        report: dict[str, Any] = {
            "benchmark": "bench_rerank",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "config": {
                "model": str(args.model),
                "data": str(args.data),
                "split": args.split,
                "n_queries": len(done),
                "n_queries_requested": len(query_ids),
                "n_queries_available": len(data.queries),
                "n_documents": len(doc_ids),
                "top_k": args.top_k,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "device": args.device,
            },
            "rows": rows,
            "load_average": {"start": load_start, "end": load_average()},
            "machine": machine_info(
                torch,
                args.device,
                ("torch", "transformers", "llama-index-core", "llama-index-retrievers-bm25", PEER_PACKAGE, "bm25s"),
            ),
            "per_query": per_query,
        }
        report["table"] = format_table(report)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return report

    report: dict[str, Any] | None = None
    try:
        for i, (qid, text, cands) in enumerate(zip(query_ids, query_texts, candidates, strict=True)):
            record: dict[str, Any] = {"query_id": qid, "n_candidates": len(cands)}
            ranked: dict[str, list[str]] = {"bm25": [n.node.node_id for n in cands]}
            for key, reranker in rerankers.items():
                elapsed, out = timed_rerank(reranker, cands, text, sync)
                record[f"{key}_s"] = elapsed
                ranked[key] = [n.node.node_id for n in out]
            # A query counts only once every row has it, so all rows are scored on the same queries.
            for key, ids in ranked.items():
                runs[key][qid] = ids
                record[f"{key}_top10"] = ids[:10]
                if key in seconds:
                    seconds[key].append(record[f"{key}_s"])
            per_query.append(record)
            report = write_report()
            logger.info(
                "query %d/%d %s",
                i + 1,
                len(query_ids),
                "  ".join(f"{key} {record[f'{key}_s']:.1f}s" for key in rerankers),
            )
    except KeyboardInterrupt:
        logger.warning("interrupted: reporting the %d queries completed", len(runs["bm25"]))
    if report is None:
        logger.error("no query completed; nothing to report")
        return 1
    print(report["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
