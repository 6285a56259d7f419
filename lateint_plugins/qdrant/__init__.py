"""Qdrant as the document store: Qdrant holds and filters the candidates, exact MaxSim runs locally.

:class:`QdrantLateInteractionStore` satisfies :class:`~lateint_plugins.core.store.DocumentStore`, so
the LangChain and LlamaIndex adapters wrap it like a :class:`~lateint_plugins.core.store.LateInteractionStore`.

**Collection layout** (version :data:`LAYOUT_VERSION`), one Qdrant point per document (or per window
of a very long document):

=================  ==========================================================================
``pooled``         named vector for candidate generation, HNSW on. ``pooled_vectors=1``: one
                   dense vector, the re-normalised mean of the token vectors (cosine).
                   ``pooled_vectors=K > 1``: a ``MAX_SIM`` multivector of at most ``K`` unit
                   k-means means of the tokens (:func:`~lateint_plugins.core.codec.pool_tokens`).
``lexical``        sparse vector (``Modifier.IDF``) of the text's WordPiece terms (the encoder's
                   tokenizer) with BM25 term weights; window 0 only; ``lexical=False`` drops it.
``tokens``         named ``MAX_SIM`` multivector (dot product) of the document's token vectors,
                   HNSW off (``m=0``), float16 on the server, on disk by default, optionally
                   quantised: what local MaxSim reads and what Qdrant rescores natively with.
payload            ``doc_id`` (our string id), ``page_content`` (the text, on window 0),
                   ``metadata`` (user metadata; the filter target), ``content_hash`` (sync),
                   ``window`` / ``n_windows`` / ``n_tokens``, ``write_id`` (the commit,
                   below), ``layout`` (window 0: how its windows' point ids are formed).
collection meta    ``{"lateint": {"layout_version", "model", "model_name", "dim", "fingerprint",
                   ...}}``: the model check on open (``ModelMismatchError``).
=================  ==========================================================================

**Compressed layout** (``token_layout="plaid"``, the default; layout version 3, 4 for a residual
quantiser, 5 with ``codec_training_tokens``): no ``tokens`` vector; each point's payload carries the
PLAID codes of its tokens (``centroid_ids``, ``centroid_set``, ``residuals``, and ``residuals_2`` for
the later stages of a residual quantiser) and the codec lives in codec points of the collection
(:mod:`.codes`). A query reads the candidates' distinct centroids, ranks them by centroid
interaction, then reads and decompresses the codes of the best ``n_full_scores`` only (and the later
stages of the best ``n_refine``): under 1 MB per query on SciFact instead of ~21 MB over gRPC
(:mod:`.coded`). Until the collection holds ``codec_training_tokens`` tokens its points carry
``tokens_fp16`` (the fp16 bytes) instead, scored exactly; the write that reaches it trains the codec
and compresses them. ``sync_to_qdrant`` pushes a PLAID index's codes as they are.
``token_layout="fp16"`` keeps the ``tokens`` multivector below (and ``mode="native"``).

**Writes are crash-safe per document.** Window 0 (point id ``uuid5(doc_id, 0)``) is the document's
commit point: it carries the text, metadata and lexical vector and names the ``write_id`` and
``n_windows`` it commits. Windows 1.. of a write go under fresh point ids (``uuid5`` of
``(doc_id, window, write_id)``) *before* window 0 is upserted (one point, so atomic), and the windows
of the replaced write are deleted after it. Every reader (search in both modes, ``get``,
``get_embeddings``, sync) uses only windows whose ``write_id`` equals window 0's: a write killed at
any step leaves the old document (or none) fully visible and the new one invisible, never a mix.
Windows left behind by such a kill are deleted by the next write to that id or by
:meth:`QdrantLateInteractionStore.repair`. ``replace=False`` checks for existing ids and inserts
under a per-collection lock (and commits with ``UpdateMode.INSERT_ONLY``, so another process racing
on a server cannot be overwritten silently either). Deleting removes window 0 first. Qdrant has no
transactions across points, so two *processes* writing the same id at once (or ``repair`` while
another process writes) can leave that document unsearchable until it is written again: run one
writer per collection. The ``page_content`` / ``metadata`` keys are langchain-qdrant's, so its
``QdrantVectorStore`` can read the texts of a collection written here.

**Search.** ``mode="local"`` (default): Qdrant returns the union of the ``candidate_depth`` best
points by the pooled vector and the ``candidate_depth`` best by BM25 (payload filter applied inside
Qdrant) together with their token vectors; their exact MaxSim against the query
(:func:`~lateint_plugins.core.scoring.maxsim`, CUDA when available) ranks them. With
``candidate_depth`` covering the collection the result equals an exact index. Mean pooling alone
is a weak candidate generator for ColBERT (on SciFact it needs ~1000 candidates for 0.95 of the
exact top 10); the BM25 prefetch recovers the documents that match on rare terms, so 2 x 128
candidates suffice. ``mode="native"``: the same prefetches, then Qdrant's own ``MAX_SIM``
rescoring on ``tokens``.

**Long documents.** One multivector holds at most 1,048,576 floats; longer token matrices are
split into consecutive windows (points sharing ``doc_id``), re-assembled before MaxSim, so their
score is exact in local mode (native mode scores each window and keeps the best).
"""

from lateint_plugins.qdrant.aio import AsyncQdrantLateInteractionStore
from lateint_plugins.qdrant.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    PartialWriteError,
    QdrantUnavailableError,
)
from lateint_plugins.qdrant.filters import to_qdrant_filter
from lateint_plugins.qdrant.layout import (
    LAYOUT_VERSION,
    MAX_MULTIVECTOR_FLOATS,
    TOKENS,  # noqa: F401 - not public; tests and tools import it from here
    CollectionConfig,
    PayloadKeys,
    StoredDocument,
    bm25_vector,
    content_hash,
    point_id,  # noqa: F401
    pool,  # noqa: F401
)
from lateint_plugins.qdrant.store import QdrantLateInteractionStore
from lateint_plugins.qdrant.sync import SyncReport, sync, sync_from_qdrant, sync_to_qdrant

__all__ = [
    "LAYOUT_VERSION",
    "MAX_MULTIVECTOR_FLOATS",
    "AsyncQdrantLateInteractionStore",
    "CollectionConfig",
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "PartialWriteError",
    "PayloadKeys",
    "QdrantLateInteractionStore",
    "QdrantUnavailableError",
    "StoredDocument",
    "SyncReport",
    "bm25_vector",
    "content_hash",
    "sync",
    "sync_from_qdrant",
    "sync_to_qdrant",
    "to_qdrant_filter",
]
