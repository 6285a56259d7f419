"""BM25 retrieval in LlamaIndex, reranked by ColBERT late interaction (`LateInteractionRerank`).

Use this approach when you already have a cheap first-stage retriever (BM25, a vector index) and
want better top results without building a ColBERT index: the reranker encodes only the
candidates, so nothing about the corpus needs to be precomputed. For a ColBERT first stage with
persistence, use `LateInteractionRetriever` instead.

Runs offline on SciFact: BM25 (llama-index-retrievers-bm25) fetches 20 candidates per query, the
reranker keeps the best 3, and the script prints both top-3 lists with the judged-relevant
documents marked.

Run: python examples/llamaindex_rerank.py [--model PATH] [--data PATH] [--queries N]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1"
    parser.add_argument("--model", default=os.environ.get("LATEINT_MODEL", str(default_model)))
    parser.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "scifact"))
    parser.add_argument("--queries", type=int, default=3, help="how many test queries to show")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never reach for the Hub

    from lateint_plugins.core.evaluation import load_beir
    from llama_index.core.schema import QueryBundle, TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    from lateint_plugins.llama_index import LateInteractionRerank

    data = load_beir(args.data, split="test")
    ids, texts = data.document_texts()
    bm25 = BM25Retriever.from_defaults(
        nodes=[TextNode(id_=i, text=t) for i, t in zip(ids, texts, strict=True)], similarity_top_k=20
    )
    reranker = LateInteractionRerank(top_n=3, model=args.model)

    for query_id, query in list(zip(*data.query_texts(), strict=True))[: args.queries]:
        relevant = {doc for doc, grade in data.qrels[query_id].items() if grade > 0}
        candidates = bm25.retrieve(query)
        reranked = reranker.postprocess_nodes(candidates, query_bundle=QueryBundle(query))
        print(f"\nQuery {query_id}: {query}")
        for title, nodes in (("BM25", candidates[:3]), ("BM25 + ColBERT rerank", reranked)):
            print(f"  {title}:")
            for n in nodes:
                mark = "*" if n.node.node_id in relevant else " "
                print(f"   {mark} {n.score:7.2f}  [{n.node.node_id}] {n.node.get_content()[:80]}")
    print("\n* = judged relevant in SciFact's qrels")


if __name__ == "__main__":
    main()
