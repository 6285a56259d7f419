"""A LlamaIndex `VectorStoreIndex` on ColBERT late interaction (`LateInteractionVectorStore`).

Use this approach when your application is written against LlamaIndex's index API
(`VectorStoreIndex`, `StorageContext`, `index.insert` / `delete_ref_doc`, `as_query_engine`) and you
want ColBERT's token-level matching as the first stage. No embedding model is involved: the store
encodes documents and queries with the ColBERT checkpoint itself, so nothing reaches for OpenAI.
For reranking another retriever's candidates instead, see `llamaindex_rerank.py`.

Runs offline: indexes four short documents (one long enough to be split into chunks), answers a
question through a query engine (MockLLM: swap in any LlamaIndex LLM), deletes one document with
every chunk, saves the store and answers again from the reloaded copy.

Run: python examples/llamaindex_vector_store.py [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1"
    parser.add_argument("--model", default=os.environ.get("LATEINT_MODEL", str(default_model)))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never reach for the Hub

    from lateint_plugins.core.store import LateInteractionStore
    from llama_index.core import Document
    from llama_index.core.llms import MockLLM
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    from lateint_plugins.llama_index import LateInteractionVectorStore

    trials = " ".join(
        f"Trial {i} found that statins lowered LDL cholesterol by {20 + i} percent in adults." for i in range(30)
    )
    documents = [
        Document(text=trials, id_="statin-trials", metadata={"topic": "medicine", "year": 2019}),
        Document(text="Statins inhibit HMG-CoA reductase in the liver.", id_="statins", metadata={"topic": "medicine"}),
        Document(text="The Eiffel Tower was completed in 1889.", id_="eiffel", metadata={"topic": "history"}),
        Document(text="Insulin regulates blood glucose.", id_="insulin", metadata={"topic": "medicine"}),
    ]
    vector_store = LateInteractionVectorStore.from_pretrained(args.model, device="cpu")
    index = vector_store.index_documents(documents)  # split into chunks that fit the model, then encoded
    print(f"{len(documents)} documents -> {len(vector_store.client)} nodes")

    medicine = MetadataFilters(filters=[MetadataFilter(key="topic", value="medicine")])
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=3, filters=medicine)
    question = "How do statins lower cholesterol?"
    for hit in engine.query(question).source_nodes:
        print(f"  {hit.score:6.2f}  {hit.node.ref_doc_id:14s} {hit.node.metadata}  {hit.node.get_content()[:50]!r}")

    index.delete_ref_doc("statin-trials")  # every chunk of that document
    print(f"after delete_ref_doc: {len(vector_store.client)} nodes")

    with tempfile.TemporaryDirectory() as folder:
        vector_store.client.save(Path(folder) / "store")  # the token vectors, texts and whole nodes
        reloaded = LateInteractionVectorStore(LateInteractionStore.load(Path(folder) / "store", device="cpu"))
        top = reloaded.as_index().as_retriever(similarity_top_k=1).retrieve(question)[0]
        print(f"reloaded top-1: {top.node.ref_doc_id} ({top.score:.2f})")


if __name__ == "__main__":
    main()
