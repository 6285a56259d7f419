"""PLAID latency as the number of documents grows: the per-document cost of a search, isolated.

Use this when you change PLAID's candidate stages (``_Search._probe`` and what it calls): it shows
what a query costs that grows with the number of documents rather than with the postings it reads.
Every document is a single token near one of 1,024 random topic centres (seeded), so the postings a
query reads stay few while the number of documents grows to millions; each query's 32 tokens are
near those of 32 random documents. ``ExactIndex`` over the same vectors is the baseline (cheap here,
since one-token documents make exact MaxSim one matrix product).

Each row: ``PLAIDIndex(dim, PLAIDConfig(nbits=2, n_centroids=--centroids))`` built from ``N``
documents in adds of 100,000, then ``--queries`` random 32-token queries, one at a time,
``search(q, k=100)`` with the fast8 settings of ``bench_index.py``
(``SearchConfig(n_ivf_probe=2, n_centroid_interaction=8, n_full_scores=128)``), after three untimed
ones; median and p95 latency and QPS (1 / mean). Cost only, not recall: a one-token document's
MaxSim is its product with the sum of the query tokens, so PLAID's candidates (documents near each
query token's best centroids) are not the exact top here; ``bench_index.py`` measures recall on
real documents.

Run from the repository root::

    python benchmarks/bench_plaid_documents.py                          # 100k and 1M documents (~2 min)
    python benchmarks/bench_plaid_documents.py --documents 10000 --queries 5 --output /tmp/smoke.json

The table goes to stdout, everything (per-query latencies, machine, versions, load) to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load_average, machine_info, machine_lines, prepare_process

logger = logging.getLogger("benchmarks.plaid_documents")
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_plaid_documents.json"
ADD_DOCS = 100_000
FAST8 = {"n_ivf_probe": 2, "n_centroid_interaction": 8, "n_full_scores": 128}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", default="100000,1000000", help="comma-separated document counts")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--centroids", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args()


def timed_searches(index: Any, queries: list[Any]) -> list[float]:
    for query in queries[:3]:
        index.search(query, k=100)
    seconds = []
    for query in queries:
        start = time.perf_counter()
        index.search(query, k=100)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    prepare_process()
    args = parse_args()
    import torch
    from lateint_plugins.core.index import ExactIndex
    from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig

    torch.set_num_threads(args.threads)
    machine = machine_info(torch, "cpu", ["torch", "faiss-cpu"])
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(1024, args.dim, generator=g), dim=-1)

    def near(points: Any, noise: float) -> Any:
        return torch.nn.functional.normalize(points + noise * torch.randn(points.shape, generator=g), dim=-1)

    queries = [near(near(centres[torch.randint(0, 1024, (32,), generator=g)], 0.3), 0.05) for _ in range(args.queries)]
    rows = []
    for n_docs in (int(n) for n in args.documents.split(",")):
        plaid = PLAIDIndex(args.dim, config=PLAIDConfig(nbits=2, n_centroids=args.centroids), device="cpu")
        plaid.search_config = SearchConfig(**FAST8)
        exact = ExactIndex(args.dim, device="cpu")
        build = 0.0
        for first in range(0, n_docs, ADD_DOCS):
            count = min(ADD_DOCS, n_docs - first)
            vectors = near(centres[torch.randint(0, 1024, (count,), generator=g)], 0.3)[:, None, :]
            ids = [f"d{i}" for i in range(first, first + count)]
            start = time.perf_counter()
            plaid.add(ids, list(vectors))
            build += time.perf_counter() - start
            exact.add(ids, list(vectors))
        logger.warning("%d documents added in %.1f s; searching", n_docs, build)
        for name, index in (("exact", exact), ("plaid-2bit fast8", plaid)):
            seconds = timed_searches(index, queries)
            rows.append(
                {
                    "documents": n_docs,
                    "config": name,
                    "build_seconds": build if index is plaid else None,
                    "p50_ms": statistics.median(seconds) * 1e3,
                    "p95_ms": sorted(seconds)[int(0.95 * (len(seconds) - 1))] * 1e3,
                    "qps": len(seconds) / sum(seconds),
                    "seconds": seconds,
                }
            )
    print(
        f"One-token documents, {args.queries} queries of 32 x {args.dim} one at a time, k=100, {args.threads} threads\n"
    )
    print(f"{'documents':>10}  {'config':<18} {'p50 ms':>8} {'p95 ms':>8} {'QPS':>8}")
    for r in rows:
        print(f"{r['documents']:>10}  {r['config']:<18} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['qps']:>8.1f}")
    machine["load_average_end"] = load_average()
    print("\n" + "\n".join(machine_lines(machine)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "bench_plaid_documents",
                "args": vars(args) | {"output": str(args.output)},
                "machine": machine,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
