"""How the Qdrant store reads: committed documents from their points, candidate queries, MaxSim.

Part of :class:`~lateint_plugins.qdrant.QdrantLateInteractionStore` (its base class), split out by
concern; "crash-safe" in :mod:`lateint_plugins.qdrant` says why every read goes through window 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import SearchResult
from lateint_plugins.qdrant import _local
from lateint_plugins.qdrant.errors import (
    _is_transport_error,
    _unavailable,
)
from lateint_plugins.qdrant.filters import to_qdrant_filter
from lateint_plugins.qdrant.layout import (
    _HEAD,
    _SCROLL_PAGE,
    LEXICAL,
    POOLED,
    TOKENS,
    CollectionConfig,
    _as_list,
    _in_commit,
    _n_windows,
    _window_of,
    _window_point_id,
    point_id,
    recorded_marker,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

logger = logging.getLogger(__name__)


class _Reader:
    """The store's client calls and its read path: retrieve, scroll, assemble committed windows, search."""

    # Set by QdrantLateInteractionStore.__init__.
    client: QdrantClient
    collection_name: str
    encoder: ColBERTEncoder
    config: CollectionConfig
    marker: dict[str, Any]
    device: torch.device
    max_tokens_per_point: int
    write_batch_size: int
    retries: int
    _lock: threading.RLock
    _read_arrays: bool = True
    """Read local mode's arrays directly when the client allows it (see :mod:`._local`); False: public API only."""

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; a transport failure becomes :class:`QdrantUnavailableError`."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if _is_transport_error(exc):
                raise _unavailable(exc, what) from exc
            raise

    def _read_marker(self) -> dict[str, Any]:
        """Our entry in the collection's metadata as the server holds it now (``{}`` when there is none)."""
        info = self._call(f"read collection {self.collection_name!r}", self.client.get_collection, self.collection_name)
        return recorded_marker(info)

    def _local(self) -> Any | None:
        """The embedded local-mode collection to read arrays from, or None (a server, or arrays turned off)."""
        return _local.local_collection(self.client, self.collection_name) if self._read_arrays else None

    def _local_failed(self, exc: Exception) -> None:
        # Internals that moved in a way the version check did not catch: the public API from now on.
        logger.warning("Reading Qdrant local mode's arrays failed (%r); using the public API for this store", exc)
        self._read_arrays = False

    # ------------------------------------------------------------------ reading
    def _retrieve(self, pids: Sequence[str], *, payload: Any, vectors: bool) -> list[Any]:
        if not pids:
            return []
        if vectors and isinstance(payload, list) and (local := self._local()) is not None:
            try:
                return _local.read_points(local, pids, payload, TOKENS)
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                self._local_failed(exc)
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
        fields = _HEAD
        local = self._local()
        candidates = self._local_candidates(local, queries, lexical, depth) if qfilter is None else None
        if candidates is None:
            candidates = self._query_candidates(local, queries, lexical, depth, qfilter)
        ranked: list[list[tuple[str, float]]] = []
        for q, points in zip(queries, candidates, strict=True):
            matrices, heads, vouched = self._committed(points, head_payload=fields)
            # In id order: scores and ties then do not depend on the order candidates arrived in.
            doc_ids = self._admitted(sorted(matrices), heads, vouched, qfilter)
            ranked.append(self._rank_exact(q, {d: matrices[d] for d in doc_ids}, k))
        return self._results(ranked)

    def _rank_exact(self, q: torch.Tensor, matrices: Mapping[str, torch.Tensor], k: int) -> list[tuple[str, float]]:
        """The best ``k`` of ``matrices`` (doc id -> ``(n_tokens, dim)``) by exact MaxSim with ``q``, best first.

        Ties fall in the mapping's order: callers pass ids sorted, so they do not depend on arrival order.
        """
        if not matrices:
            return []
        return _top(list(matrices), maxsim([q], list(matrices.values()), device=self.device)[0].cpu(), k)

    def _query_candidates(
        self,
        local: Any | None,
        queries: list[torch.Tensor],
        lexical: list[list[int]],
        depth: int,
        qfilter: models.Filter | None,
    ) -> list[list[Any]]:
        """Each query's candidate points (window-0 bookkeeping payload and token vectors) through the Query API.

        One batch request; in local mode the token vectors are then read as arrays rather than sent along.
        """
        from qdrant_client import models

        with_vector: Any = [TOKENS] if local is None else False
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
                    with_payload=_HEAD,
                    with_vector=with_vector,
                )
                if len(sources) > 1
                else models.QueryRequest(
                    query=sources[0].query,
                    using=POOLED,
                    filter=qfilter,
                    limit=depth,
                    with_payload=_HEAD,
                    with_vector=with_vector,
                )
            )
        responses = self._call("query points", self.client.query_batch_points, self.collection_name, requests=requests)
        if local is not None:
            try:
                return [_local.read_points(local, [str(p.id) for p in r.points], _HEAD, TOKENS) for r in responses]
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                self._local_failed(exc)
                return self._query_candidates(None, queries, lexical, depth, qfilter)
        return [list(r.points) for r in responses]

    def _local_candidates(
        self,
        local: Any | None,
        queries: list[torch.Tensor],
        lexical: list[list[int]],
        depth: int,
        fields: Sequence[str] = _HEAD,
        vector: str | None = TOKENS,
    ) -> list[list[Any]] | None:
        """The candidates of :meth:`_query_candidates` (unfiltered) computed on local mode's arrays; None if unable.

        Each with its payload ``fields`` and its ``vector`` (None: payload only).

        The same points local mode's prefetches select (same scores, same order at the cut): the
        ``depth`` best by the pooled vector and, with terms, the ``depth`` best by BM25, from an
        inverted index instead of local mode's per-document Python merge.
        """
        if local is None or self.config.pooled_vectors != 1:
            return None
        try:
            out = []
            for q, terms in zip(queries, lexical, strict=True):
                internal = _local.top_pooled(local, POOLED, self._pooled_query(q), depth)  # type: ignore[arg-type]
                if self.config.lexical and terms:
                    internal += _local.top_sparse(local, LEXICAL, sorted(set(terms)), depth)
                pids = _local.point_ids(local, list(dict.fromkeys(internal)))
                out.append(_local.read_points(local, pids, fields, vector))
            return out
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            self._local_failed(exc)
            return None

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


def _top(names: Sequence[str], scores: torch.Tensor, k: int) -> list[tuple[str, float]]:
    """The ``k`` best ``(name, score)`` pairs of ``scores (len(names),)``, best first."""
    top = torch.topk(scores, min(k, len(names)))
    return [(names[i], s) for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
