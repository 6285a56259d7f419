"""How the Qdrant store reads and writes a ``token_layout="plaid"`` collection (PLAID codes in the payload).

Part of :class:`~lateint_plugins.qdrant.QdrantLateInteractionStore` (its base class); the layout
is described in :mod:`lateint_plugins.qdrant.codes`. Every method here falls through to the fp16
layout's (:mod:`.reading`, :mod:`.writing`) on an fp16 collection.

A query runs in two stages, as PLAID does. **Stage A**: Qdrant returns the candidates (pooled
prefetch ∪ BM25 prefetch, filter applied) with their centroid sets only (distinct ids); each is
scored by centroid interaction (MaxSim against its tokens' centroids) here. **Stage B**: the ids and
residuals of the best ``n_full_scores`` (at least ``k``) are retrieved, decompressed and scored by
MaxSim: the score a PLAID index gives the same codes. With a codec of several stages (``quantizer="rq"``), stage B
reads the first stage's residuals only, and **stage C** the later stages' for the best
``n_refine`` (at least ``k``), scored again on their full codes. Reading vectors
(``get_embeddings``, ``iter_documents``, sync) returns decompressed vectors.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from lateint_plugins.core._checks import check_k
from lateint_plugins.core.codec import ResidualCodec, default_n_centroids, stages_for
from lateint_plugins.core.errors import InvalidInputError
from lateint_plugins.core.index import Metadata
from lateint_plugins.core.scoring import segment_max
from lateint_plugins.core.store import SearchResult
from lateint_plugins.qdrant.codes import (
    CodedTokens,
    check_codes,
    code_fields,
    code_payload,
    codec_from_parts,
    codec_point_id,
    codec_points,
    decode_centroid_set,
    decode_fp16,
    decode_ids,
    decode_residual_fields,
    decode_residuals,
    encode_fp16,
    residual_fields,
    train,
)
from lateint_plugins.qdrant.errors import CollectionMismatchError
from lateint_plugins.qdrant.layout import (
    _HEAD,
    _SCROLL_PAGE,
    CENTROID_IDS,
    CENTROID_SET,
    POOLED,
    REFINEMENT,
    RESIDUALS,
    TOKENS,
    TOKENS_FP16,
    StoredDocument,
    _in_commit,
    _n_windows,
    _window_of,
    _window_point_id,
    point_id,
)
from lateint_plugins.qdrant.reading import _top
from lateint_plugins.qdrant.writing import _progress, _Writer

if TYPE_CHECKING:
    from qdrant_client import models

logger = logging.getLogger(__name__)

N_FULL_SCORES = 48
"""Default candidates per query whose residuals are read and scored exactly (``token_layout="plaid"``)."""
N_REFINE = 16
"""Default candidates per query whose later stages' residuals are read too (a codec of several stages)."""
GROWTH = 8
"""A codec trained once a collection holds ``codec_training_tokens`` gets the default centroids of a
collection this many times larger: on SciFact (1.2M tokens, codec trained on the first 131,072 at 6 bits)
8,192 centroids kept 0.941 of the exact top 10 over 100 queries, 16,384 kept 0.951
(benchmarks/bench_qdrant_layouts.py)."""


class _Coded(_Writer):
    """The ``token_layout="plaid"`` read and write paths; the fp16 ones otherwise."""

    # Set by QdrantLateInteractionStore.__init__.
    n_full_scores: int
    n_refine: int
    _codec: ResidualCodec | None
    _given_codec: ResidualCodec | None

    def _init_codes(self, codec: ResidualCodec | None, n_full_scores: int, n_refine: int) -> None:
        if codec is not None and not isinstance(codec, ResidualCodec):
            raise InvalidInputError(f"codec must be a trained ResidualCodec or None, got {type(codec).__name__}.")
        self._given_codec, self._codec = codec, None
        self.n_full_scores = check_k(n_full_scores, "n_full_scores")
        self.n_refine = check_k(n_refine, "n_refine")

    def _refuse_native(self) -> None:
        if self._plaid:
            raise InvalidInputError(
                f"mode='native' rescores token vectors inside Qdrant; collection {self.collection_name!r} stores "
                "PLAID codes (token_layout='plaid'): use mode='local', or a token_layout='fp16' collection."
            )

    @property
    def _plaid(self) -> bool:
        return self.config.token_layout == "plaid"

    @property
    def codec(self) -> ResidualCodec | None:
        """The collection's codec (``token_layout="plaid"``); None before the first write, or in an fp16 collection."""
        return self._current_codec()

    # ------------------------------------------------------------------ the codec
    def _current_codec(self) -> ResidualCodec | None:
        """The recorded codec (read once from its codec points), re-reading the marker while there is none."""
        if self._codec is not None or not self._plaid:
            return self._codec
        entry = self.marker.get("codec")
        if entry is None:  # another store object (or process) may have written the first documents since
            self.marker = self._read_marker() or self.marker
            entry = self.marker.get("codec")
        if entry is None:
            return None
        ids = [codec_point_id(entry["id"], i) for i in range(int(entry["n_parts"]))]
        parts = {int(p.payload["part"]): p.payload for p in self._retrieve(ids, payload=True, vectors=False)}
        self._codec = codec_from_parts(entry, parts).to(self.device)
        if self._given_codec is not None and codec_points(self._given_codec)[0]["id"] != entry["id"]:
            logger.warning("Collection %r has its own codec; the codec passed is ignored", self.collection_name)
        return self._codec

    def _codec_for_write(self, samples: Sequence[Any]) -> ResidualCodec | None:
        """The codec a write compresses with; None: too few tokens to train one yet (the write stays fp16).

        A collection without a codec records the one given to the store; otherwise it trains one
        once its fp16 documents and ``samples`` hold ``codec_training_tokens`` tokens, on all of
        them. The documents written as fp16 before are then compressed too.
        """
        codec = self._current_codec()
        if codec is None:
            if self._given_codec is not None:
                codec = self._record_codec(self._given_codec)
            else:
                matrices = [s for s in samples if isinstance(s, torch.Tensor)]
                stored = sum(int(p.get("n_tokens") or 0) for p in self._scroll(["n_tokens"]))
                if stored + sum(m.shape[0] for m in matrices) < self.config.codec_training_tokens:
                    return None
                if stored:  # the documents kept as fp16 so far are part of the sample
                    matrices += list(self._assemble(self._scroll_points(_HEAD, vectors=True)).values())
                if not matrices:
                    raise InvalidInputError(
                        f"Collection {self.collection_name!r} has no codec yet: pass codec= to the store, or add "
                        "embeddings (a codec is trained on the first documents written)."
                    )
                n_centroids = self.config.n_centroids
                if n_centroids is None and self.config.codec_training_tokens:
                    # The collection is expected to grow past the tokens it trains on: the centroids of
                    # one GROWTH times that size (16,384 at 6 bits for 131,072 tokens, not 8,192).
                    total = sum(m.shape[0] for m in matrices)
                    n_centroids = default_n_centroids(GROWTH * total, self.config.nbits)
                quantizer = self.config.quantizer or "pq"
                codec = self._record_codec(train(matrices, self.config.nbits, n_centroids,
                                                 quantizer=quantizer))  # fmt: skip
        self._compress_fp16(codec)
        return codec

    def _compress_fp16(self, codec: ResidualCodec, *, recheck: bool = False) -> int:
        """Compress the windows still stored as fp16 tokens (written before the codec); returns how many.

        Each window's payload is replaced in one step, and only while its ``write_id`` is the one
        read (a document rewritten meanwhile is left to its writer). Skipped once the marker records
        that every such window was compressed, unless ``recheck``.
        """
        from qdrant_client import models

        if not self.config.codec_training_tokens or (self.marker.get("fp16_compressed") and not recheck):
            return 0
        left = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=TOKENS_FP16))])
        offset, done = None, 0
        while True:
            page, offset = self._call("scroll points", self.client.scroll, self.collection_name,
                                      scroll_filter=left, limit=_SCROLL_PAGE, offset=offset, with_payload=True,
                                      with_vectors=False)  # fmt: skip
            operations = []
            for p in page:
                payload = dict(p.payload or {})
                codes = window_codes(payload, codec)
                if codes is None or "write_id" not in payload:
                    continue
                del payload[TOKENS_FP16]
                unchanged = models.MatchValue(value=payload["write_id"])
                same = models.Filter(must=[models.HasIdCondition(has_id=[p.id]),
                                           models.FieldCondition(key="write_id", match=unchanged)])  # fmt: skip
                overwrite = models.SetPayload(payload={**payload, **code_payload(*codes, codec)}, filter=same)
                operations.append(models.OverwritePayloadOperation(overwrite_payload=overwrite))
            if operations:
                self._call("compress points", self.client.batch_update_points, self.collection_name,
                           update_operations=operations, wait=True)  # fmt: skip
                done += len(operations)
            if offset is None:
                break
        self._write_marker({**self._read_marker(), "fp16_compressed": True})
        if done:
            logger.info("Collection %r: compressed %d windows written before its codec", self.collection_name, done)
        return done

    def _record_codec(self, codec: ResidualCodec) -> ResidualCodec:
        """Write ``codec``'s points, then name it in the marker (the commit); a codec recorded meanwhile wins."""
        from qdrant_client import models

        stages = stages_for(self.config.nbits, self.config.quantizer or "pq")
        if codec.dim != self.encoder.dim or codec.nbits != self.config.nbits or codec.stages != stages:
            raise CollectionMismatchError(
                f"codec has {codec.dim}-d vectors, nbits={codec.nbits} and {codec.stages} stage(s); collection "
                f"{self.collection_name!r} holds {self.encoder.dim}-d vectors at nbits={self.config.nbits}, "
                f"quantizer={self.config.quantizer!r} ({stages} stage(s)); train or pass a matching codec."
            )
        entry, parts = codec_points(codec)
        points = [models.PointStruct(id=pid, vector={}, payload=payload) for pid, payload in parts]
        for point in points:  # one per request: each holds up to a megabyte
            self._call("upsert codec", self.client.upsert, self.collection_name, points=[point], wait=True)
        recorded = self._read_marker()
        if recorded.get("codec") is None:
            self._write_marker({**recorded, "codec": entry})
            logger.info("Collection %r: codec %s recorded (%d centroids, nbits=%d)", self.collection_name,
                        entry["id"], codec.n_centroids, codec.nbits)  # fmt: skip
        else:
            self.marker = recorded
        self._codec = None
        return cast(ResidualCodec, self._current_codec())

    # ------------------------------------------------------------------ writing
    def add_codes(
        self,
        texts: Sequence[str],
        codes: Sequence[Any],
        residuals: Sequence[Any],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        codec: ResidualCodec | None = None,
        replace: bool = False,
        show_progress_bar: bool = False,
    ) -> list[str]:
        """Write documents already compressed by ``codec``: ``codes[i] (n,)`` ids, ``residuals[i] (n, bytes)`` uint8.

        ``token_layout="plaid"`` collections only. The codes are stored as they are (no
        decompress and recompress); ``codec`` must be the collection's (checked by content hash),
        or becomes it when the collection has none yet. What :func:`~lateint_plugins.qdrant.sync_to_qdrant`
        uses to push a :class:`~lateint_plugins.core.plaid.PLAIDIndex`. Otherwise as ``add_embeddings``.
        """
        if not self._plaid:
            raise InvalidInputError(
                f"add_codes needs a token_layout='plaid' collection; {self.collection_name!r} stores fp16 vectors."
            )
        texts, ids, metas = self._check_new(texts, metadatas, ids)
        codes, residuals = list(codes), list(residuals)
        if not len(codes) == len(residuals) == len(texts):
            raise InvalidInputError(
                f"Got {len(texts)} texts, {len(codes)} codes and {len(residuals)} residuals; pass one of each per text."
            )
        with self._lock:
            current = self._current_codec()
            if current is None and codec is None:
                raise InvalidInputError(f"Collection {self.collection_name!r} has no codec yet: pass codec=.")
            if current is not None and codec is not None and codec_points(codec)[0]["id"] != self.marker["codec"]["id"]:
                raise CollectionMismatchError(
                    f"Collection {self.collection_name!r} holds codes of another codec ({self.marker['codec']['id']}); "
                    "sync into a new collection, or add embeddings (they are compressed with the collection's codec)."
                )
            current = current or self._record_codec(cast(ResidualCodec, codec))
            coded = [
                check_codes(c, r, current, f"codes[{i}]") for i, (c, r) in enumerate(zip(codes, residuals, strict=True))
            ]
            if not ids:
                return []
            if not replace:
                self._refuse_existing(ids)
            progress = _progress(len(ids), show_progress_bar, "Writing to Qdrant")
            written: list[str] = []
            try:
                for start in range(0, len(ids), self.write_batch_size):
                    stop = start + self.write_batch_size
                    self._write(ids[start:stop], coded[start:stop], texts[start:stop], metas[start:stop],
                                written, ids, insert_only=not replace)  # fmt: skip
                    progress.update(len(ids[start:stop]))
            finally:
                progress.close()
        return ids

    def _write(
        self,
        ids: list[str],
        vectors: Sequence[Any],
        texts: list[str],
        metas: list[Metadata],
        written: list[str],
        all_ids: list[str],
        **kwargs: Any,
    ) -> None:
        if self._plaid:
            self._prepare_codec(vectors, written, all_ids, ids)
        super()._write(ids, vectors, texts, metas, written, all_ids, **kwargs)

    def _prepare_codec(self, samples: Sequence[Any], written: list[str], all_ids: list[str], ids: list[str]) -> None:
        """:meth:`_codec_for_write` with the write path's retries (:class:`PartialWriteError` in the end)."""
        self._retrying(lambda: self._codec_for_write(samples), "prepare the codec", written, all_ids, ids)

    def _points(
        self, doc_id: str, tokens: Any, text: str, meta: Metadata, write_id: str, lexical: list[int]
    ) -> list[models.PointStruct]:
        if not self._plaid:
            return super()._points(doc_id, tokens, text, meta, write_id, lexical)
        codec = self._codec  # what _write's _codec_for_write found: None while the collection has no codec
        if isinstance(tokens, CodedTokens):
            codec = cast(ResidualCodec, codec)
            codes, residuals = tokens.codes, tokens.residuals
            dense = codec.decompress(codes.to(codec.centroids.device).long(), residuals.to(codec.centroids.device))
        elif codec is not None:
            dense = tokens.detach().to(codec.centroids.device).half().float()
            codes, residuals = codec.compress(dense)
        else:
            dense = tokens.detach().to("cpu").half().float()
        # The fp16 layout's points (windows, pooled and lexical vectors, payload), their token
        # multivector swapped for the codes of the same tokens (or, before there is a codec, their fp16 bytes).
        points = super()._points(doc_id, dense.cpu(), text, meta, write_id, lexical)
        step = self.max_tokens_per_point
        for w, point in enumerate(points):
            cast(dict, point.vector).pop(TOKENS)
            rows = slice(w * step, (w + 1) * step)
            if codec is None:
                fields = {TOKENS_FP16: encode_fp16(dense[rows])}
            else:
                fields = code_payload(codes[rows], residuals[rows], codec)
            point.payload = {**(point.payload or {}), **fields}
        return points

    # ------------------------------------------------------------------ reading vectors: decompressed
    def _retrieve(self, pids: Sequence[str], *, payload: Any, vectors: bool) -> list[Any]:
        if not (vectors and self._plaid):
            return super()._retrieve(pids, payload=payload, vectors=vectors)
        return self._decompressed(super()._retrieve(pids, payload=_with_codes(payload), vectors=False))

    def _scroll_points(self, payload: Any, *, vectors: bool = False, first_windows_only: bool = True) -> Iterator[Any]:
        if not (vectors and self._plaid):
            yield from super()._scroll_points(payload, vectors=vectors, first_windows_only=first_windows_only)
            return
        page: list[Any] = []
        for p in super()._scroll_points(_with_codes(payload), first_windows_only=first_windows_only):
            page.append(p)
            if len(page) >= _SCROLL_PAGE:
                yield from self._decompressed(page)
                page = []
        yield from self._decompressed(page)

    def _decompressed(self, points: list[Any]) -> list[Any]:
        """``points`` with ``vector = {"tokens": (n, dim) float32 array}`` from their payload codes (or fp16 tokens)."""
        codec = self._current_codec()
        for p in points:
            p.vector = {TOKENS: np.zeros((0, self.encoder.dim), dtype=np.float32)}  # no tokens: an incomplete window
        if codec is None:  # a collection still below codec_training_tokens
            for p in points:
                if TOKENS_FP16 in (p.payload or {}):
                    p.vector = {TOKENS: decode_fp16(p.payload[TOKENS_FP16], self.encoder.dim).numpy()}
            return points
        coded = [(p, c) for p in points if (c := window_codes(p.payload or {}, codec)) is not None]
        if not coded:
            return points
        device = codec.centroids.device
        ids = torch.cat([c[0] for _, c in coded]).to(device).long()
        dense = codec.decompress(ids, torch.cat([c[1] for _, c in coded]).to(device)).cpu().numpy()
        ends = np.cumsum([len(c[0]) for _, c in coded])[:-1]
        for (p, _), part in zip(coded, np.split(dense, ends), strict=True):
            p.vector = {TOKENS: part}
        return points

    def _coded_windows(
        self, points: list[Any], fields: Sequence[str], head_payload: Sequence[str] = ()
    ) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]], set[str]]:
        """The committed windows of the documents ``points`` belong to, with payload ``fields``.

        As :meth:`_committed` without vectors: window 0 of each document names the committed write;
        returns ``(doc id -> its window points in order, doc id -> window-0 payload, ids found through
        a point of their committed write)``; documents with a missing window are left out.
        """
        head_fields = list(dict.fromkeys([*_HEAD, *fields, *head_payload]))
        heads: dict[str, Any] = {}
        found: dict[str, Any] = {}
        for p in points:
            doc_id = (p.payload or {}).get("doc_id")
            if isinstance(doc_id, str):
                (heads.__setitem__(doc_id, p) if _window_of(p.payload) == 0 else found.__setitem__(str(p.id), p))
        docs = {q.payload["doc_id"] for q in found.values()}
        given = set(heads)
        for p in self._retrieve([point_id(d) for d in docs - given], payload=head_fields, vectors=False):
            heads[p.payload["doc_id"]] = p
        vouched = given | {
            d
            for pid, q in found.items()
            if (d := q.payload["doc_id"]) in heads and _in_commit(pid, d, q.payload, heads[d].payload)
        }
        wanted = [_window_point_id(d, w, h.payload) for d, h in heads.items() for w in range(1, _n_windows(h.payload))]
        need = [pid for pid in wanted if pid not in found]
        for p in self._retrieve(need, payload=["doc_id", "window", "write_id", *fields], vectors=False):
            found[str(p.id)] = p
        out: dict[str, list[Any]] = {}
        for d, head in heads.items():
            parts = [head]
            for w in range(1, _n_windows(head.payload)):
                pid = _window_point_id(d, w, head.payload)
                if pid not in found or not _in_commit(pid, d, found[pid].payload, head.payload):
                    logger.warning("Document %r misses windows of its committed write; skipped (re-add it)", d)
                    break
                parts.append(found[pid])
            else:
                out[d] = parts
        return out, {d: dict(heads[d].payload) for d in out}, vouched & set(out)

    def iter_codes(self, *, with_text: bool = True) -> Iterator[tuple[StoredDocument, CodedTokens]]:
        """Every committed document with its codes as stored (``token_layout="plaid"``), page by page."""
        codec = self._current_codec()
        if codec is None:
            return
        keys = self.config.payload_keys
        fields = [*_HEAD, "content_hash", keys.metadata, *([keys.text] if with_text else [])]
        page: list[Any] = []
        code_keys = [*code_fields(codec), TOKENS_FP16]
        pages = super()._scroll_points([*fields, *code_keys])
        for p in itertools.chain(pages, [None]):
            if p is not None:
                page.append(p)
            if page and (p is None or len(page) >= _SCROLL_PAGE):
                windows, heads, _ = self._coded_windows(page, code_keys, fields)
                for d, parts in windows.items():
                    got = [window_codes(q.payload, codec) for q in parts]
                    if any(g is None for g in got):
                        logger.warning("Document %r has a window without codes or tokens; skipped (re-add it)", d)
                        continue
                    doc = self._result(d, 0.0, heads[d])
                    codes = torch.cat([g[0] for g in got])  # type: ignore[index]
                    res = torch.cat([g[1] for g in got])  # type: ignore[index]
                    yield (StoredDocument(d, doc.text, doc.metadata, heads[d].get("content_hash")),
                           CodedTokens(codes, res, codec.dim))  # fmt: skip
                page = []

    # ------------------------------------------------------------------ search
    def _search_codes(
        self,
        queries: list[torch.Tensor],
        lexical: list[list[int]],
        k: int,
        depth: int,
        qfilter: models.Filter | None,
    ) -> list[list[SearchResult]]:
        """Stages A (centroid sets of the candidates), B (codes of the best) and C (see the module docstring)."""
        codec = self._current_codec()
        fields = [CENTROID_SET, TOKENS_FP16]
        # Embedded local mode: the same candidates from its arrays (see _local), unless a filter applies.
        candidates = (
            self._local_candidates(self._local(), queries, lexical, depth, [*_HEAD, *fields], None)
            if qfilter is None
            else None
        )
        if candidates is None:
            requests = [self._code_request(q, terms, depth, qfilter) for q, terms in zip(queries, lexical, strict=True)]
            responses = self._call("query points", self.client.query_batch_points, self.collection_name,
                                   requests=requests)  # fmt: skip
            candidates = [list(r.points) for r in responses]
        if codec is None and any(CENTROID_SET in (p.payload or {}) for points in candidates for p in points):
            codec = self._current_codec()  # trained since it was looked up: codes land only after the marker names it
        ranked: list[list[tuple[str, float]]] = []
        for q, points in zip(queries, candidates, strict=True):
            windows, heads, vouched = self._coded_windows(points, fields)
            admitted = self._admitted(list(windows), heads, vouched, qfilter)
            if codec is None:  # every document is still fp16: exact MaxSim
                ranked.append(self._rank_fp16(q, admitted, windows, k))
                continue
            # Windows written before the codec and not compressed yet: their codes, computed here.
            pending = {str(p.id): c for d in admitted for p in windows[d] if CENTROID_SET not in p.payload
                       and (c := window_codes(p.payload, codec)) is not None}  # fmt: skip
            sets = self._centroid_sets(admitted, windows, pending)
            if not sets:
                ranked.append([])
                continue
            qd = q.to(codec.centroids.device, torch.float32)
            doc_ids = list(sets)
            every = torch.cat(list(sets.values())).to(qd.device)
            approx = segment_max((qd @ codec.centroids.T).index_select(1, every),
                                 torch.tensor([len(c) for c in sets.values()])).sum(0)  # fmt: skip
            best = [doc_ids[i] for i in torch.topk(approx, min(len(doc_ids), max(k, self.n_full_scores))).indices]
            ids: dict[str, torch.Tensor] = {}
            residuals = self._read_part(codec, 0, best, windows, ids, pending)
            best = [d for d in best if d in residuals]
            scores = self._maxsim_codes(qd, codec, [ids[d] for d in best], [residuals[d] for d in best])
            if codec.stages > 1 and best:
                best = [best[i] for i in torch.topk(scores, min(len(best), max(k, self.n_refine))).indices]
                later = self._read_part(codec, 1, best, windows, ids, pending)
                best = [d for d in best if d in later]
                full = [torch.cat([residuals[d], later[d]], dim=1) for d in best]
                scores = self._maxsim_codes(qd, codec, [ids[d] for d in best], full)
            ranked.append(_top(best, scores, k))
        return self._results(ranked)

    def _rank_fp16(
        self, q: torch.Tensor, doc_ids: list[str], windows: dict[str, list[Any]], k: int
    ) -> list[tuple[str, float]]:
        """The best ``k`` of ``doc_ids`` by exact MaxSim over their fp16 tokens (a collection without a codec yet)."""
        matrices = {
            d: torch.cat([decode_fp16(p.payload[TOKENS_FP16], self.encoder.dim) for p in windows[d]])
            for d in sorted(doc_ids)  # in id order, as the fp16 layout ranks: ties do not depend on arrival order
            if all(TOKENS_FP16 in p.payload for p in windows[d])  # else compressed since the codec was looked up
        }
        return self._rank_exact(q, matrices, k)

    def _centroid_sets(
        self, doc_ids: list[str], windows: dict[str, list[Any]], pending: dict[str, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Each document's centroid ids for centroid interaction (its windows' sets; repeats change no maximum).

        Windows written before ``centroid_set`` existed are read through their ids (one more request);
        ``pending`` holds the codes of windows not compressed yet (point id -> ids, residuals).
        """
        old = [str(p.id) for d in doc_ids for p in windows[d] if CENTROID_SET not in p.payload
               and str(p.id) not in pending]  # fmt: skip
        got = {str(p.id): p.payload for p in self._retrieve(old, payload=[CENTROID_IDS], vectors=False)}
        out: dict[str, torch.Tensor] = {}
        for d in doc_ids:
            parts = []
            for p in windows[d]:
                if CENTROID_SET in p.payload:
                    parts.append(decode_centroid_set(p.payload[CENTROID_SET]))
                elif str(p.id) in pending:
                    parts.append(torch.unique(pending[str(p.id)][0].long()))
                elif CENTROID_IDS in got.get(str(p.id), {}):
                    parts.append(decode_ids(got[str(p.id)][CENTROID_IDS]).long())
                else:  # deleted since stage A
                    break
            else:
                out[d] = torch.cat(parts)
        return out

    def _read_part(
        self,
        codec: ResidualCodec,
        part: int,
        doc_ids: list[str],
        windows: dict[str, list[Any]],
        ids: dict[str, torch.Tensor],
        pending: dict[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """The residual field ``part`` (0: the first stage, 1: the others) of each of ``doc_ids``, read now.

        Part 0 also reads the centroid ids, into ``ids``; a later part must match them. A document
        rewritten since stage A has other codes now (another ``write_id``): it is left out. Windows
        in ``pending`` (codes computed from their fp16 tokens) are not read.
        """
        layout = residual_fields(codec)
        name, width = layout[part]
        start = sum(w for _, w in layout[:part])
        fields = ["write_id", name, *([CENTROID_IDS] if part == 0 else [])]
        pids = [str(p.id) for d in doc_ids for p in windows[d] if str(p.id) not in pending]
        got = {str(p.id): p for p in self._retrieve(pids, payload=fields, vectors=False)}
        wanted = set(fields)
        out: dict[str, torch.Tensor] = {}
        for d in doc_ids:
            codes, res = [], []
            for p in windows[d]:
                if str(p.id) in pending:
                    window_ids, window_residuals = pending[str(p.id)]
                    codes.append(window_ids)
                    res.append(window_residuals[:, start : start + width])
                    continue
                r = got.get(str(p.id))
                if r is None or r.payload.get("write_id") != p.payload.get("write_id") or not wanted <= set(r.payload):
                    logger.debug("Document %r changed while it was searched; left out", d)
                    break
                res.append(decode_residuals(r.payload[name], width))
                if part == 0:
                    codes.append(decode_ids(r.payload[CENTROID_IDS]))
            else:
                if part == 0:
                    ids[d] = torch.cat(codes)
                residuals = torch.cat(res)
                if residuals.shape[0] == ids[d].shape[0]:
                    out[d] = residuals
        return out

    @staticmethod
    def _maxsim_codes(
        q: torch.Tensor, codec: ResidualCodec, codes: list[torch.Tensor], residuals: list[torch.Tensor]
    ) -> torch.Tensor:
        """MaxSim of ``q (q_len, dim)`` with each document's decompressed tokens: ``(n_docs,)`` on the CPU."""
        if not codes:
            return torch.zeros(0)
        device = q.device
        sims = codec.similarities(q, torch.cat(codes).to(device).long(), torch.cat(residuals).to(device))
        return segment_max(sims, torch.tensor([len(c) for c in codes]), empty=0.0).sum(0).cpu()

    def _code_request(
        self, q: torch.Tensor, terms: list[int], depth: int, qfilter: models.Filter | None
    ) -> models.QueryRequest:
        """The candidate request of stage A: the prefetches' union with window bookkeeping and centroid sets only."""
        from qdrant_client import models

        sources = self._prefetches(q, terms, depth, qfilter)
        fields = [*_HEAD, CENTROID_SET, TOKENS_FP16]
        if len(sources) == 1:
            return models.QueryRequest(query=sources[0].query, using=POOLED, filter=qfilter, limit=depth,
                                       with_payload=fields, with_vector=False)  # fmt: skip
        # Several sources: their union (RRF only orders it; every candidate is scored here).
        return models.QueryRequest(prefetch=sources, query=models.FusionQuery(fusion=models.Fusion.RRF), filter=qfilter,
                                   limit=depth * len(sources), with_payload=fields, with_vector=False)  # fmt: skip


def _with_codes(payload: Any) -> Any:
    """A ``with_payload`` selector that also returns the codes."""
    if payload is True:
        return True
    return [*(payload or []), CENTROID_IDS, RESIDUALS, REFINEMENT, TOKENS_FP16]


def window_codes(payload: Mapping[str, Any], codec: ResidualCodec) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A window's centroid ids ``(n,)`` and residuals ``(n, bytes_per_token)`` from its payload.

    As stored, or for a window written before the codec (``tokens_fp16``, not compressed yet) its
    tokens compressed now: the codes that compressing it will store. None when it has neither.
    """
    if all(f in payload for f in code_fields(codec)):
        return decode_ids(payload[CENTROID_IDS]), decode_residual_fields(payload, codec)
    if TOKENS_FP16 in payload:
        tokens = decode_fp16(payload[TOKENS_FP16], codec.dim).to(codec.centroids.device)
        codes, residuals = codec.compress(tokens)
        return codes.cpu(), residuals.cpu()
    return None
