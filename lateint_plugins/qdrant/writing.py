"""How the Qdrant store writes: points of a document, the commit protocol, retries, deletes.

Part of :class:`~lateint_plugins.qdrant.QdrantLateInteractionStore` (its base class); the commit
protocol is described under "crash-safe" in :mod:`lateint_plugins.qdrant`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lateint_plugins.core._checks import (
    check_matrix,
)
from lateint_plugins.core.errors import (
    DimensionMismatchError,
    DuplicateIdError,
)
from lateint_plugins.core.index import Metadata
from lateint_plugins.core.store import check_documents
from lateint_plugins.qdrant.errors import (
    PartialWriteError,
    _is_server_error,
    _is_transport_error,
)
from lateint_plugins.qdrant.layout import (
    _FLOAT16_MAX,
    _MARKER,
    LAYOUT_VERSION,
    LEXICAL,
    POOLED,
    TOKENS,
    _as_list,
    _window_point_id,
    _windows,
    bm25_vector,
    content_hash,
    marker_version,
    point_id,
    pool,
)
from lateint_plugins.qdrant.reading import _Reader

if TYPE_CHECKING:
    from qdrant_client import models

logger = logging.getLogger(__name__)


class _Writer(_Reader):
    """The store's write path: validation of new documents, points, the window-0 commit, retries, deletes."""

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
        target = marker_version(self.config)
        if int(self.marker.get("layout_version", 1)) >= target:
            return
        before = self.marker.get("layout_version")
        self._write_marker({**self.marker, "layout_version": target})
        logger.info("Collection %r: layout version %s -> %s", self.collection_name, before, target)

    def _write_marker(self, marker: dict[str, Any]) -> None:
        """Record ``marker`` as our entry in the collection's metadata, and keep it as :attr:`marker`."""
        self._call(f"update collection {self.collection_name!r}", self.client.update_collection,
                   self.collection_name, metadata={_MARKER: marker})  # fmt: skip
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
