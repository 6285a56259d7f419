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
                   ``window`` / ``n_windows`` / ``n_tokens``, ``write_id`` (replacement).
collection meta    ``{"lateint": {"layout_version", "model", "model_name", "dim", ...}}``: the
                   model check on open.
=================  ==========================================================================

Point ids are ``uuid5`` of ``(doc_id, window)``, so re-adding an id overwrites its points (an
upsert); stale windows of a shortened document are deleted after the new ones land. The
``page_content`` / ``metadata`` keys are langchain-qdrant's, so its ``QdrantVectorStore`` can read
the texts of a collection written here.

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

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lateint_plugins.core.encoder import ColBERTEncoder, resolve_device
from lateint_plugins.core.errors import (
    DimensionMismatchError,
    InvalidInputError,
    LateInteractionError,
    UnknownIdError,
    require,
)
from lateint_plugins.core.index import ExactIndex, Metadata
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore, SearchResult, check_documents

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

__all__ = [
    "LAYOUT_VERSION",
    "MAX_MULTIVECTOR_FLOATS",
    "CollectionConfig",
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "PartialWriteError",
    "QdrantLateInteractionStore",
    "QdrantUnavailableError",
    "SyncReport",
    "bm25_vector",
    "content_hash",
    "sync",
    "sync_from_qdrant",
    "sync_to_qdrant",
    "to_qdrant_filter",
]

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 1
"""Version of the collection layout written in the collection metadata; newer layouts are refused."""
MAX_MULTIVECTOR_FLOATS = 1_048_576
"""Qdrant's cap on the floats of one multivector (tokens x dim) in one point."""

TOKENS = "tokens"
POOLED = "pooled"
LEXICAL = "lexical"
BM25_K1, BM25_B, BM25_AVG_LEN = 1.2, 0.75, 256.0
_MARKER = "lateint"
_POINT_NAMESPACE = uuid.UUID("6f1c1b8e-7a0c-5d4e-9b7e-2f6c3a1d9e42")
_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_SCROLL_PAGE = 256
_EXTRA = "qdrant"

Mode = Literal["local", "native"]


# ---------------------------------------------------------------------- errors
class CollectionNotFoundError(LateInteractionError, LookupError):
    """The named Qdrant collection does not exist (and the store was asked not to create it)."""


class CollectionMismatchError(InvalidInputError):
    """The collection was written with another model, layout or pooling than this store uses."""


class QdrantUnavailableError(LateInteractionError, ConnectionError):
    """The Qdrant server could not be reached or answered with an error."""


class PartialWriteError(LateInteractionError, RuntimeError):
    """Some batches of a write did not land after retries.

    Attributes:
        written_ids: ids whose points are fully written.
        failed_ids: ids that did not land (re-run the call with them; writes are idempotent).
    """

    def __init__(self, message: str, written_ids: Sequence[str], failed_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.written_ids = list(written_ids)
        self.failed_ids = list(failed_ids)


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class CollectionConfig:
    """How a new collection is created (ignored when the collection exists).

    Args:
        pooled_vectors: 1 for one mean-pooled dense vector per point; ``K > 1`` for a ``MAX_SIM``
            multivector of at most ``K`` k-means means (more memory).
        lexical: also index each document's WordPiece tokens (the encoder's tokenizer) as a BM25
            sparse vector (Qdrant's IDF modifier) and prefetch from it too: mean pooling alone
            misses documents that match on rare terms (see the benchmark).
        shard_number: Qdrant shards (spread over the cluster's nodes).
        replication_factor: copies of each shard.
        write_consistency_factor: replicas that must acknowledge a write.
        on_disk_payload: keep payloads (texts) on disk.
        tokens_on_disk: keep the token multivectors on disk (memory-mapped); they are read only for
            the candidates.
        pooled_on_disk: keep the pooled vectors on disk too.
        tokens_quantization: a ``qdrant_client.models`` quantisation config for the token
            multivector (e.g. ``ScalarQuantization``); speeds native rescoring; local MaxSim always
            reads the float16 originals.
        pooled_quantization: quantisation for the pooled vector.
        hnsw_m: HNSW degree of the pooled vector's graph.
        hnsw_ef_construct: HNSW build beam of the pooled vector's graph.
    """

    pooled_vectors: int = 1
    lexical: bool = True
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool = True
    tokens_on_disk: bool = True
    pooled_on_disk: bool = False
    tokens_quantization: Any = None
    pooled_quantization: Any = None
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.pooled_vectors, int) or self.pooled_vectors < 1:
            raise InvalidInputError(f"pooled_vectors must be a positive int, got {self.pooled_vectors!r}.")
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be a positive int or None, got {value!r}.")
        if self.hnsw_m < 1 or self.hnsw_ef_construct < 1:
            raise InvalidInputError(
                f"hnsw_m and hnsw_ef_construct must be positive, got {self.hnsw_m} and {self.hnsw_ef_construct}."
            )


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_to_qdrant` did: ids added, updated (content changed), deleted, left unchanged."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0


# ---------------------------------------------------------------------- helpers (pure)
def content_hash(text: str, metadata: Mapping[str, Any] | None) -> str:
    """SHA-256 of a document's text and metadata (canonical JSON): what sync compares."""
    blob = json.dumps([text, dict(metadata or {})], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def point_id(doc_id: str, window: int = 0) -> str:
    """The Qdrant point id (a UUID string) of window ``window`` of document ``doc_id``."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{window}:{doc_id}"))


def pool(tokens: torch.Tensor, n_vectors: int) -> torch.Tensor:
    """The pooled representation of one ``(n_tokens, dim)`` matrix: ``(1, dim)`` mean or ``(<=n_vectors, dim)``.

    With ``n_vectors == 1`` the re-normalised mean; otherwise k-means means of the tokens (the first,
    ``[CLS]``, kept as is), at most ``n_vectors`` of them.
    """
    x = tokens.float()
    if n_vectors == 1 or x.shape[0] <= n_vectors:
        return F.normalize(x.mean(0, keepdim=True), dim=-1) if n_vectors == 1 else x
    from lateint_plugins.core.codec import pool_tokens

    factor = math.ceil((x.shape[0] - 1) / (n_vectors - 1))
    return pool_tokens(x, factor)


def bm25_vector(token_ids: Sequence[int]) -> models.SparseVector:
    """A document's BM25 term weights ``tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len))`` as a sparse vector.

    The IDF factor is applied by Qdrant (``Modifier.IDF``) over the whole collection.
    """
    from collections import Counter

    from qdrant_client import models

    counts = Counter(token_ids)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(token_ids) / BM25_AVG_LEN)
    indices = sorted(counts)
    return models.SparseVector(
        indices=indices, values=[counts[t] * (BM25_K1 + 1) / (counts[t] + norm) for t in indices]
    )


def to_qdrant_filter(filter: Mapping[str, Any] | models.Filter | None) -> models.Filter | None:
    """Our exact-match metadata filter ``{key: value}`` as a Qdrant ``Filter`` on ``metadata.<key>``.

    str / int / bool values become ``MatchValue``, floats a closed ``Range``, ``None`` an
    ``IsNull`` condition. A ``qdrant_client.models.Filter`` passes through unchanged (full Qdrant
    semantics, e.g. ranges and ``should`` clauses).
    """
    from qdrant_client import models

    if filter is None or isinstance(filter, models.Filter):
        return filter
    if not isinstance(filter, Mapping):
        raise InvalidInputError(
            f"filter must be a dict of exact metadata matches or a qdrant_client.models.Filter, "
            f"got {type(filter).__name__}."
        )
    if not filter:
        return None
    must: list[Any] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidInputError(
                f"filter key {key!r} must be letters, digits, '_' or '-'; pass a qdrant_client.models.Filter "
                "on 'metadata.<path>' for nested keys."
            )
        path = f"metadata.{key}"
        if value is None:
            must.append(models.IsNullCondition(is_null=models.PayloadField(key=path)))
        elif isinstance(value, (bool, int, str)):
            must.append(models.FieldCondition(key=path, match=models.MatchValue(value=value)))
        elif isinstance(value, float) and math.isfinite(value):
            must.append(models.FieldCondition(key=path, range=models.Range(gte=value, lte=value)))
        else:
            raise InvalidInputError(
                f"filter[{key!r}] = {value!r}: only str, int, bool, finite float or None can be matched exactly; "
                "pass a qdrant_client.models.Filter for anything else."
            )
    return models.Filter(must=must)


def _matches(metadata: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """The exact-match rule of :class:`~lateint_plugins.core.index.Index` filters (checked client-side too)."""
    if not filter or not isinstance(filter, Mapping):
        return True
    return all(key in metadata and metadata[key] == value for key, value in filter.items())


def _windows(tokens: torch.Tensor, max_tokens: int) -> list[torch.Tensor]:
    return list(tokens.split(max_tokens)) if tokens.shape[0] > max_tokens else [tokens]


def _as_list(x: torch.Tensor) -> list[list[float]]:
    return x.detach().to("cpu", torch.float32).numpy().tolist()


def _unavailable(exc: Exception, what: str) -> QdrantUnavailableError:
    return QdrantUnavailableError(
        f"Qdrant could not {what}: {exc}. Check that the server is running and the url/api_key are right."
    )


def _is_transport_error(exc: Exception) -> bool:
    """Errors that mean 'the server did not answer' (not 'the request was wrong')."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import grpc

        return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        return False


# ---------------------------------------------------------------------- the store
class QdrantLateInteractionStore:
    """A :class:`~lateint_plugins.core.store.DocumentStore` whose documents live in a Qdrant collection.

    Args:
        client: a ``QdrantClient`` (``":memory:"``, ``path=...`` or ``url=...``).
        collection_name: the collection; created with ``config`` when missing (unless ``create=False``).
        encoder: the ColBERT encoder; its model name and dimension are recorded in (and checked
            against) the collection.
        config: layout options for a new collection (:class:`CollectionConfig`).
        create: create the collection when it does not exist; otherwise raise
            :class:`CollectionNotFoundError`.
        mode: ``"local"`` (exact MaxSim of the candidates here) or ``"native"`` (Qdrant rescores).
        candidate_depth: points fetched per query by each prefetch (pooled, BM25): up to twice as many
            are scored. 128 reaches 0.95+ of the exact top 10 on SciFact (benchmarks/bench_qdrant.py).
        device: where local MaxSim runs (default CUDA, then MPS, then CPU; resolved once).
        write_batch_size: points per upsert request.
        max_tokens_per_point: split longer token matrices into windows (default: Qdrant's cap,
            ``1_048_576 // dim``).
        retries: attempts per failed upsert/delete before :class:`PartialWriteError`.

    Example:
        >>> from qdrant_client import QdrantClient
        >>> store = QdrantLateInteractionStore(QdrantClient(":memory:"), "docs", encoder)
        >>> store.add_texts(["Paris is the capital of France."], ids=["paris"])
        ['paris']
        >>> store.search("capital of France", k=1)[0].id
        'paris'
    """

    def __init__(
        self,
        client: QdrantClient,
        collection_name: str,
        encoder: ColBERTEncoder,
        *,
        config: CollectionConfig | None = None,
        create: bool = True,
        mode: Mode = "local",
        candidate_depth: int = 128,
        device: str | torch.device | None = None,
        write_batch_size: int = 64,
        max_tokens_per_point: int | None = None,
        retries: int = 3,
    ) -> None:
        require("qdrant_client", _EXTRA)
        if not isinstance(collection_name, str) or not collection_name:
            raise InvalidInputError(f"collection_name must be a non-empty str, got {collection_name!r}.")
        self.client = client
        self.collection_name = collection_name
        self.encoder = encoder
        self.mode: Mode = _check_mode(mode)
        self.candidate_depth = _positive(candidate_depth, "candidate_depth")
        self.device = resolve_device(device)
        self.write_batch_size = _positive(write_batch_size, "write_batch_size")
        self.retries = _positive(retries, "retries")
        cap = MAX_MULTIVECTOR_FLOATS // encoder.dim
        self.max_tokens_per_point = cap if max_tokens_per_point is None else _positive(max_tokens_per_point, "")
        if self.max_tokens_per_point > cap:
            raise InvalidInputError(
                f"max_tokens_per_point={self.max_tokens_per_point} exceeds Qdrant's cap of {cap} tokens "
                f"({MAX_MULTIVECTOR_FLOATS} floats / dim {encoder.dim}); pass at most {cap}."
            )
        self.marker = _marker(encoder, config or CollectionConfig())
        self.config = self._open(config or CollectionConfig(), create)

    # ------------------------------------------------------------------ collection
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; a transport failure becomes :class:`QdrantUnavailableError`."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if _is_transport_error(exc):
                raise _unavailable(exc, what) from exc
            raise

    def _open(self, config: CollectionConfig, create: bool) -> CollectionConfig:
        name = self.collection_name
        if not self._call(f"reach collection {name!r}", self.client.collection_exists, name):
            if not create:
                raise CollectionNotFoundError(
                    f"Qdrant has no collection {name!r}; create it with create=True or check collection_name."
                )
            self._create(config)
            return config
        info = self._call(f"read collection {name!r}", self.client.get_collection, name)
        recorded = dict((info.config.metadata or {}).get(_MARKER) or {})
        if not recorded:
            raise CollectionMismatchError(
                f"Collection {name!r} was not created by lateint-plugins (no {_MARKER!r} entry in its metadata); "
                "use another collection_name."
            )
        if int(recorded.get("layout_version", 0)) > LAYOUT_VERSION:
            raise CollectionMismatchError(
                f"Collection {name!r} uses layout version {recorded['layout_version']}; this lateint-plugins reads "
                f"up to {LAYOUT_VERSION}. Upgrade lateint-plugins."
            )
        if recorded.get("dim") != self.encoder.dim:
            raise DimensionMismatchError(
                f"Collection {name!r} holds {recorded.get('dim')}-d vectors of {recorded.get('model_name')!r} but "
                f"the encoder produces {self.encoder.dim}-d vectors; use the model the collection was built with."
            )
        if recorded.get("model_name") != self.marker["model_name"]:
            raise CollectionMismatchError(
                f"Collection {name!r} was built with model {recorded.get('model_name')!r} but the encoder is "
                f"{self.marker['model_name']!r}; scores of different models do not mix. Load "
                f"{recorded.get('model')!r} or use another collection."
            )
        existing = CollectionConfig(
            pooled_vectors=int(recorded.get("pooled_vectors", 1)), lexical=bool(recorded.get("lexical"))
        )
        if config != CollectionConfig() and (existing.pooled_vectors, existing.lexical) != (
            config.pooled_vectors,
            config.lexical,
        ):
            logger.warning("Collection %r exists with %s; the config passed is ignored", name, existing)
        self.marker = recorded
        return existing

    def _create(self, config: CollectionConfig) -> None:
        from qdrant_client import models

        dim = self.encoder.dim
        pooled_multi = (
            models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
            if config.pooled_vectors > 1
            else None
        )
        vectors = {
            POOLED: models.VectorParams(
                size=dim,
                distance=models.Distance.DOT if pooled_multi else models.Distance.COSINE,
                multivector_config=pooled_multi,
                hnsw_config=models.HnswConfigDiff(m=config.hnsw_m, ef_construct=config.hnsw_ef_construct),
                on_disk=config.pooled_on_disk,
                quantization_config=config.pooled_quantization,
            ),
            TOKENS: models.VectorParams(
                size=dim,
                # Token vectors are unit-norm and stored at fp16 precision, so DOT is the cosine and
                # Qdrant's MAX_SIM equals core.scoring.maxsim.
                distance=models.Distance.DOT,
                datatype=models.Datatype.FLOAT16,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                hnsw_config=models.HnswConfigDiff(m=0),  # never searched by graph: only rescored
                on_disk=config.tokens_on_disk,
                quantization_config=config.tokens_quantization,
            ),
        }
        self._call(
            f"create collection {self.collection_name!r}",
            self.client.create_collection,
            self.collection_name,
            vectors_config=vectors,
            shard_number=config.shard_number,
            replication_factor=config.replication_factor,
            write_consistency_factor=config.write_consistency_factor,
            on_disk_payload=config.on_disk_payload,
            sparse_vectors_config=(
                {LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)} if config.lexical else None
            ),
            metadata={_MARKER: self.marker},
        )
        for field_name, schema in (
            ("doc_id", models.PayloadSchemaType.KEYWORD),
            ("window", models.PayloadSchemaType.INTEGER),
            ("write_id", models.PayloadSchemaType.KEYWORD),
        ):
            with warnings.catch_warnings():  # local mode warns that payload indexes do nothing there
                warnings.simplefilter("ignore", UserWarning)
                self._call("index payload", self.client.create_payload_index, self.collection_name, field_name, schema)
        logger.info("Created Qdrant collection %r (%s)", self.collection_name, self.marker)

    # ------------------------------------------------------------------ DocumentStore
    def __len__(self) -> int:
        from qdrant_client import models

        first = models.Filter(must=[models.FieldCondition(key="window", match=models.MatchValue(value=0))])
        result = self._call("count points", self.client.count, self.collection_name, count_filter=first, exact=True)
        return int(result.count)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self._existing([doc_id]))

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        replace: bool = True,
    ) -> list[str]:
        """Encode ``texts`` and upsert them; returns their ids (UUID4 hex strings when ``ids`` is None).

        Re-adding an id replaces the document (Qdrant writes are upserts; ``replace`` is accepted for
        :class:`DocumentStore` compatibility and ignored). Texts are encoded and written
        ``batch_size`` at a time, so a long run keeps memory flat and a failure loses at most the
        batches not yet written (:class:`PartialWriteError` lists them).
        """
        del replace  # an upsert always replaces
        texts, ids, metas = self._check_new(texts, metadatas, ids)
        if not texts:
            return []
        batch_size = _positive(batch_size, "batch_size")
        progress = _progress(len(texts), show_progress_bar, "Writing to Qdrant")
        written: list[str] = []
        try:
            for start in range(0, len(texts), batch_size):
                stop = start + batch_size
                vectors = self.encoder.encode_documents(texts[start:stop], batch_size=batch_size)
                self._write(ids[start:stop], vectors, texts[start:stop], metas[start:stop], written, ids)
                progress.update(stop - start)
        finally:
            progress.close()
        return ids

    def add_documents(self, documents: Sequence[Any], ids: Sequence[str] | None = None, **kwargs: Any) -> list[str]:
        """Add objects with ``page_content`` (or ``text``) and ``metadata`` attributes, e.g. LangChain Documents.

        The document's own ``id`` is used when ``ids`` is None and every document has one.
        """
        texts = [getattr(d, "page_content", None) or getattr(d, "text", None) for d in documents]
        if any(not isinstance(t, str) for t in texts):
            raise InvalidInputError("documents must have a str page_content (or text) attribute.")
        metas = [dict(getattr(d, "metadata", None) or {}) for d in documents]
        if ids is None and documents and all(getattr(d, "id", None) for d in documents):
            ids = [str(d.id) for d in documents]
        return self.add_texts(texts, metas, ids, **kwargs)  # type: ignore[arg-type]

    def add_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[torch.Tensor | np.ndarray],
        texts: Sequence[str] | None = None,
        metadatas: Sequence[Metadata | None] | None = None,
        *,
        show_progress_bar: bool = False,
    ) -> list[str]:
        """Upsert already-encoded documents: one ``(n_tokens, dim)`` matrix per id (texts default to "").

        Encoded by this store's model (the caller's promise; the dimension is checked). What sync and
        the benchmark use to move vectors without re-encoding.
        """
        texts = [""] * len(ids) if texts is None else list(texts)
        texts, ids, metas = self._check_new(texts, metadatas, ids)
        if len(embeddings) != len(ids):
            raise InvalidInputError(f"Got {len(ids)} ids but {len(embeddings)} embeddings; pass one per id.")
        matrices = [self._check_matrix(e, f"embeddings[{i}]") for i, e in enumerate(embeddings)]
        progress = _progress(len(ids), show_progress_bar, "Writing to Qdrant")
        written: list[str] = []
        try:
            for start in range(0, len(ids), self.write_batch_size):
                stop = start + self.write_batch_size
                self._write(ids[start:stop], matrices[start:stop], texts[start:stop], metas[start:stop], written, ids)
                progress.update(len(ids[start:stop]))
        finally:
            progress.close()
        return ids

    def search(
        self, query: str, k: int = 10, filter: Mapping[str, Any] | models.Filter | None = None
    ) -> list[SearchResult]:
        """Top-``k`` documents for ``query``; ``filter`` is an exact-match metadata dict (or a Qdrant ``Filter``)."""
        return self.search_batch([query], k=k, filter=filter)[0]

    def search_batch(
        self, queries: Sequence[str], k: int = 10, filter: Mapping[str, Any] | models.Filter | None = None
    ) -> list[list[SearchResult]]:
        """:meth:`search` for many queries: one encoder pass, one Qdrant round trip for the candidates."""
        if isinstance(queries, str):
            raise InvalidInputError("queries must be a list of str; use search() for a single query.")
        queries = list(queries)
        if not queries:
            return []
        return self.search_embeddings(self.encoder.encode_queries(queries), k=k, filter=filter, query_texts=queries)

    def search_embeddings(
        self,
        query_embeddings: Sequence[torch.Tensor | np.ndarray],
        k: int = 10,
        filter: Mapping[str, Any] | models.Filter | None = None,
        *,
        mode: Mode | None = None,
        candidate_depth: int | None = None,
        query_texts: Sequence[str] | None = None,
    ) -> list[list[SearchResult]]:
        """Search with encoded queries, one ``(q_len, dim)`` matrix each; ``mode``/``candidate_depth`` override.

        ``query_texts`` (the queries' texts) enable the lexical prefetch; without them only the
        pooled vector finds candidates.

        Returns one best-first list of :class:`SearchResult` per query, at most ``k`` each.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}.")
        mode = _check_mode(mode or self.mode)
        depth = _positive(candidate_depth or self.candidate_depth, "candidate_depth")
        queries = [self._check_matrix(q, f"query_embeddings[{i}]").float() for i, q in enumerate(query_embeddings)]
        if not queries:
            return []
        qfilter = to_qdrant_filter(filter)
        exact = filter if isinstance(filter, Mapping) else None
        depth = max(depth, k)
        if query_texts is not None and (isinstance(query_texts, str) or len(query_texts) != len(queries)):
            raise InvalidInputError(f"query_texts must be a list with one text per query ({len(queries)}).")
        lexical = self._lexical_ids(query_texts) if query_texts is not None else [[] for _ in queries]
        if mode == "native":
            return self._search_native(queries, lexical, k, depth, qfilter, exact)
        return self._search_local(queries, lexical, k, depth, qfilter, exact)

    def get(self, ids: Sequence[str]) -> list[SearchResult]:
        """Stored documents by id (score 0.0), in the order asked; unknown ids are skipped."""
        ids = _check_ids(ids)
        payloads = self._payloads(ids)
        return [
            SearchResult(i, 0.0, payloads[i].get("page_content", ""), dict(payloads[i].get("metadata") or {}))
            for i in ids
            if i in payloads
        ]

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """The stored ``(n_tokens, dim)`` float32 token matrices of ``ids`` (windows re-assembled); unknown skipped."""
        first = self._retrieve([point_id(i) for i in _check_ids(ids)], payload=["doc_id", "n_windows"], vectors=True)
        return self._assemble(first)

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents (all their windows); unknown ids raise :class:`UnknownIdError`, nothing is removed."""
        ids = _check_ids(ids)
        if not ids:
            return
        existing = self._existing(ids)
        unknown = [i for i in ids if i not in existing]
        if unknown:
            raise UnknownIdError(
                f"ids not in collection {self.collection_name!r}: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
                "nothing was removed."
            )
        self._delete_docs(ids)

    def ids(self) -> list[str]:
        """Every document id in the collection (scrolls the collection)."""
        return [p["doc_id"] for p in self._scroll(["doc_id"])]

    # ------------------------------------------------------------------ writing
    def _check_matrix(self, x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
        """``x`` as a float ``(n >= 1, dim)`` tensor of this collection's dimension."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] == 0 or not x.is_floating_point():
            raise InvalidInputError(
                f"{name} must be a non-empty 2-D float (n_tokens, dim) tensor or array, got "
                f"{getattr(x, 'shape', type(x).__name__)}."
            )
        if x.shape[1] != self.encoder.dim:
            raise DimensionMismatchError(
                f"{name} has {x.shape[1]}-d vectors but collection {self.collection_name!r} holds "
                f"{self.encoder.dim}-d vectors of {self.marker.get('model_name')!r}; encode with that model."
            )
        return x

    def _check_new(
        self, texts: Sequence[str], metadatas: Sequence[Metadata | None] | None, ids: Sequence[str] | None
    ) -> tuple[list[str], list[str], list[Metadata]]:
        return check_documents(texts, metadatas, ids)

    def _points(
        self, doc_id: str, tokens: torch.Tensor, text: str, meta: Metadata, write_id: str, lexical: list[int]
    ) -> list[models.PointStruct]:
        """The points of one document: its windows, window 0 last (sync reads window 0 as 'complete')."""
        from qdrant_client import models

        # Stored at fp16 precision (as ExactIndex does and the server's FLOAT16 datatype would), so
        # every store holds the same numbers and scores agree to float32 rounding.
        tokens = tokens.detach().to("cpu").half().float()
        windows = _windows(tokens, self.max_tokens_per_point)
        digest = content_hash(text, meta)
        points = []
        for w, window in enumerate(windows):
            pooled = pool(window, self.config.pooled_vectors)
            payload: dict[str, Any] = {
                "doc_id": doc_id,
                "metadata": meta,
                "window": w,
                "n_windows": len(windows),
                "n_tokens": int(tokens.shape[0]),
                "content_hash": digest,
                "write_id": write_id,
            }
            vector: dict[str, Any] = {
                TOKENS: _as_list(window),
                POOLED: _as_list(pooled[0]) if self.config.pooled_vectors == 1 else _as_list(pooled),
            }
            if w == 0:
                payload["page_content"] = text
                if lexical:
                    vector[LEXICAL] = bm25_vector(lexical)
            points.append(models.PointStruct(id=point_id(doc_id, w), vector=vector, payload=payload))
        return points[1:] + points[:1]

    def _write(
        self,
        ids: list[str],
        vectors: Sequence[torch.Tensor],
        texts: list[str],
        metas: list[Metadata],
        written: list[str],
        all_ids: list[str],
    ) -> None:
        """Upsert one batch of documents (retrying), then drop windows left over from older versions."""
        from qdrant_client import models

        write_id = uuid.uuid4().hex
        points: list[models.PointStruct] = []
        lexical = self._lexical_ids(texts)
        for doc_id, tokens, text, meta, terms in zip(ids, vectors, texts, metas, lexical, strict=True):
            if tokens.shape[-1] != self.encoder.dim:
                raise DimensionMismatchError(
                    f"document {doc_id!r} has {tokens.shape[-1]}-d vectors but collection {self.collection_name!r} "
                    f"holds {self.encoder.dim}-d ones; encode with {self.marker.get('model_name')!r}."
                )
            points.extend(self._points(doc_id, tokens, text, meta, write_id, terms))
        # A document's windows go in one request, so batches split only between documents.
        batch: list[models.PointStruct] = []
        for point in points:
            batch.append(point)
            last_window_of_doc = point.payload is not None and point.payload["window"] == 0
            if len(batch) >= self.write_batch_size and last_window_of_doc:
                self._upsert(batch, written, all_ids)
                batch = []
        if batch:
            self._upsert(batch, written, all_ids)
        stale = models.Filter(
            must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=ids))],
            must_not=[models.FieldCondition(key="write_id", match=models.MatchValue(value=write_id))],
        )
        self._retrying(
            lambda: self.client.delete(self.collection_name, points_selector=models.FilterSelector(filter=stale)),
            "delete stale windows",
            written,
            all_ids,
            ids,
        )

    def _upsert(self, batch: list[models.PointStruct], written: list[str], all_ids: list[str]) -> None:
        doc_ids = list(dict.fromkeys(p.payload["doc_id"] for p in batch if p.payload))
        self._retrying(lambda: self.client.upsert(self.collection_name, points=batch, wait=True), "upsert", written,
                       all_ids, doc_ids)  # fmt: skip
        written.extend(doc_ids)

    def _retrying(self, fn: Any, what: str, written: list[str], all_ids: list[str], batch_ids: list[str]) -> None:
        """Run a write, retrying with back-off; after the last failure raise :class:`PartialWriteError`."""
        for attempt in range(1, self.retries + 1):
            try:
                fn()
                return
            except Exception as exc:
                if not _is_transport_error(exc) and not _is_server_error(exc):
                    raise
                if attempt == self.retries:
                    done = set(written)
                    failed = [i for i in all_ids if i not in done]
                    raise PartialWriteError(
                        f"Qdrant {what} failed {attempt} times ({exc}); {len(done)} documents landed, "
                        f"{len(failed)} did not (first {failed[:5]}). Writes are idempotent: re-run with the "
                        "failed ids (exception.failed_ids).",
                        written_ids=[i for i in all_ids if i in done],
                        failed_ids=failed,
                    ) from exc
                logger.warning("Qdrant %s failed (%s); retry %d/%d", what, exc, attempt, self.retries - 1)
                time.sleep(min(2.0**attempt * 0.25, 5.0))

    def _delete_docs(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        for start in range(0, len(ids), 1024):
            chunk = list(ids[start : start + 1024])
            selector = models.FilterSelector(
                filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=chunk))])
            )
            self._call("delete points", self.client.delete, self.collection_name, points_selector=selector, wait=True)

    # ------------------------------------------------------------------ reading
    def _retrieve(self, pids: Sequence[str], *, payload: Any, vectors: bool) -> list[Any]:
        if not pids:
            return []
        return list(
            self._call(
                "retrieve points",
                self.client.retrieve,
                self.collection_name,
                ids=list(pids),
                with_payload=payload,
                with_vectors=[TOKENS] if vectors else False,
            )
        )

    def _existing(self, ids: Sequence[str]) -> set[str]:
        return {
            p.payload["doc_id"] for p in self._retrieve([point_id(i) for i in ids], payload=["doc_id"], vectors=False)
        }

    def _payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        points = self._retrieve([point_id(i) for i in ids], payload=["doc_id", "page_content", "metadata"],
                                vectors=False)  # fmt: skip
        return {p.payload["doc_id"]: p.payload for p in points}

    def _scroll(self, payload: Any, *, vectors: bool = False, first_windows_only: bool = True) -> Iterator[Any]:
        """Every point's payload (and token vectors), page by page; window 0 only unless told otherwise."""
        from qdrant_client import models

        only_first = (
            models.Filter(must=[models.FieldCondition(key="window", match=models.MatchValue(value=0))])
            if first_windows_only
            else None
        )
        offset = None
        while True:
            points, offset = self._call(
                "scroll points",
                self.client.scroll,
                self.collection_name,
                scroll_filter=only_first,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=payload,
                with_vectors=[TOKENS] if vectors else False,
            )
            for p in points:
                yield p if vectors else p.payload
            if offset is None:
                return

    def _assemble(self, points: Iterable[Any]) -> dict[str, torch.Tensor]:
        """Doc id -> full ``(n_tokens, dim)`` matrix from candidate points, fetching missing windows."""
        parts: dict[str, dict[int, Any]] = {}
        n_windows: dict[str, int] = {}
        for p in points:
            doc_id = p.payload["doc_id"]
            parts.setdefault(doc_id, {})[int(p.payload.get("window", 0))] = p.vector[TOKENS]
            n_windows[doc_id] = int(p.payload.get("n_windows", 1))
        missing = [point_id(d, w) for d, n in n_windows.items() for w in range(n) if w not in parts[d]]
        for p in self._retrieve(missing, payload=["doc_id", "window"], vectors=True):
            parts[p.payload["doc_id"]][int(p.payload["window"])] = p.vector[TOKENS]
        out = {}
        for doc_id, windows in parts.items():
            if len(windows) != n_windows[doc_id]:
                logger.warning("Document %r has %d of %d windows; skipped", doc_id, len(windows), n_windows[doc_id])
                continue
            out[doc_id] = torch.from_numpy(
                np.concatenate([np.asarray(windows[w], dtype=np.float32) for w in range(n_windows[doc_id])])
            )
        return out

    def _search_local(
        self,
        queries: list[torch.Tensor],
        lexical: list[list[int]],
        k: int,
        depth: int,
        qfilter: models.Filter | None,
        exact: Mapping[str, Any] | None,
    ) -> list[list[SearchResult]]:
        from qdrant_client import models

        fields = ["doc_id", "window", "n_windows"] + (["metadata"] if exact else [])
        requests = []
        for q, terms in zip(queries, lexical, strict=True):
            sources = self._prefetches(q, terms, depth, qfilter)
            # Several sources: their union (RRF only orders it; every candidate is rescored here).
            requests.append(
                models.QueryRequest(
                    prefetch=sources,
                    query=models.FusionQuery(fusion=models.Fusion.RRF),
                    filter=qfilter,
                    limit=depth * len(sources),
                    with_payload=fields,
                    with_vector=[TOKENS],
                )
                if len(sources) > 1
                else models.QueryRequest(
                    query=sources[0].query,
                    using=POOLED,
                    filter=qfilter,
                    limit=depth,
                    with_payload=fields,
                    with_vector=[TOKENS],
                )
            )
        responses = self._call("query points", self.client.query_batch_points, self.collection_name, requests=requests)
        ranked: list[list[tuple[str, float]]] = []
        for q, response in zip(queries, responses, strict=True):
            points = [p for p in response.points if exact is None or _matches(p.payload.get("metadata") or {}, exact)]
            matrices = self._assemble(points)
            if not matrices:
                ranked.append([])
                continue
            doc_ids = list(matrices)
            scores = maxsim([q], [matrices[d] for d in doc_ids], device=self.device)[0].cpu()
            top = torch.topk(scores, min(k, len(doc_ids)))
            ranked.append([(doc_ids[i], s) for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)])
        return self._results(ranked)

    def _search_native(
        self,
        queries: list[torch.Tensor],
        lexical: list[list[int]],
        k: int,
        depth: int,
        qfilter: models.Filter | None,
        exact: Mapping[str, Any] | None,
    ) -> list[list[SearchResult]]:
        from qdrant_client import models

        requests = [
            models.QueryRequest(
                prefetch=self._prefetches(q, terms, depth, qfilter),
                query=_as_list(q),
                using=TOKENS,
                filter=qfilter,
                limit=2 * depth,
                with_payload=["doc_id", "metadata"],
            )
            for q, terms in zip(queries, lexical, strict=True)
        ]
        responses = self._call("query points", self.client.query_batch_points, self.collection_name, requests=requests)
        ranked = []
        for response in responses:
            best: dict[str, float] = {}
            for p in response.points:  # best first; a split document keeps its best window
                if exact is None or _matches(p.payload.get("metadata") or {}, exact):
                    best.setdefault(p.payload["doc_id"], float(p.score))
            ranked.append(list(best.items())[:k])
        return self._results(ranked)

    def _lexical_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each text (no special tokens, no truncation); empty lists when lexical is off."""
        if not self.config.lexical or not any(texts):
            return [[] for _ in texts]
        return self.encoder.tokenize(texts)

    def _prefetches(
        self, q: torch.Tensor, terms: list[int], depth: int, qfilter: models.Filter | None
    ) -> list[models.Prefetch]:
        """Candidate sources: the pooled vector, plus the BM25 sparse vector when the query has terms."""
        from qdrant_client import models

        sources = [models.Prefetch(query=self._pooled_query(q), using=POOLED, filter=qfilter, limit=depth)]
        if self.config.lexical and terms:
            unique = sorted(set(terms))
            sparse = models.SparseVector(indices=unique, values=[1.0] * len(unique))  # IDF applied by Qdrant
            sources.append(models.Prefetch(query=sparse, using=LEXICAL, filter=qfilter, limit=depth))
        return sources

    def _pooled_query(self, q: torch.Tensor) -> list[float] | list[list[float]]:
        """The query against the pooled field: the re-normalised mean, or every token (multivector)."""
        if self.config.pooled_vectors == 1:
            return _as_list(F.normalize(q.float().mean(0), dim=-1)[None])[0]
        return _as_list(q)

    def _results(self, ranked: list[list[tuple[str, float]]]) -> list[list[SearchResult]]:
        """Attach texts and metadata (one retrieve for all queries)."""
        payloads = self._payloads(list(dict.fromkeys(d for row in ranked for d, _ in row)))
        return [
            [
                SearchResult(d, s, payloads[d].get("page_content", ""), dict(payloads[d].get("metadata") or {}))
                for d, s in row
                if d in payloads
            ]
            for row in ranked
        ]

    def __repr__(self) -> str:
        return (
            f"QdrantLateInteractionStore(collection={self.collection_name!r}, model={self.marker.get('model_name')!r}, "
            f"mode={self.mode!r}, candidate_depth={self.candidate_depth})"
        )


# ---------------------------------------------------------------------- sync
def sync_to_qdrant(
    source: LateInteractionStore,
    client: QdrantClient,
    collection_name: str,
    *,
    config: CollectionConfig | None = None,
    delete_missing: bool = True,
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> SyncReport:
    """Push a local store into a collection, incrementally: only new or changed documents are written.

    A document is unchanged when the ``content_hash`` (text + metadata) in the collection equals the
    local one; ids in the collection but not in ``source`` are deleted (``delete_missing``). Batches
    land one by one with their hashes, so re-running after an interruption writes only what is left:
    the sync is resumable. Token vectors come from an exact index without re-encoding; other
    indexes (compressed) re-encode the texts with the store's encoder.
    """
    store = QdrantLateInteractionStore(client, collection_name, source.encoder, config=config,
                                       write_batch_size=batch_size)  # fmt: skip
    remote = {p["doc_id"]: p.get("content_hash") for p in store._scroll(["doc_id", "content_hash"])}
    local_ids = list(source.index.ids)
    docs = {r.id: r for r in source.get(local_ids)}
    todo = [i for i in local_ids if remote.get(i) != content_hash(docs[i].text, docs[i].metadata)]
    deleted = [i for i in remote if i not in docs] if delete_missing else []
    embeddings = source.index.embeddings() if isinstance(source.index, ExactIndex) else None
    position = {doc_id: p for p, doc_id in enumerate(local_ids)}
    progress = _progress(len(todo), show_progress_bar, f"Sync to {collection_name}")
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            texts = [docs[i].text for i in chunk]
            if embeddings is not None:
                vectors = [embeddings[position[i]] for i in chunk]
            else:
                vectors = source.encoder.encode_documents(texts, batch_size=batch_size)
            store.add_embeddings(chunk, vectors, texts, [docs[i].metadata for i in chunk])
            progress.update(len(chunk))
    finally:
        progress.close()
    if deleted:
        store._delete_docs(deleted)
    report = SyncReport(
        added=[i for i in todo if i not in remote],
        updated=[i for i in todo if i in remote],
        deleted=deleted,
        unchanged=len(local_ids) - len(todo),
    )
    logger.info("Synced %r: %d added, %d updated, %d deleted, %d unchanged", collection_name, len(report.added),
                len(report.updated), len(report.deleted), report.unchanged)  # fmt: skip
    return report


sync = sync_to_qdrant
"""Alias of :func:`sync_to_qdrant`, the name the issue uses."""


def sync_from_qdrant(
    client: QdrantClient,
    collection_name: str,
    encoder: ColBERTEncoder | None = None,
    *,
    device: str | torch.device | None = None,
    show_progress_bar: bool = False,
) -> LateInteractionStore:
    """Build a local :class:`LateInteractionStore` (exact index) from a collection: vectors, texts, metadata.

    Args:
        encoder: the collection's model; by default the model recorded in the collection is loaded.
        device: device of a loaded encoder and of the new index.
    """
    require("qdrant_client", _EXTRA)
    if encoder is None:
        if not client.collection_exists(collection_name):
            raise CollectionNotFoundError(f"Qdrant has no collection {collection_name!r}; check the name.")
        recorded = dict((client.get_collection(collection_name).config.metadata or {}).get(_MARKER) or {})
        if not recorded.get("model"):
            raise CollectionMismatchError(f"Collection {collection_name!r} records no model; pass encoder= explicitly.")
        encoder = ColBERTEncoder.from_pretrained(recorded["model"], device=device, **recorded.get("encoder_config", {}))
    remote = QdrantLateInteractionStore(client, collection_name, encoder, create=False)
    store = LateInteractionStore(encoder, ExactIndex(encoder.dim, device=device))
    total = len(remote)
    progress = _progress(total, show_progress_bar, f"Sync from {collection_name}")
    try:
        page: list[Any] = []
        for point in remote._scroll(["doc_id", "window", "n_windows", "page_content", "metadata"], vectors=True):
            page.append(point)
            if len(page) >= _SCROLL_PAGE:
                _add_page(remote, store, page)
                progress.update(len(page))
                page = []
        if page:
            _add_page(remote, store, page)
            progress.update(len(page))
    finally:
        progress.close()
    return store


def _add_page(remote: QdrantLateInteractionStore, store: LateInteractionStore, points: list[Any]) -> None:
    matrices = remote._assemble(points)
    payloads = {p.payload["doc_id"]: p.payload for p in points}
    ids = [d for d in payloads if d in matrices]
    store.add_embeddings(
        [str(payloads[i].get("page_content", "")) for i in ids],
        [matrices[i] for i in ids],
        [dict(payloads[i].get("metadata") or {}) for i in ids],
        ids,
    )


# ---------------------------------------------------------------------- small helpers
def _marker(encoder: ColBERTEncoder, config: CollectionConfig) -> dict[str, Any]:
    from dataclasses import asdict

    path = Path(str(encoder.name_or_path)).expanduser()
    encoder_config = asdict(encoder.config)
    encoder_config["skiplist_words"] = list(encoder_config.get("skiplist_words") or [])
    return {
        "layout_version": LAYOUT_VERSION,
        "model": str(path.resolve()) if path.is_dir() else str(encoder.name_or_path),
        "model_name": path.name if path.is_dir() else str(encoder.name_or_path),
        "dim": encoder.dim,
        "pooled_vectors": config.pooled_vectors,
        "lexical": {"tokenizer": "encoder", "k1": BM25_K1, "b": BM25_B, "avg_len": BM25_AVG_LEN}
        if config.lexical
        else None,
        "token_dtype": "float16",
        "encoder_config": encoder_config,
    }


def _check_mode(mode: str) -> Mode:
    if mode not in ("local", "native"):
        raise InvalidInputError(f"mode must be 'local' or 'native', got {mode!r}.")
    return mode  # type: ignore[return-value]


def _positive(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{name or 'max_tokens_per_point'} must be a positive int, got {value!r}.")
    return value


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InvalidInputError(f"ids must be a list of str, got {type(ids).__name__}; wrap a single id in a list.")
    out = list(ids)
    bad = [i for i in out if not isinstance(i, str) or not i]
    if bad:
        raise InvalidInputError(f"ids must be non-empty str, got {bad[:5]}.")
    return out


def _is_server_error(exc: Exception) -> bool:
    from qdrant_client.http.exceptions import UnexpectedResponse

    return isinstance(exc, UnexpectedResponse) and exc.status_code is not None and exc.status_code >= 500


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool, desc: str) -> Any:
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="doc")
