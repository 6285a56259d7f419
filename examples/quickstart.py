"""Quickstart: index a handful of passages and search them with ColBERT late interaction.

Use this approach when your corpus fits in memory and you want exact MaxSim scores (the
`ExactIndex` default); the compressed PLAID index and the framework adapters wrap the same store.

Run: python examples/quickstart.py [--model PATH_OR_HUB_ID]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lateint_plugins import ColBERTEncoder, LateInteractionStore

ROOT = Path(__file__).resolve().parents[1]  # the default model is ../shared/... next to the clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1"
    parser.add_argument("--model", default=os.environ.get("LATEINT_MODEL", str(default_model)))
    args = parser.parse_args()

    store = LateInteractionStore(ColBERTEncoder.from_pretrained(args.model))
    store.add_texts(
        [
            "Statins lower LDL cholesterol by inhibiting HMG-CoA reductase.",
            "The Eiffel Tower was completed in 1889 for the World's Fair.",
            "Regular aerobic exercise reduces the risk of cardiovascular disease.",
        ],
        metadatas=[{"topic": "medicine"}, {"topic": "history"}, {"topic": "medicine"}],
    )
    for hit in store.search("how do statins work?", k=2):
        print(f"{hit.score:6.2f}  {hit.text}")
    for hit in store.search("heart health", k=1, filter={"topic": "medicine"}):
        print(f"{hit.score:6.2f}  {hit.text}  {hit.metadata}")


if __name__ == "__main__":
    main()
