"""The Qdrant document store: Qdrant holds and filters the candidates, exact MaxSim runs locally."""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lateint_plugins.core._checks import (
    check_device,
    check_encoder,
    check_ids,
    check_k,
    check_matrices,
    check_sequence,
    check_text,
    check_texts,
    is_utf8,
)
from lateint_plugins.core.codec import ResidualCodec
from lateint_plugins.core.encoder import ColBERTEncoder, resolve_device
from lateint_plugins.core.errors import (
    InvalidInputError,
    require,
)
from lateint_plugins.core.index import Metadata
from lateint_plugins.core.store import SearchResult, check_search_options
from lateint_plugins.qdrant.coded import N_FULL_SCORES, N_REFINE, _Coded
from lateint_plugins.qdrant.collection import check_recorded, create_collection
from lateint_plugins.qdrant.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
)
from lateint_plugins.qdrant.layout import (
    _EXTRA,
    _HEAD,
    _MARKER,
    _SCROLL_PAGE,
    MAX_MULTIVECTOR_FLOATS,
    CollectionConfig,
    Mode,
    StoredDocument,
    _check_collection_name,
    _check_mode,
    _in_commit,
    _marker,
    _n_windows,
    _window_of,
    point_id,
    recorded_config,
)
from lateint_plugins.qdrant.writing import _progress

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

logger = logging.getLogger(__name__)

# One write lock per (client, collection), shared by every store object on them in this process.
_LOCKS: weakref.WeakKeyDictionary[Any, dict[str, threading.RLock]] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


class QdrantLateInteractionStore(_Coded):
    """A :class:`~lateint_plugins.core.store.DocumentStore` whose documents live in a Qdrant collection.

    Args:
        client: a ``QdrantClient`` (``":memory:"``, ``path=...`` or ``url=...``).
        collection_name: the collection; created with ``config`` when missing (unless ``create=False``).
        encoder: the ColBERT encoder; its model name and dimension are recorded in (and checked
            against) the collection.
        config: layout options for a new collection (:class:`CollectionConfig`).
        create: create the collection when it does not exist; otherwise raise
            :class:`CollectionNotFoundError`.
        mode: ``"local"`` (MaxSim of the candidates here) or ``"native"`` (Qdrant rescores: needs a
            ``token_layout="fp16"`` collection).
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
        codec: a trained :class:`~lateint_plugins.core.codec.ResidualCodec` (e.g. a
            ``PLAIDIndex``'s ``codec``) that a ``token_layout="plaid"`` collection without one
            records on its first write, instead of training one once it holds
            ``CollectionConfig.codec_training_tokens`` tokens.
        n_full_scores: candidates per query scored exactly in a ``token_layout="plaid"``
            collection (their residuals read); the rest are ranked by their centroids only.
        n_refine: with a residual quantiser (``quantizer="rq"``), those of the ``n_full_scores``
            (scored on the first stage's residuals) whose later stages are read too: the best
            ``max(k, n_refine)``, scored again on their full codes, give the hits.

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
        codec: ResidualCodec | None = None,
        n_full_scores: int = N_FULL_SCORES,
        n_refine: int = N_REFINE,
    ) -> None:
        require("qdrant_client", _EXTRA)
        self._init_codes(codec, n_full_scores, n_refine)
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

    def _open(self, config: CollectionConfig, create: bool) -> CollectionConfig:
        name = self.collection_name
        if not self._call(f"reach collection {name!r}", self.client.collection_exists, name):
            if not create:
                raise CollectionNotFoundError(
                    f"Qdrant has no collection {name!r}; create it with create=True or check collection_name."
                )
            self._create(config)
            return config
        recorded = self._read_marker()
        if not recorded:
            raise CollectionMismatchError(
                f"Collection {name!r} was not created by lateint-plugins (no {_MARKER!r} entry in its metadata); "
                "use another collection_name."
            )
        check_recorded(name, recorded, self.encoder, self.marker, self.allow_model_mismatch)
        existing = recorded_config(recorded)
        recorded_fields = ("pooled_vectors", "lexical", "payload_indexes", "payload_keys", "token_layout", "nbits",
                           "quantizer", "codec_training_tokens")  # fmt: skip
        if config != CollectionConfig() and any(getattr(existing, f) != getattr(config, f) for f in recorded_fields):
            logger.warning("Collection %r exists with %s; the config passed is ignored", name, existing)
        self.marker = recorded
        return existing

    def _create(self, config: CollectionConfig) -> None:
        create_collection(self._call, self.client, self.collection_name, self.encoder.dim, config, self.marker)

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
            if self._plaid:
                self._prepare_codec(matrices, [], ids, ids)  # a codec trained on all of them, not on the first batch
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
            self._refuse_native()
            return self._search_native(queries, lexical, k, depth, qfilter)
        if self._plaid:
            return self._search_codes(queries, lexical, k, depth, qfilter)
        return self._search_local(queries, lexical, k, depth, qfilter)

    def get(self, ids: Sequence[str]) -> list[SearchResult]:
        """Stored documents by id (score 0.0), in the order asked; unknown ids are skipped."""
        ids = check_ids(ids, "ids", unique=False)
        payloads = self._payloads(ids)
        return [self._result(i, 0.0, payloads[i]) for i in ids if i in payloads]

    def get_embeddings(self, ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """The stored ``(n_tokens, dim)`` float32 token matrices of ``ids`` (windows joined, codes decompressed)."""
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
        from outside this library) are logged, not removed. In a ``token_layout="plaid"``
        collection with a codec, windows still stored as fp16 tokens (a compression killed part-way,
        or written by a writer that had not seen the codec yet) are compressed. Takes the
        collection's write lock.
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
            if self._plaid and (codec := self._current_codec()) is not None:
                self._compress_fp16(codec, recheck=True)  # windows a concurrent first writer left as fp16
            return len(stale)

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
