"""The Qdrant document store: Qdrant holds and filters the candidates, exact MaxSim runs locally."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from lateint_plugins.core._checks import (
    check_device,
    check_encoder,
    check_ids,
    check_k,
    check_matrices,
    check_matrix,
    check_sequence,
    check_text,
    check_texts,
    is_utf8,
)
from lateint_plugins.core.encoder import ColBERTEncoder, resolve_device
from lateint_plugins.core.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    require,
)
from lateint_plugins.core.fingerprint import check_fingerprint
from lateint_plugins.core.index import Metadata
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import SearchResult, check_documents, check_search_options
from lateint_plugins.qdrant.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    PartialWriteError,
    _is_server_error,
    _is_transport_error,
    _unavailable,
)
from lateint_plugins.qdrant.filters import _metadata_key, to_qdrant_filter
from lateint_plugins.qdrant.layout import (
    _EXTRA,
    _FLOAT16_MAX,
    _HEAD,
    _MARKER,
    _SCROLL_PAGE,
    LAYOUT_VERSION,
    LEXICAL,
    MAX_MULTIVECTOR_FLOATS,
    POOLED,
    TOKENS,
    CollectionConfig,
    Mode,
    StoredDocument,
    _as_list,
    _check_collection_name,
    _check_mode,
    _in_commit,
    _marker,
    _n_windows,
    _window_of,
    _window_point_id,
    _windows,
    bm25_vector,
    content_hash,
    point_id,
    pool,
    recorded_config,
    recorded_marker,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

logger = logging.getLogger(__name__)

# One write lock per (client, collection), shared by every store object on them in this process.
_LOCKS: weakref.WeakKeyDictionary[Any, dict[str, threading.RLock]] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


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
        allow_model_mismatch: open a collection whose recorded model fingerprint differs from the
            encoder's with a warning instead of :class:`~lateint_plugins.core.errors.ModelMismatchError`
            (scores then mix two vector spaces; the width must still match).

    Writes to one collection are serialised by a lock shared by every store object on the same
    client in this process; reads need no lock (see "crash-safe" in the module docstring).

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
        allow_model_mismatch: bool = False,
    ) -> None:
        require("qdrant_client", _EXTRA)
        _check_client(client)
        self.client = client
        self.collection_name = _check_collection_name(collection_name)
        self.encoder = check_encoder(encoder)
        if config is not None and not isinstance(config, CollectionConfig):
            raise InvalidInputError(f"config must be a CollectionConfig or None, got {type(config).__name__}.")
        self.mode: Mode = _check_mode(mode)
        self.candidate_depth = check_k(candidate_depth, "candidate_depth")
        self.device = resolve_device(None if device is None else check_device(device))
        self.write_batch_size = check_k(write_batch_size, "write_batch_size")
        self.retries = check_k(retries, "retries")
        cap = MAX_MULTIVECTOR_FLOATS // encoder.dim
        self.max_tokens_per_point = (
            cap if max_tokens_per_point is None else check_k(max_tokens_per_point, "max_tokens_per_point")
        )
        if self.max_tokens_per_point > cap:
            raise InvalidInputError(
                f"max_tokens_per_point={self.max_tokens_per_point} exceeds Qdrant's cap of {cap} tokens "
                f"({MAX_MULTIVECTOR_FLOATS} floats / dim {encoder.dim}); pass at most {cap}."
            )
        self.allow_model_mismatch = bool(allow_model_mismatch)
        self._lock = _collection_lock(client, collection_name)
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
        recorded = recorded_marker(info)
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
        where = f"Qdrant collection {name!r}"
        if recorded.get("fingerprint") is not None:
            # The fingerprint decides (weights and document settings); the name is informational, so
            # a moved or renamed model folder with the same weights opens.
            check_fingerprint(
                recorded["fingerprint"], self.encoder.fingerprint, where=where, allow_mismatch=self.allow_model_mismatch
            )
        else:
            check_fingerprint(None, self.encoder.fingerprint, where=where)  # warns: written before fingerprints
            if recorded.get("model_name") != self.marker["model_name"]:
                message = (
                    f"Collection {name!r} was built with model {recorded.get('model_name')!r} but the encoder is "
                    f"{self.marker['model_name']!r}; scores of different models do not mix. Load "
                    f"{recorded.get('model')!r}, use another collection, or pass allow_model_mismatch=True."
                )
                if not self.allow_model_mismatch:
                    raise CollectionMismatchError(message)
                logger.warning(message)
        existing = recorded_config(recorded)
        recorded_fields = ("pooled_vectors", "lexical", "payload_indexes", "payload_keys")
        if config != CollectionConfig() and any(getattr(existing, f) != getattr(config, f) for f in recorded_fields):
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
        user = [(_metadata_key(key.split("."), config.payload_keys.metadata), models.PayloadSchemaType(schema))
                for key, schema in config.payload_indexes.items()]  # fmt: skip
        for field_name, schema in (
            ("doc_id", models.PayloadSchemaType.KEYWORD),
            ("window", models.PayloadSchemaType.INTEGER),
            ("write_id", models.PayloadSchemaType.KEYWORD),
            *user,
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
        return isinstance(doc_id, str) and bool(doc_id) and is_utf8(doc_id) and bool(self._existing([doc_id]))

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        replace: bool = False,
    ) -> list[str]:
        """Encode ``texts`` and write them; returns their ids (UUID4 hex strings when ``ids`` is None).

        With ``replace=True`` re-adding an id replaces the document (an upsert); with
        ``replace=False`` (the default in every store of the contract) ids already in the collection
        raise :class:`~lateint_plugins.core.errors.DuplicateIdError` before anything is written (the
        check and the write are one step under the collection's write lock). Each document is replaced
        atomically: a failure or a kill at any point leaves it wholly old or wholly new. Texts are
        encoded and written ``batch_size`` at a time, so a long run keeps memory flat and a failure
        loses at most the batches not yet written (:class:`PartialWriteError` lists them).
        """
        texts, ids, metas = self._check_new(texts, metadatas, ids)
        if not texts:
            return []
        batch_size = check_k(batch_size, "batch_size")
        # replace=False: the duplicate check and every write are one step; otherwise other writers
        # wait only while a batch is written, not while it is encoded.
        with self._lock if not replace else contextlib.nullcontext():
            if not replace:
                self._refuse_existing(ids)
            progress = _progress(len(texts), show_progress_bar, "Writing to Qdrant")
            written: list[str] = []
            try:
                for start in range(0, len(texts), batch_size):
                    stop = start + batch_size
                    vectors = self.encoder.encode_documents(texts[start:stop], batch_size=batch_size)
                    with self._lock:
                        self._write(ids[start:stop], vectors, texts[start:stop], metas[start:stop], written, ids,
                                    insert_only=not replace)  # fmt: skip
                    progress.update(len(ids[start:stop]))
            finally:
                progress.close()
        return ids

    def add_documents(self, documents: Sequence[Any], ids: Sequence[str] | None = None, **kwargs: Any) -> list[str]:
        """Add objects with ``page_content`` (or ``text``) and ``metadata`` attributes, e.g. LangChain Documents.

        The document's own ``id`` is used when ``ids`` is None and every document has one.
        """
        documents = check_sequence(documents, "documents", "documents", "document")
        texts = [_text_of(d) for d in documents]
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"documents[{i}] must have a str page_content (or text) attribute.")
        metas = [getattr(d, "metadata", None) for d in documents]  # checked by add_texts
        if ids is None and documents and all(getattr(d, "id", None) for d in documents):
            ids = [str(d.id) for d in documents]
        return self.add_texts(texts, metas, ids, **kwargs)

    def add_embeddings(
        self,
        texts: Sequence[str],
        embeddings: Sequence[torch.Tensor | np.ndarray],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        replace: bool = False,
        show_progress_bar: bool = False,
    ) -> list[str]:
        """Write already-encoded documents: one ``(n_tokens, dim)`` float matrix per text.

        Encoded by this store's model (the caller's promise; the width is checked, and NaN, infinite
        or non-float values are refused). Otherwise as :meth:`add_texts` (ids default to new UUID4
        hex strings, ``replace`` the same). What sync and the benchmark use to move vectors without
        re-encoding.
        """
        texts, ids, metas = self._check_new(texts, metadatas, ids)
        embeddings = check_matrices(embeddings, "embeddings")
        if len(embeddings) != len(texts):
            raise InvalidInputError(f"Got {len(texts)} texts but {len(embeddings)} embeddings; pass one per text.")
        matrices = [self._check_matrix(e, f"embeddings[{i}]") for i, e in enumerate(embeddings)]
        if not ids:
            return []
        with self._lock:
            if not replace:
                self._refuse_existing(ids)
            progress = _progress(len(ids), show_progress_bar, "Writing to Qdrant")
            written: list[str] = []
            try:
                for start in range(0, len(ids), self.write_batch_size):
                    stop = start + self.write_batch_size
                    self._write(ids[start:stop], matrices[start:stop], texts[start:stop], metas[start:stop], written,
                                ids, insert_only=not replace)  # fmt: skip
                    progress.update(len(ids[start:stop]))
            finally:
                progress.close()
        return ids

    @property
    def search_options(self) -> Mapping[str, Any]:
        """The keyword options :meth:`search` / :meth:`search_batch` accept, name -> this store's default.

        ``mode`` (``"local"`` or ``"native"``) and ``candidate_depth`` (points per prefetch).
        """
        return MappingProxyType({"mode": self.mode, "candidate_depth": self.candidate_depth})

    def search(
        self, query: str, k: int = 10, filter: Mapping[str, Any] | models.Filter | None = None, **options: Any
    ) -> list[SearchResult]:
        """Top-``k`` documents for ``query``.

        Args:
            query: the query text.
            k: hits to return (fewer only when fewer documents match the filter).
            filter: a metadata filter (:mod:`lateint_plugins.core.filters`), applied inside Qdrant
                (never re-checked here), or a ``qdrant_client.models.Filter`` passed through as is.
            **options: :attr:`search_options` (``mode``, ``candidate_depth``) for this call.
        """
        check_text(query, "query")
        return self.search_batch([query], k=k, filter=filter, **options)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Mapping[str, Any] | models.Filter | None = None,
        **options: Any,
    ) -> list[list[SearchResult]]:
        """:meth:`search` for many queries: one encoder pass, one Qdrant round trip for the candidates."""
        if isinstance(queries, str):
            raise InvalidInputError("queries must be a list of str; use search() for a single query.")
        queries = check_texts(queries, "queries", allow_empty=False)
        k = check_k(k)
        check_search_options(options, self.search_options)
        self._filter(filter)  # a malformed filter fails even for an empty batch
        if not queries:
            return []
        return self.search_embeddings(
            self.encoder.encode_queries(queries), k=k, filter=filter, query_texts=queries, **options
        )

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
        """Search with encoded queries, one ``(q_len, dim)`` float matrix each; ``mode``/``candidate_depth`` override.

        ``query_texts`` (the queries' texts) enable the lexical prefetch; without them only the
        pooled vector finds candidates. NaN, infinite or non-float query values are refused.

        Returns one best-first list of :class:`SearchResult` per query, at most ``k`` each.
        """
        k = check_k(k)
        mode = _check_mode(self.mode if mode is None else mode)
        depth = check_k(self.candidate_depth if candidate_depth is None else candidate_depth, "candidate_depth")
        raw = check_matrices(query_embeddings, "query_embeddings")
        queries = [self._check_matrix(q, f"query_embeddings[{i}]").float() for i, q in enumerate(raw)]
        if query_texts is not None:
            query_texts = check_texts(query_texts, "query_texts")
            if len(query_texts) != len(queries):
                raise InvalidInputError(f"query_texts must be a list with one text per query ({len(queries)}).")
        if not queries:
            return []
        qfilter = self._filter(filter)
        depth = max(depth, k)
        lexical = self._lexical_ids(query_texts) if query_texts is not None else [[] for _ in queries]
        if mode == "native":
            return self._search_native(queries, lexical, k, depth, qfilter)
        return self._search_local(queries, lexical, k, depth, qfilter)

    def get(self, ids: Sequence[str]) -> list[SearchResult]:
        """Stored documents by id (score 0.0), in the order asked; unknown ids are skipped."""
        ids = check_ids(ids, "ids", unique=False)
        payloads = self._payloads(ids)
        return [self._result(i, 0.0, payloads[i]) for i in ids if i in payloads]

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """The stored ``(n_tokens, dim)`` float32 token matrices of ``ids`` (windows re-assembled); unknown skipped."""
        heads = self._retrieve([point_id(i) for i in check_ids(ids, "ids", unique=False)], payload=_HEAD, vectors=True)
        return self._assemble(heads)

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents (all their windows); ids not in the collection are ignored."""
        ids = list(dict.fromkeys(check_ids(ids, "ids", unique=False)))
        if not ids:
            return
        with self._lock:
            self._delete_docs(ids)

    def iter_documents(self, *, with_vectors: bool = False, with_text: bool = True) -> Iterator[StoredDocument]:
        """Every committed document of the collection, read page by page (Qdrant's point order).

        Args:
            with_vectors: also read each document's token matrix (``StoredDocument.embedding``, its
                windows re-assembled; documents whose committed windows are incomplete are skipped).
            with_text: read the texts too (``False`` leaves ``StoredDocument.text`` empty: what sync
                needs to compare content hashes).
        """
        keys = self.config.payload_keys
        fields = [*_HEAD, "content_hash", keys.metadata, *([keys.text] if with_text else [])]
        page: list[Any] = []
        for point in self._scroll_points(fields, vectors=with_vectors):
            page.append(point)
            if len(page) >= _SCROLL_PAGE:
                yield from self._documents(page, with_vectors)
                page = []
        yield from self._documents(page, with_vectors)

    def _documents(self, points: list[Any], with_vectors: bool) -> Iterator[StoredDocument]:
        matrices = self._assemble(points) if with_vectors else {}
        for p in points:
            payload = p.payload or {}
            doc_id = payload.get("doc_id")
            if not isinstance(doc_id, str) or (with_vectors and doc_id not in matrices):
                continue
            doc = self._result(doc_id, 0.0, payload)
            yield StoredDocument(doc_id, doc.text, doc.metadata, payload.get("content_hash"), matrices.get(doc_id))

    def ids(self) -> list[str]:
        """Every document id in the collection (scrolls it, in Qdrant's point order: not insertion order)."""
        return [p["doc_id"] for p in self._scroll(["doc_id"])]

    def repair(self) -> int:
        """Delete the points no committed document uses; returns how many were deleted.

        Such points are windows of a write or a delete that was killed (or failed) part-way: readers
        never use them, and the next write to the same id deletes them too; ``repair`` finds them
        all in one scan of the collection's payloads. Committed documents missing a window (damage
        from outside this library) are logged, not removed. Takes the collection's write lock.
        """
        from qdrant_client import models

        with self._lock:
            heads: dict[str, dict[str, Any]] = {}
            windows: list[tuple[str, str, dict[str, Any]]] = []
            for p in self._scroll_points(_HEAD, first_windows_only=False):
                payload = p.payload or {}
                doc_id = payload.get("doc_id")
                if not isinstance(doc_id, str):
                    continue  # not a point of ours: leave it alone
                if _window_of(payload) == 0:
                    heads[doc_id] = payload
                else:
                    windows.append((str(p.id), doc_id, payload))
            stale = [pid for pid, doc_id, payload in windows if not _in_commit(pid, doc_id, payload, heads.get(doc_id))]
            for start in range(0, len(stale), 1024):
                selector = models.PointIdsList(points=list[models.ExtendedPointId](stale[start : start + 1024]))
                self._call("delete points", self.client.delete, self.collection_name, points_selector=selector,
                           wait=True)  # fmt: skip
            kept: dict[str, int] = {}
            dropped = set(stale)
            for pid, doc_id, _ in windows:
                if pid not in dropped:
                    kept[doc_id] = kept.get(doc_id, 0) + 1
            damaged = [d for d, head in heads.items() if kept.get(d, 0) != _n_windows(head) - 1]
            if damaged:
                logger.warning("Collection %r: documents missing windows (not searchable; re-add them): %s",
                               self.collection_name, damaged[:20])  # fmt: skip
            if stale:
                logger.info("Collection %r: deleted %d uncommitted or stale points", self.collection_name, len(stale))
            return len(stale)

    # ------------------------------------------------------------------ writing
    def _check_matrix(self, x: Any, name: str) -> torch.Tensor:
        """``x`` as a finite float ``(n >= 1, dim)`` tensor of this collection's dimension, in float16's range."""
        x = check_matrix(x, name, max_abs=_FLOAT16_MAX)
        if x.shape[1] != self.encoder.dim:
            raise DimensionMismatchError(
                f"{name} has {x.shape[1]}-d vectors but collection {self.collection_name!r} holds "
                f"{self.encoder.dim}-d vectors of {self.marker.get('model_name')!r}; encode with that model."
            )
        return x

    def _check_new(
        self, texts: Sequence[str], metadatas: Sequence[Metadata | None] | None, ids: Sequence[str] | None
    ) -> tuple[list[str], list[str], list[Metadata]]:
        """Validate documents before any work: no bare str for a list, UTF-8-encodable texts, ids and metadata."""
        return check_documents(texts, metadatas, ids)

    def _refuse_existing(self, ids: Sequence[str]) -> None:
        existing = self._existing(ids)
        if existing:
            shown = [i for i in ids if i in existing]
            raise DuplicateIdError(
                f"ids already in collection {self.collection_name!r}: {shown[:5]}{' ...' if len(shown) > 5 else ''}; "
                "pass replace=True to overwrite them, or delete them first. Nothing was written."
            )

    def _points(
        self, doc_id: str, tokens: torch.Tensor, text: str, meta: Metadata, write_id: str, lexical: list[int]
    ) -> list[models.PointStruct]:
        """The points of one document: window 0 (the commit point) first, then its other windows."""
        from qdrant_client import models

        # Stored at fp16 precision (as ExactIndex does and the server's FLOAT16 datatype would), so
        # every store holds the same numbers and scores agree to float32 rounding.
        tokens = tokens.detach().to("cpu").half().float()
        windows = _windows(tokens, self.max_tokens_per_point)
        digest = content_hash(text, meta)
        head = {"doc_id": doc_id, "write_id": write_id, "n_windows": len(windows), "layout": LAYOUT_VERSION}
        points = []
        for w, window in enumerate(windows):
            pooled = pool(window, self.config.pooled_vectors)
            payload: dict[str, Any] = {
                "doc_id": doc_id,
                self.config.payload_keys.metadata: meta,
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
                payload[self.config.payload_keys.text] = text
                payload["layout"] = LAYOUT_VERSION
                if lexical:
                    vector[LEXICAL] = bm25_vector(lexical)
            points.append(models.PointStruct(id=_window_point_id(doc_id, w, head), vector=vector, payload=payload))
        return points

    def _write(
        self,
        ids: list[str],
        vectors: Sequence[torch.Tensor],
        texts: list[str],
        metas: list[Metadata],
        written: list[str],
        all_ids: list[str],
        *,
        insert_only: bool = False,
    ) -> None:
        """Write one batch: other windows first, then each window 0 (the commit), then delete stale windows.

        A kill before a document's window 0 lands leaves its old version (or nothing) visible; after
        it, the new one. ``insert_only`` commits with ``UpdateMode.INSERT_ONLY``, so a document that
        appeared meanwhile (another process) is not overwritten: :class:`DuplicateIdError`.
        """
        from qdrant_client import models

        self._upgrade_layout()
        write_id = uuid.uuid4().hex
        heads: list[models.PointStruct] = []
        tails: list[models.PointStruct] = []
        lexical = self._lexical_ids(texts)
        for doc_id, tokens, text, meta, terms in zip(ids, vectors, texts, metas, lexical, strict=True):
            if tokens.shape[-1] != self.encoder.dim:
                raise DimensionMismatchError(
                    f"document {doc_id!r} has {tokens.shape[-1]}-d vectors but collection {self.collection_name!r} "
                    f"holds {self.encoder.dim}-d ones; encode with {self.marker.get('model_name')!r}."
                )
            first, *rest = self._points(doc_id, tokens, text, meta, write_id, terms)
            heads.append(first)
            tails.extend(rest)
        step = self.write_batch_size
        for start in range(0, len(tails), step):
            chunk = tails[start : start + step]
            self._retrying(lambda chunk=chunk: self.client.upsert(self.collection_name, points=chunk, wait=True),
                           "upsert", written, all_ids, ids)  # fmt: skip
        options: dict[str, Any] = {"update_mode": models.UpdateMode.INSERT_ONLY} if insert_only else {}
        for start in range(0, len(heads), step):
            chunk = heads[start : start + step]
            self._retrying(lambda chunk=chunk: self.client.upsert(self.collection_name, points=chunk, wait=True,
                           **options), "upsert", written, all_ids, ids)  # fmt: skip
            written.extend(p.payload["doc_id"] for p in chunk if p.payload)
        lost: list[str] = []
        if insert_only:  # our commit lost to a writer in another process: ours must not win silently
            landed = self._retrieve([point_id(i) for i in ids], payload=["doc_id", "write_id"], vectors=False)
            ours = {p.payload["doc_id"] for p in landed if p.payload.get("write_id") == write_id}
            lost = [i for i in ids if i not in ours]
            for doc_id in lost:
                written.remove(doc_id)
            orphans: list[models.ExtendedPointId] = [
                p.id for p in tails if p.payload and p.payload["doc_id"] in set(lost)
            ]
            if orphans:
                self._call("delete points", self.client.delete, self.collection_name,
                           points_selector=models.PointIdsList(points=orphans), wait=True)  # fmt: skip
        done = [i for i in ids if i not in set(lost)]
        if done:
            # Every window of these ids but window 0 and the ones just committed: the replaced
            # write's, and any a killed write left behind.
            stale = models.Filter(
                must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=done))],
                must_not=[
                    models.FieldCondition(key="write_id", match=models.MatchValue(value=write_id)),
                    models.FieldCondition(key="window", match=models.MatchValue(value=0)),
                ],
            )
            self._retrying(
                lambda: self.client.delete(
                    self.collection_name, points_selector=models.FilterSelector(filter=stale), wait=True
                ),
                "delete stale windows",
                written,
                all_ids,
                ids,
            )
        if lost:
            raise DuplicateIdError(
                f"ids added to collection {self.collection_name!r} by another writer meanwhile: {lost[:5]}; they were "
                "not overwritten (replace=False). Pass replace=True to overwrite them."
            )

    def _upgrade_layout(self) -> None:
        """Record the current layout before writing into an older collection, so older readers refuse it."""
        if int(self.marker.get("layout_version", 1)) >= LAYOUT_VERSION:
            return
        marker = {**self.marker, "layout_version": LAYOUT_VERSION}
        self._call(f"update collection {self.collection_name!r}", self.client.update_collection,
                   self.collection_name, metadata={_MARKER: marker})  # fmt: skip
        logger.info("Collection %r: layout version %s -> %s", self.collection_name, self.marker.get("layout_version"),
                    LAYOUT_VERSION)  # fmt: skip
        self.marker = marker

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

        with self._lock:
            for start in range(0, len(ids), 1024):
                chunk = list(ids[start : start + 1024])
                # Window 0 first: the documents vanish in one step; their other windows are then
                # unreferenced (a kill here leaves them to the next write or repair()).
                heads = models.PointIdsList(points=[point_id(i) for i in chunk])
                self._call("delete points", self.client.delete, self.collection_name, points_selector=heads, wait=True)
                rest = models.FilterSelector(
                    filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=chunk))])
                )
                self._call("delete points", self.client.delete, self.collection_name, points_selector=rest, wait=True)

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
        """Window-0 payloads (the committed text and metadata) of ``ids`` that exist."""
        points = self._retrieve([point_id(i) for i in ids], payload=["doc_id", *astuple(self.config.payload_keys)],
                                vectors=False)  # fmt: skip
        return {p.payload["doc_id"]: p.payload for p in points}

    def _scroll(self, payload: Any, *, vectors: bool = False, first_windows_only: bool = True) -> Iterator[Any]:
        """Every point's payload (or the point, with ``vectors``), page by page; window 0 only unless told otherwise."""
        for p in self._scroll_points(payload, vectors=vectors, first_windows_only=first_windows_only):
            yield p if vectors else p.payload

    def _scroll_points(self, payload: Any, *, vectors: bool = False, first_windows_only: bool = True) -> Iterator[Any]:
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
            yield from points
            if offset is None:
                return

    def _assemble(self, points: Iterable[Any]) -> dict[str, torch.Tensor]:
        """Doc id -> committed ``(n_tokens, dim)`` matrix of the documents ``points`` belong to."""
        return self._committed(list(points))[0]

    def _committed(
        self, points: list[Any], head_payload: Sequence[str] = ()
    ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]], set[str]]:
        """The committed versions of the documents that ``points`` (any windows, with token vectors) belong to.

        Window 0 of each document (from ``points`` or retrieved, with ``head_payload`` fields too)
        names the write that is committed; only that write's windows are used, whatever else
        ``points`` holds. Returns ``(doc id -> (n_tokens, dim) float32 matrix, doc id -> window-0
        payload, ids of documents with a point of their committed write among points)``.
        Documents without window 0 (never committed, or deleted) are absent.
        """
        heads: dict[str, Any] = {}  # doc id -> its window-0 point
        found: dict[str, Any] = {}  # point id -> a point of another window
        docs: dict[str, None] = {}
        for p in points:
            payload = p.payload or {}
            doc_id = payload.get("doc_id")
            if not isinstance(doc_id, str):
                continue
            docs[doc_id] = None
            if _window_of(payload) == 0:
                heads[doc_id] = p
            else:
                found[str(p.id)] = p
        given = set(heads)
        fields = list(dict.fromkeys([*_HEAD, *head_payload]))
        for p in self._retrieve([point_id(d) for d in docs if d not in heads], payload=fields, vectors=True):
            heads[p.payload["doc_id"]] = p
        vouched = given | {
            q.payload["doc_id"]
            for pid, q in found.items()
            if q.payload["doc_id"] in heads
            and _in_commit(pid, q.payload["doc_id"], q.payload, heads[q.payload["doc_id"]].payload)
        }
        matrices: dict[str, torch.Tensor] = {}
        incomplete = self._join(heads, found, matrices)
        if incomplete:
            # A write may have committed (and deleted the windows looked for) while we read: read
            # those documents' window 0 again, once. Their candidate points no longer vouch for them.
            again = self._retrieve([point_id(d) for d in incomplete], payload=fields, vectors=True)
            for d in incomplete:
                del heads[d]
            heads.update((p.payload["doc_id"], p) for p in again)
            vouched -= set(incomplete)
            incomplete = self._join(heads, found, matrices)
            for d in incomplete:
                logger.warning("Document %r misses windows of its committed write; skipped (re-add it)", d)
                del heads[d]
        return matrices, {d: dict(p.payload) for d, p in heads.items()}, vouched & set(matrices)

    def _join(self, heads: dict[str, Any], found: dict[str, Any], out: dict[str, torch.Tensor]) -> list[str]:
        """Concatenate each head's committed windows into ``out`` (fetching missing ones); returns incomplete ids."""
        need = [
            pid
            for d, head in heads.items()
            if d not in out
            for w in range(1, _n_windows(head.payload))
            if (pid := _window_point_id(d, w, head.payload)) not in found
        ]
        for p in self._retrieve(need, payload=["doc_id", "window", "write_id"], vectors=True):
            found[str(p.id)] = p
        incomplete = []
        for d, head in heads.items():
            if d in out:
                continue
            parts = [head]
            for w in range(1, _n_windows(head.payload)):
                pid = _window_point_id(d, w, head.payload)
                p = found.get(pid)
                if p is None or not _in_commit(pid, d, p.payload, head.payload):
                    break
                parts.append(p)
            matrix = np.concatenate([np.asarray(p.vector[TOKENS], dtype=np.float32) for p in parts])
            if len(parts) != _n_windows(head.payload) or matrix.shape[0] != head.payload.get("n_tokens", len(matrix)):
                incomplete.append(d)
                continue
            out[d] = torch.from_numpy(matrix)
        return incomplete

    def _admitted(
        self,
        docs: Sequence[str],
        heads: Mapping[str, Mapping[str, Any]],
        vouched: set[str],
        qfilter: models.Filter | None,
    ) -> list[str]:
        """Of candidate ``docs``, those whose *committed* version passes the filter.

        A document found through a point of its committed write passed the filter inside Qdrant
        (every window carries the document's metadata); one found only through a stale window is
        checked again against its window 0.
        """
        from qdrant_client import models

        unvouched = [d for d in docs if d not in vouched]
        if not unvouched or qfilter is None:
            return list(docs)
        check = models.Filter(must=[models.HasIdCondition(has_id=[point_id(d) for d in unvouched]), qfilter])
        points, _ = self._call("scroll points", self.client.scroll, self.collection_name, scroll_filter=check,
                               limit=len(unvouched), with_payload=["doc_id"], with_vectors=False)  # fmt: skip
        passing = {p.payload["doc_id"] for p in points}
        return [d for d in docs if d in vouched or d in passing]

    def _search_local(
        self,
        queries: list[torch.Tensor],
        lexical: list[list[int]],
        k: int,
        depth: int,
        qfilter: models.Filter | None,
    ) -> list[list[SearchResult]]:
        from qdrant_client import models

        fields = _HEAD
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
            matrices, heads, vouched = self._committed(list(response.points), head_payload=fields)
            doc_ids = self._admitted(list(matrices), heads, vouched, qfilter)
            if not doc_ids:
                ranked.append([])
                continue
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
    ) -> list[list[SearchResult]]:
        from qdrant_client import models

        requests = [
            models.QueryRequest(
                prefetch=self._prefetches(q, terms, depth, qfilter),
                query=_as_list(q),
                using=TOKENS,
                filter=qfilter,
                limit=2 * depth,
                with_payload=["doc_id", "write_id"],
            )
            for q, terms in zip(queries, lexical, strict=True)
        ]
        responses = self._call("query points", self.client.query_batch_points, self.collection_name, requests=requests)
        docs = list(dict.fromkeys(p.payload["doc_id"] for r in responses for p in r.points))
        committed = {
            p.payload["doc_id"]: p.payload.get("write_id")
            for p in self._retrieve([point_id(d) for d in docs], payload=["doc_id", "write_id"], vectors=False)
        }
        ranked = []
        for response in responses:
            best: dict[str, float] = {}
            for p in response.points:  # best first; a split document keeps its best window
                doc_id = p.payload["doc_id"]
                # Only windows of the committed write count (Qdrant scored stale ones too); they
                # carry the committed metadata, so the filter Qdrant applied is the right one.
                if doc_id in committed and p.payload.get("write_id") == committed[doc_id]:
                    best.setdefault(doc_id, float(p.score))
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

    def _filter(self, filter: Mapping[str, Any] | models.Filter | None) -> models.Filter | None:
        """``filter`` translated onto this collection's metadata key."""
        return to_qdrant_filter(filter, metadata_key=self.config.payload_keys.metadata)

    def _result(self, doc_id: str, score: float, payload: Mapping[str, Any]) -> SearchResult:
        """A hit from a window-0 payload: the text and metadata under this collection's payload keys."""
        keys = self.config.payload_keys
        return SearchResult(doc_id, score, str(payload.get(keys.text, "")), dict(payload.get(keys.metadata) or {}))

    def _results(self, ranked: list[list[tuple[str, float]]]) -> list[list[SearchResult]]:
        """Attach the committed texts and metadata (one retrieve for all queries)."""
        payloads = self._payloads(list(dict.fromkeys(d for row in ranked for d, _ in row)))
        return [[self._result(d, s, payloads[d]) for d, s in row if d in payloads] for row in ranked]

    def __repr__(self) -> str:
        return (
            f"QdrantLateInteractionStore(collection={self.collection_name!r}, model={self.marker.get('model_name')!r}, "
            f"mode={self.mode!r}, candidate_depth={self.candidate_depth})"
        )


def _check_client(client: object) -> None:
    if not all(callable(getattr(client, m, None)) for m in ("collection_exists", "upsert", "query_batch_points")):
        raise InvalidInputError(
            f"client must be a qdrant_client.QdrantClient (':memory:', path= or url=), got {type(client).__name__}."
        )


def _text_of(document: Any) -> Any:
    """A document's ``page_content`` (LangChain) or ``text`` (LlamaIndex); an empty str is a text too."""
    text = getattr(document, "page_content", None)
    return text if isinstance(text, str) else getattr(document, "text", None)


def _collection_lock(client: Any, collection_name: str) -> threading.RLock:
    """The write lock of ``collection_name`` on ``client``, shared by every store object in this process."""
    with _LOCKS_GUARD:
        try:
            per_client = _LOCKS.setdefault(client, {})
        except TypeError:  # a client that cannot be weakly referenced: one lock per store object
            per_client = {}
        return per_client.setdefault(collection_name, threading.RLock())


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
