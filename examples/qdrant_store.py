"""Qdrant as the document store: Qdrant holds and filters the documents, MaxSim runs here.

Use this approach when your documents already live in (or should live in) Qdrant: a cluster
scales past one machine, payload filters run inside the database, and the collection is the
system of record (``sync_from_qdrant`` rebuilds a local index from it). Candidates come from a
mean-pooled vector and BM25 terms; their token vectors (fp16 in a collection this small; PLAID
codes once it holds enough tokens to train its codec) are scored on the local device (CUDA when
available). ``CollectionConfig(token_layout="fp16")`` with ``mode="native"`` lets Qdrant rescore
with its own ``MAX_SIM`` instead.

Run: python examples/qdrant_store.py [--model PATH_OR_HUB_ID] [--url http://localhost:6333 | --path DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from qdrant_client import QdrantClient

from lateint_plugins import ColBERTEncoder
from lateint_plugins.qdrant import QdrantLateInteractionStore, sync_from_qdrant

ROOT = Path(__file__).resolve().parents[1]  # the default model is ../shared/... next to the clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1"
    parser.add_argument("--model", default=os.environ.get("LATEINT_MODEL", str(default_model)))
    parser.add_argument("--url", default=os.environ.get("QDRANT_URL"), help="a Qdrant server (default: in memory)")
    parser.add_argument("--path", default=None, help="embedded local mode folder (default: in memory)")
    args = parser.parse_args()

    client = QdrantClient(url=args.url) if args.url else QdrantClient(path=args.path or ":memory:")
    store = QdrantLateInteractionStore(client, "quickstart", ColBERTEncoder.from_pretrained(args.model))
    store.add_texts(
        [
            "Statins lower LDL cholesterol by inhibiting HMG-CoA reductase.",
            "The Eiffel Tower was completed in 1889 for the World's Fair.",
            "Regular aerobic exercise reduces the risk of cardiovascular disease.",
        ],
        metadatas=[{"topic": "medicine"}, {"topic": "history"}, {"topic": "medicine"}],
        ids=["statins", "eiffel", "exercise"],
    )
    for hit in store.search("how do statins work?", k=2):
        print(f"{hit.score:6.2f}  {hit.id:9} {hit.text}")
    for hit in store.search("heart health", k=1, filter={"topic": "medicine"}):
        print(f"{hit.score:6.2f}  {hit.id:9} {hit.metadata}")
    store.add_texts(["The Eiffel Tower is 330 metres tall."], ids=["eiffel"], replace=True)  # same id: replaced
    local = sync_from_qdrant(client, "quickstart", store.encoder)  # the collection is the system of record
    print(f"{len(store)} documents in Qdrant, {len(local)} in the rebuilt local index")


if __name__ == "__main__":
    main()
