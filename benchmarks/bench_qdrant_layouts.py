"""Token layouts of the Qdrant store on SciFact: fp16 multivectors vs PLAID codes, bytes on the wire per query.

Use this to choose a collection's ``token_layout`` (and ``nbits``, ``quantizer``, ``n_full_scores``
and ``n_refine`` of the ``"plaid"`` one): for each layout it reports the bytes Qdrant sends back per query, nDCG@10 and
Recall@10 against the exact index, on the same queries.

Method: the cached exact store's vectors are upserted into Qdrant **embedded local mode**
(``QdrantClient(":memory:")``). Every query runs twice. First through the public client API, as
on a server (the store's reads of local mode's arrays turned off): every client call a search
makes is wrapped, and its response measured two ways: **gRPC**, the protobuf size of the returned
points through qdrant-client's own REST->gRPC conversions (``RestToGrpc.convert_scored_point`` /
``convert_record``, ``.ByteSize()``: what a server sends over gRPC, framing aside), and **REST**, the
length of the points' JSON; quality comes from this pass. Then as a local-mode user runs it (array
reads on), timed: the p50 latency is local mode's, not a server's. Local mode's public API is slow
(about a second per query for fp16), so a subset of the test queries runs (``--queries``).

Run from the repository root::

    python benchmarks/bench_qdrant_layouts.py --cache DIR --queries 300 --plaid 2pq,6rq --full-scores 48,64 --refine 16
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import ROOT, add_data_arguments, load_average, machine_info, prepare_process

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_qdrant_layouts.json"
logger = logging.getLogger("bench_qdrant_layouts")


class WireMeter:
    """Wraps a client's read calls and adds up the size of what they return (gRPC protobuf and REST JSON)."""

    def __init__(self, client: Any) -> None:
        from qdrant_client.conversions.conversion import RestToGrpc

        self.grpc = self.rest = self.calls = 0
        retrieve, query_batch = client.retrieve, client.query_batch_points

        def measure(points: Sequence[Any], convert: Any) -> None:
            self.calls += 1
            for p in points:
                self.grpc += convert(p).ByteSize()
                self.rest += len(json.dumps(p.model_dump(mode="json", exclude_none=True), separators=(",", ":")))

        def metered_retrieve(*args: Any, **kwargs: Any) -> Any:
            out = retrieve(*args, **kwargs)
            measure(out, RestToGrpc.convert_record)
            return out

        def metered_query_batch(*args: Any, **kwargs: Any) -> Any:
            out = query_batch(*args, **kwargs)
            for response in out:
                measure(response.points, RestToGrpc.convert_scored_point)
            return out

        client.retrieve, client.query_batch_points = metered_retrieve, metered_query_batch

    def reset(self) -> tuple[int, int, int]:
        out = (self.grpc, self.rest, self.calls)
        self.grpc = self.rest = self.calls = 0
        return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_arguments(parser, cache_help="the exact store (index/, texts.jsonl, queries-*.pt) to read")
    parser.add_argument("--queries", type=int, default=100, help="first N test queries")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--depth", default="128", help="candidate_depth values to sweep (points per prefetch)")
    parser.add_argument(
        "--plaid",
        default="default,2pq,6rq",
        help="plaid layouts to build, as NBITS+QUANTIZER (e.g. 2pq,4pq,4rq,6rq: a codec trained on a sample of the "
        "whole corpus, written in one call), or 'default': CollectionConfig() written --write-batch documents per "
        "call, as add_texts writes (fp16 until codec_training_tokens, then a codec trained on those)",
    )
    parser.add_argument("--write-batch", type=int, default=256, help="documents per write call of the 'default' layout")
    parser.add_argument("--full-scores", default="16,32,64", help="n_full_scores values to sweep")
    parser.add_argument("--refine", default="16", help="n_refine values to sweep (two-stage 'rq' codecs)")
    parser.add_argument("--n-centroids", type=int, default=None, help="CollectionConfig.n_centroids (default: auto)")
    parser.add_argument("--no-fp16", action="store_true", help="skip the fp16 layout (slow to build)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    prepare_process()
    args = parse_args(argv)
    logger.setLevel(logging.INFO)
    import torch
    from lateint_plugins.core import ColBERTEncoder, evaluate, load_beir
    from lateint_plugins.core.index import load_index
    from qdrant_client import QdrantClient

    from lateint_plugins.qdrant import CollectionConfig, QdrantLateInteractionStore

    torch.set_num_threads(args.threads)
    machine = machine_info(torch, "cpu", ("torch", "qdrant-client"))
    cache = args.cache.resolve()
    data = load_beir(args.data.resolve(), split=args.split)
    manifest = json.loads((cache / "manifest.json").read_text(encoding="utf-8"))
    index = load_index(cache / "index", device="cpu")
    doc_ids, docs = index.ids, index.embeddings()
    texts = {}
    with (cache / "texts.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts[row["id"]] = row["text"]
    saved = torch.load(next(cache.glob(f"queries-{args.split}-*.pt")), weights_only=True)
    n = min(args.queries, len(saved["ids"]))
    query_ids = saved["ids"][:n]
    queries = [q.float() for q in saved["embeddings"][:n]]
    query_texts = [data.queries[i] for i in query_ids]
    config = dict(manifest.get("encoder_config") or {})
    config["skiplist_words"] = tuple(config.get("skiplist_words") or ())
    encoder = ColBERTEncoder.from_pretrained(args.model.resolve(), device="cpu", local_files_only=True, **config)
    qrels = {q: data.qrels[q] for q in query_ids}

    exact, exact_seconds = {}, []
    for qid, q in zip(query_ids, queries, strict=True):
        began = time.perf_counter()
        exact[qid] = [h.id for h in index.search(q, k=args.k)]
        exact_seconds.append(time.perf_counter() - began)
    rows: list[dict[str, Any]] = []

    def run(label: str, store: Any, meter: WireMeter, depth: int, **extra: Any) -> None:
        got, grpc, rest, calls, seconds = {}, [], [], [], []
        start = time.perf_counter()
        store._read_arrays = False  # what a server answers: local mode's array reads bypass the responses
        for qid, q, text in zip(query_ids, queries, query_texts, strict=True):
            meter.reset()
            hits = store.search_embeddings([q], k=args.k, candidate_depth=depth, query_texts=[text])[0]
            g, r, c = meter.reset()
            grpc.append(g)
            rest.append(r)
            calls.append(c)
            got[qid] = [h.id for h in hits]
        store._read_arrays = True
        same = True
        for qid, q, text in zip(query_ids, queries, query_texts, strict=True):
            began = time.perf_counter()
            hits = store.search_embeddings([q], k=args.k, candidate_depth=depth, query_texts=[text])[0]
            seconds.append(time.perf_counter() - began)
            same &= [h.id for h in hits] == got[qid]
        row = {
            "layout": label,
            "candidate_depth": depth,
            **extra,
            "n_queries": n,
            "grpc_bytes_per_query": statistics.fmean(grpc),
            "grpc_bytes_p95": sorted(grpc)[int(0.95 * (len(grpc) - 1))],
            "rest_bytes_per_query": statistics.fmean(rest),
            "calls_per_query": statistics.fmean(calls),
            "recall@10_vs_exact": statistics.fmean(len(set(got[q][:10]) & set(exact[q][:10])) / 10 for q in got),
            **evaluate(got, qrels, metrics=("ndcg@10",)),
            "seconds": time.perf_counter() - start,
            "p50_ms_local_mode": statistics.median(seconds) * 1e3,
            "local_mode_same_results": same,
        }
        rows.append(row)
        logger.info("%s", row)

    rows.append({"layout": "exact index", "n_queries": n, "recall@10_vs_exact": 1.0,
                 **evaluate(exact, qrels, metrics=("ndcg@10",)),
                 "p50_ms_local_mode": statistics.median(exact_seconds) * 1e3})  # fmt: skip
    layouts = [] if args.no_fp16 else [("fp16", CollectionConfig(token_layout="fp16"))]
    layouts += [
        (
            "plaid default" if spec == "default" else f"plaid {spec[:-2]}-bit {spec[-2:]}",
            CollectionConfig(n_centroids=args.n_centroids)
            if spec == "default"
            else CollectionConfig(
                token_layout="plaid",
                nbits=int(spec[:-2]),
                quantizer=spec[-2:],
                n_centroids=args.n_centroids,
                codec_training_tokens=0,
            ),
        )
        for spec in args.plaid.split(",")
    ]
    build: dict[str, float] = {}
    for label, cfg in layouts:
        client = QdrantClient(":memory:")
        store = QdrantLateInteractionStore(client, "scifact", encoder, config=cfg, device="cpu", write_batch_size=256)
        start = time.perf_counter()
        logger.info("%s: upserting %d documents", label, len(doc_ids))
        step = args.write_batch if label == "plaid default" else len(doc_ids)
        for at in range(0, len(doc_ids), step):
            chunk = doc_ids[at : at + step]
            store.add_embeddings([texts[i] for i in chunk], docs[at : at + step], ids=chunk)
        build[label] = time.perf_counter() - start
        meter = WireMeter(client)
        for depth in [int(x) for x in args.depth.split(",")]:
            if cfg.token_layout == "fp16":
                run(label, store, meter, depth)
                continue
            codec = store.codec
            refines = [int(x) for x in args.refine.split(",")] if cfg.quantizer == "rq" else [None]
            for full in [int(x) for x in args.full_scores.split(",")]:
                for refine in refines:
                    store.n_full_scores, store.n_refine = full, refine or store.n_refine
                    more = {"n_refine": refine} if refine else {}
                    run(label, store, meter, depth, n_full_scores=full, **more,
                        n_centroids=codec.n_centroids if codec else None,
                        codec_training_tokens=cfg.codec_training_tokens)  # fmt: skip
        client.close()

    report = {
        "benchmark": "bench_qdrant_layouts",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {
            "cache": str(cache),
            "n_queries": n,
            "k": args.k,
            "candidate_depth": args.depth,
            "qdrant": "embedded local mode, QdrantClient(':memory:')",
            "bytes": "gRPC: RestToGrpc.convert_*(point).ByteSize() summed over the points every client call "
            "of a search returns; REST: their JSON (model_dump, no nulls)",
        },
        "machine": {**machine, "load_average_end": load_average()},
        "build_seconds": build,
        "results": rows,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    header = (
        f"{'layout':<19} {'depth':>5} {'n_full':>6} {'refine':>6} {'gRPC KB/q':>10} {'REST KB/q':>10} {'calls':>5} "
        f"{'nDCG@10':>8} {'R@10/exact':>10} {'p50 ms':>7}"
    )
    print(f"SciFact, {n} test queries, k={args.k}, Qdrant local mode")
    print(header)
    for r in rows:
        print(
            f"{r['layout']:<19} {r.get('candidate_depth', '-')!s:>5} {r.get('n_full_scores', '-')!s:>6} "
            f"{r.get('n_refine', '-')!s:>6} "
            f"{r.get('grpc_bytes_per_query', 0) / 1e3:>10.1f} {r.get('rest_bytes_per_query', 0) / 1e3:>10.1f} "
            f"{r.get('calls_per_query', 0):>5.1f} {r['ndcg@10']:>8.4f} {r['recall@10_vs_exact']:>10.3f} "
            f"{r.get('p50_ms_local_mode', float('nan')):>7.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
