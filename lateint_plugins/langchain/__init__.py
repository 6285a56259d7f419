"""LangChain integration: a retriever, a reranking compressor and a vector store over late interaction.

Three classes, all over the same engine, so a score means the same thing in each of them (and in the
LlamaIndex and Qdrant adapters): the sum over query tokens of the best document-token similarity,
computed by :func:`lateint_plugins.core.scoring.maxsim`.

* :class:`LateInteractionRetriever`: a ``BaseRetriever`` over any store (exact, PLAID, Qdrant);
  ``invoke(query, k=3, filter={...})``, ``search_type="mmr"``, async, ``from_texts`` /
  ``from_documents``, ``save`` / ``load``.
* :class:`LateInteractionReranker`: a ``BaseDocumentCompressor`` that reorders any retriever's
  candidates by MaxSim; drop it into ``ContextualCompressionRetriever``.
* :class:`LateInteractionVectorStore`: a LangChain ``VectorStore`` (``add_documents``,
  ``similarity_search``, ``max_marginal_relevance_search``, relevance scores in [0, 1],
  ``as_retriever``, ``save`` / ``load``, ``from_existing_collection`` for Qdrant).

Also importable from here: :func:`relevance_score` and :class:`RelevanceScale` (a MaxSim score as a
relevance in [0, 1]; see ``_scores``).

Install with ``pip install 'lateint-plugins[langchain]'``.

Example:
    >>> from lateint_plugins.langchain import LateInteractionRetriever
    >>> retriever = LateInteractionRetriever.from_texts(
    ...     ["Paris is the capital of France.", "Qubits can be in superposition."],
    ...     "answerdotai/answerai-colbert-small-v1",
    ...     metadatas=[{"topic": "geo"}, {"topic": "physics"}],
    ... )
    >>> retriever.invoke("capital of France", k=1)[0].metadata
    {'topic': 'geo', 'score': ...}
"""

from __future__ import annotations

from ..core.errors import MissingDependencyError

try:
    import langchain_core.documents
    import langchain_core.retrievers
    import langchain_core.vectorstores  # noqa: F401
except ImportError as exc:
    raise MissingDependencyError(
        f"lateint_plugins.langchain needs langchain-core ({exc}). "
        "Install it with: pip install 'lateint-plugins[langchain]'"
    ) from exc

from ._common import Model
from ._scores import RelevanceScale, relevance_score
from .reranker import LateInteractionReranker
from .retriever import LateInteractionRetriever
from .vectorstore import LateInteractionVectorStore

__all__ = ["LateInteractionReranker", "LateInteractionRetriever", "LateInteractionVectorStore"]
# Public too, outside __all__ (pinned by tests/test_imports.py): Model, RelevanceScale, relevance_score.
_PUBLIC_HELPERS = (Model, RelevanceScale, relevance_score)
