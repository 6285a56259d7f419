"""LlamaIndex adapter: a ColBERT vector store, a retriever that persists, and a reranker.

* :class:`LateInteractionVectorStore` is a ``BasePydanticVectorStore`` over any
  :class:`~lateint_plugins.core.store.DocumentStore`, so ``VectorStoreIndex``, ``StorageContext``,
  ``index.insert`` / ``delete_ref_doc``, ``as_retriever`` and ``as_query_engine`` work on ColBERT.
* :class:`LateInteractionRetriever` is a ``BaseRetriever`` over a store that persists to a folder.
* :class:`LateInteractionRerank` is a ``BaseNodePostprocessor`` reordering candidates by MaxSim.
* :func:`metadata_filters_to_dict` maps ``MetadataFilters`` onto the project's filter dict.

All score with :func:`lateint_plugins.core.scoring.maxsim` on the same ``MetadataMode`` content
(default ``EMBED``), so their scores equal the core's and each other's.

Install with ``pip install 'lateint-plugins[llama-index]'``.
"""

from __future__ import annotations

from lateint_plugins.core.errors import MissingDependencyError

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "lateint_plugins.llama_index needs llama-index-core. "
        "Install it with: pip install 'lateint-plugins[llama-index]'"
    ) from exc

from lateint_plugins.llama_index._nodes import metadata_filters_to_dict
from lateint_plugins.llama_index.rerank import LateInteractionRerank
from lateint_plugins.llama_index.retriever import LateInteractionRetriever
from lateint_plugins.llama_index.vector_store import LateInteractionVectorStore, NoEmbedding

__all__ = [
    "LateInteractionRerank",
    "LateInteractionRetriever",
    "LateInteractionVectorStore",
    "NoEmbedding",
    "metadata_filters_to_dict",
]
