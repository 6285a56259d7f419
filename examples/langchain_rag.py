"""An offline LangChain RAG chain over SciFact: ColBERT retrieval, a prompt, a fake LLM.

Use this approach when you build a LangChain chain and want late-interaction retrieval as its
retriever: ``LateInteractionRetriever`` is a ``BaseRetriever``, so it composes with ``|`` like any
other, takes ``k`` / ``filter`` per call and has a real async path. The LLM here is
``FakeListChatModel`` from langchain-core, so the script runs offline; swap in any chat model.

To keep the run short it indexes the documents judged for the first ``--questions`` test queries
plus ``--distractors`` other SciFact documents (the whole corpus works the same, it just takes
longer to encode on a CPU).

Run: python examples/langchain_rag.py [--model PATH_OR_HUB_ID] [--data BEIR_FOLDER]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from lateint_plugins.core import load_beir

from lateint_plugins.langchain import LateInteractionRetriever

ROOT = Path(__file__).resolve().parents[1]

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only the numbered sources. Cite them like [1]."),
        ("human", "Sources:\n{context}\n\nQuestion: {question}"),
    ]
)


def format_sources(documents: list[Document]) -> str:
    return "\n".join(
        f"[{n}] ({d.id}, MaxSim {d.metadata['score']:.1f}) {d.page_content[:300]}" for n, d in enumerate(documents, 1)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=os.environ.get("LATEINT_MODEL", str(ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1")),
    )
    parser.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "scifact"), help="BEIR folder")
    parser.add_argument("--questions", type=int, default=3, help="test queries to ask")
    parser.add_argument("--distractors", type=int, default=100, help="other documents to index")
    args = parser.parse_args()

    data = load_beir(args.data, split="test")
    questions = list(data.queries.items())[: args.questions]
    judged = {doc_id for qid, _ in questions for doc_id in data.qrels[qid]}
    others = [doc_id for doc_id in data.corpus if doc_id not in judged][: args.distractors]
    documents = [
        Document(
            page_content=f"{data.corpus[i].get('title', '')} {data.corpus[i].get('text', '')}".strip(),
            metadata={"title": data.corpus[i].get("title", "")},
            id=i,
        )
        for i in [*sorted(judged), *others]
    ]
    print(f"Indexing {len(documents)} SciFact documents with {Path(args.model).name} ...")
    retriever = LateInteractionRetriever.from_documents(documents, args.model, k=3)

    answers = [f"A canned answer for question {n} (FakeListChatModel), citing [1]." for n in range(len(questions))]
    chain = (
        {"context": retriever | format_sources, "question": RunnablePassthrough()}
        | PROMPT
        | FakeListChatModel(responses=answers)
        | StrOutputParser()
    )

    for qid, question in questions:
        print(f"\nQ{qid}: {question}")
        for doc in retriever.invoke(question):
            relevant = "relevant" if data.qrels[qid].get(doc.id, 0) > 0 else "-"
            print(f"  {doc.metadata['score']:6.2f}  {doc.id:>10}  {relevant:<8}  {doc.metadata['title'][:70]}")
        print(f"  answer: {chain.invoke(question)}")

    # The same chain, async: retrieval runs in worker threads, so the event loop stays free.
    texts = [q for _, q in questions]
    retrieved = asyncio.run(retriever.abatch(texts, k=1))
    print("\nasync top-1:", [docs[0].id for docs in retrieved])


if __name__ == "__main__":
    main()
