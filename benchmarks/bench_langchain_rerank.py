"""BM25 alone vs BM25 reranked by ``LateInteractionReranker`` (LangChain) on SciFact.

Use this to check what the LangChain reranker buys over a BM25 first stage, and what it costs per
query: the quality gain (nDCG@10, Recall@10; Recall@100 is BM25's ceiling for the reranker) and the
latency of one ``compress_documents`` call.

Method: BM25 is ``bm25s`` (Lucene BM25, English stopwords, Snowball stemmer when PyStemmer is
installed) over BEIR's ``title + " " + text``; it returns the top ``--candidates`` (100) documents of
every test query as LangChain ``Document`` objects. The reranker is
``LateInteractionReranker(encoder=..., top_n=None)`` with answerai-colbert-small-v1; it reorders the
candidates through its public ``compress_documents(documents, query)``, which scores with core
``rerank`` (the one MaxSim). Two settings:

* ``warm``: the reranker's ``document_cache`` is filled beforehand with the corpus token vectors of
  a saved exact store (``--cache``; encoded and saved there when missing, by the same encoder and
  settings). A call then encodes the query and scores 100 cached documents. Quality for all queries
  comes from this setting. The cached vectors are stored in fp16, so scores can differ from freshly
  encoded ones by rounding.
* ``cold``: no cache, the first ``--cold-queries`` queries: a call encodes the query **and** its 100
  candidates, the cost a reranker without a cache pays. Its rankings are compared with ``warm`` for
  the same queries (top-10 agreement, largest score difference) to show the cache changes nothing
  but time.

Timed (``time.perf_counter``): one ``bm25s`` retrieve per query (tokenising the query included), one
``compress_documents`` call per query. Not timed: BM25 indexing, model loading, cache filling.

Run from the repository root::

    python benchmarks/bench_langchain_rerank.py --cache /work/cache/scifact-store   # reuse an encoded corpus
    python benchmarks/bench_langchain_rerank.py --queries 30 --cold-queries 3          # smoke test

The table goes to stdout, progress to stderr, everything (per-query latencies and metrics, machine,
versions) to ``--output`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    add_data_arguments,
    corpus_texts,
    encode_corpus_once,
    machine_info,
    machine_lines,
    prepare_process,
)

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_langchain_rerank.json"
METRICS = ("ndcg@10", "recall@10", "recall@100")

logger = logging.getLogger("bench_langchain_rerank")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="BM25 top-100 vs BM25 + LateInteractionReranker on SciFact: nDCG@10, Recall@10, latency.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser, cache_help="it fills the reranker's document cache")
    parser.add_argument("--queries", type=int, default=None, help="first N queries of the split (None: all)")
    parser.add_argument("--candidates", type=int, default=100, help="BM25 documents reranked per query")
    parser.add_argument("--cold-queries", type=int, default=10, help="queries timed without a document cache")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device of the encoder, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=32, help="documents per encoder batch")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    for name in ("queries", "candidates", "threads", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if args.cold_queries < 0:
        parser.error(f"--cold-queries must be >= 0, got {args.cold_queries}.")
    problems = []
    if not (args.data / "qrels" / f"{args.split}.tsv").is_file():
        problems.append(f"{args.data} has no qrels/{args.split}.tsv (pass --data PATH to a BEIR folder, or --split)")
    if not args.model.is_dir():
        problems.append(f"model folder {args.model} does not exist (pass --model PATH to a local checkpoint folder)")
    if args.cache.exists() and not (args.cache / "manifest.json").is_file():
        problems.append(f"--cache {args.cache} exists but holds no saved store; pass an empty path")
    if problems:
        parser.error("; ".join(problems) + ".")
    return args


def load_store(args: argparse.Namespace, corpus: dict[str, dict[str, str]]) -> Any:
    """The cached exact store of the corpus, encoding and saving it first when the cache is empty."""
    from lateint_plugins.core import LateInteractionStore

    encode_corpus_once(args.cache, corpus, args.model, args.device, args.batch_size)
    store = LateInteractionStore.load(args.cache, device=args.device)
    if set(store.index.ids) != set(corpus):
        raise SystemExit(
            f"bench_langchain_rerank: the store at {args.cache} holds {len(store)} documents, not this corpus's "
            f"{len(corpus)}; point --cache at an empty folder to encode this corpus."
        )
    if Path(store.encoder.name_or_path).name != args.model.name:
        raise SystemExit(
            f"bench_langchain_rerank: the store at {args.cache} was encoded with {store.encoder.name_or_path}, "
            f"not {args.model}; point --cache elsewhere."
        )
    return store


def bm25_stage(texts: list[str]) -> tuple[Any, Any, str]:
    """A ``bm25s`` index of ``texts`` and the tokenizer settings used for it."""
    import bm25s

    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
        label = "bm25s (lucene, en stopwords, snowball stemmer)"
    except ImportError:
        stemmer = None
        label = "bm25s (lucene, en stopwords, no stemmer)"
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    return retriever, stemmer, label


def summary(latencies_ms: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    return {
        "n": len(ordered),
        "mean_ms": statistics.fmean(ordered),
        "p50_ms": ordered[len(ordered) // 2],
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    prepare_process()
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    logger.setLevel(logging.INFO)

    import bm25s
    import torch
    from langchain_core.documents import Document
    from lateint_plugins.core import evaluate, load_beir

    from lateint_plugins.langchain import LateInteractionReranker

    torch.set_num_threads(args.threads)
    data = load_beir(args.data, split=args.split)
    queries = list(data.queries.items())[: args.queries]
    qrels = {qid: data.qrels[qid] for qid, _ in queries}
    doc_ids, doc_texts = corpus_texts(data.corpus)
    logger.info("%d documents, %d %s queries", len(doc_ids), len(queries), args.split)

    # ---------------------------------------------------------------- BM25 first stage
    bm25, stemmer, bm25_label = bm25_stage(doc_texts)
    documents = [Document(page_content=t, id=i) for i, t in zip(doc_ids, doc_texts, strict=True)]
    n_candidates = min(args.candidates, len(documents))
    candidates: dict[str, list[Document]] = {}
    bm25_ms: list[float] = []
    for qid, text in queries:
        start = time.perf_counter()
        positions, _ = bm25.retrieve(
            bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False),
            k=n_candidates,
            show_progress=False,
        )
        bm25_ms.append((time.perf_counter() - start) * 1e3)
        candidates[qid] = [documents[int(p)] for p in positions[0]]

    # ---------------------------------------------------------------- reranker, warm document cache
    store = load_store(args, data.corpus)
    text_of = dict(zip(doc_ids, doc_texts, strict=True))
    document_cache = {text_of[i]: v.float() for i, v in zip(store.index.ids, store.index.embeddings(), strict=True)}
    encoder = store.encoder
    warm = LateInteractionReranker(
        encoder=encoder, top_n=None, batch_size=args.batch_size, document_cache=document_cache
    )
    for qid, text in queries[:3]:  # warm-up: first calls pay one-off allocation costs
        warm.compress_documents(candidates[qid], text)
    reranked: dict[str, list[Document]] = {}
    warm_ms: list[float] = []
    for n, (qid, text) in enumerate(queries, 1):
        start = time.perf_counter()
        reranked[qid] = list(warm.compress_documents(candidates[qid], text))
        warm_ms.append((time.perf_counter() - start) * 1e3)
        if n % 50 == 0:
            logger.info("reranked %d/%d queries", n, len(queries))
    if len(document_cache) != len(doc_ids):
        raise SystemExit("bench_langchain_rerank: the warm reranker encoded documents; the cache does not match.")

    # ---------------------------------------------------------------- reranker, no cache
    cold = LateInteractionReranker(encoder=encoder, top_n=None, batch_size=args.batch_size)
    cold_ms: list[float] = []
    top10_agreement: list[float] = []
    max_score_diff = 0.0
    for qid, text in queries[: args.cold_queries]:
        start = time.perf_counter()
        fresh = list(cold.compress_documents(candidates[qid], text))
        cold_ms.append((time.perf_counter() - start) * 1e3)
        warm_top = [d.id for d in reranked[qid][:10]]
        top10_agreement.append(len(set(warm_top) & {d.id for d in fresh[:10]}) / len(warm_top))
        warm_scores = {d.id: d.metadata["score"] for d in reranked[qid]}
        max_score_diff = max(max_score_diff, *(abs(d.metadata["score"] - warm_scores[d.id]) for d in fresh))

    # ---------------------------------------------------------------- report
    runs = {
        "bm25": {qid: [d.id for d in docs] for qid, docs in candidates.items()},
        "bm25+rerank": {qid: [d.id for d in docs] for qid, docs in reranked.items()},
    }
    quality = {name: evaluate(run, qrels, METRICS) for name, run in runs.items()}
    per_query = {
        name: {qid: evaluate({qid: run[qid]}, {qid: qrels[qid]}, ["ndcg@10"])["ndcg@10"] for qid in run}
        for name, run in runs.items()
    }
    latency = {
        "bm25_retrieve": summary(bm25_ms),
        "rerank_warm": summary(warm_ms),
        **({"rerank_cold": summary(cold_ms)} if cold_ms else {}),
    }
    machine = machine_info(torch, args.device, ("torch", "transformers", "langchain-core", "bm25s"))
    report = {
        "benchmark": "bench_langchain_rerank",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": f"{data.name} ({args.split})",
        "n_documents": len(doc_ids),
        "n_queries": len(queries),
        "candidates": n_candidates,
        "first_stage": bm25_label,
        "model": str(args.model),
        "encoder_config": {
            "query_length": encoder.config.query_length,
            "document_length": encoder.config.document_length,
        },
        "store": str(args.cache),
        "quality": quality,
        "latency": latency,
        "cold_vs_warm": {
            "queries": len(cold_ms),
            "top10_agreement": statistics.fmean(top10_agreement) if top10_agreement else None,
            "max_abs_score_diff": max_score_diff if cold_ms else None,
        },
        "per_query_ndcg@10": per_query,
        "per_query_latency_ms": {"bm25": bm25_ms, "rerank_warm": warm_ms, "rerank_cold": cold_ms},
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"SciFact {args.split}: {len(queries)} queries, {len(doc_ids)} documents; BM25 top-{n_candidates}")
    print()
    print(f"| {'pipeline':<34} | nDCG@10 | Recall@10 | Recall@100 | ms/query (p50) |")
    print(f"|{'-' * 36}|---------|-----------|------------|----------------|")
    rows = [
        ("BM25 (bm25s)", quality["bm25"], latency["bm25_retrieve"]),
        ("BM25 + LateInteractionReranker", quality["bm25+rerank"], latency["rerank_warm"]),
    ]
    for name, metrics, lat in rows:
        print(
            f"| {name:<34} | {metrics['ndcg@10']:.4f}  | {metrics['recall@10']:.4f}    "
            f"| {metrics['recall@100']:.4f}     | {lat['p50_ms']:>14.1f} |"
        )
    print()
    print(f"rerank latency, one compress_documents call of {n_candidates} documents:")
    print(
        f"  warm (cached document vectors; query encoding + MaxSim): p50 {latency['rerank_warm']['p50_ms']:.1f} ms, "
        f"p95 {latency['rerank_warm']['p95_ms']:.1f} ms, mean {latency['rerank_warm']['mean_ms']:.1f} ms "
        f"({len(warm_ms)} queries)"
    )
    if cold_ms:
        print(
            f"  cold (encodes the {n_candidates} documents too): p50 {latency['rerank_cold']['p50_ms']:.0f} ms, "
            f"mean {latency['rerank_cold']['mean_ms']:.0f} ms ({len(cold_ms)} queries); top-10 agreement with warm "
            f"{report['cold_vs_warm']['top10_agreement']:.3f}, max |score diff| {max_score_diff:.4f}"
        )
    print(f"  BM25 retrieve (rerank rows add to it): p50 {latency['bm25_retrieve']['p50_ms']:.1f} ms")
    print()
    for line in machine_lines(machine):
        print(line)
    print(f"JSON: {args.output}")


if __name__ == "__main__":
    main()
