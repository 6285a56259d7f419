"""`PLAIDIndex`: a ColBERTv2 compressed index searched the PLAID way, in pure torch + FAISS.

Each token is a centroid id (int16) plus ``nbits`` per dimension of residual (:mod:`.codec`), about
26 bytes for a 96-d token at ``nbits=2`` against 192 in fp16. Search has three stages, all
vectorised over tokens and documents:

1. **Candidates**: the query tokens' scores against every centroid; the ``n_ivf_probe`` best
   centroids per query token, plus every centroid scoring at least ``centroid_score_threshold``
   for some query token, select documents through the inverted lists (centroid -> documents).
2. **Centroid interaction** (pruned): each candidate's approximate MaxSim uses only those kept
   centroids, read straight from the inverted lists into a table over the candidates alone (its
   size, like the work, follows the postings read, not the corpus); the best ``n_full_scores`` go
   on, and full centroid interaction (every token's centroid) keeps the best quarter of them (at
   least ``k``; all of them, with no such pass, when that would be three quarters or more).
3. **Exact scoring**: MaxSim of those on their codes, scored by table lookup without
   decompressing them. Optionally (``rescore > 0``) the best ``rescore`` are scored once more
   against the original fp16 vectors, kept memory-mapped on disk rather than in RAM; a
   ``rescore`` covering every candidate scores the fp16 vectors only.

Adds compress a chunk at a time and park the codes in scratch files until the next search, so a
streamed build holds one input chunk plus the compressed index. Removals are tombstones
(documents keep their storage slot and are skipped at search time); :meth:`PLAIDIndex.save`
writes a compacted index, and :meth:`PLAIDIndex.compact` compacts in memory.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch

from . import _io
from ._checks import check_device, check_k, check_non_negative
from .codec import (
    QueryTables,
    ResidualCodec,
    check_quantizer,
    default_n_centroids,
    pool_tokens,
    stages_for,
    train_codec,
)
from .errors import CorruptIndexError, InvalidInputError, UnknownIdError
from .index import GrowthBuffer, Index, Metadata, _default_device, ragged_rows
from .ivf import InvertedLists
from .scoring import _chunks

logger = logging.getLogger(__name__)

__all__ = ["PLAIDConfig", "PLAIDIndex", "SearchConfig"]

_ADD_CHUNK_TOKENS = 16_384  # tokens expanded to float32 at a time while adding (~6 MiB each)
_PENDING_RAM_ROWS = 16_384  # added tokens kept in memory (not scratch files) until the next search
_DELTA_FRACTION = 8  # lists over recent adds merge into the main lists at 1/8 of their postings
_QUERY_BATCH = 16  # queries searched together on a GPU (fewer when the per-batch tables would be large)
_TABLE_CELLS = 16_777_216  # cap on the (queries, slots) -> candidate column map of a batch (int32, 64 MiB)
_BATCH_POSTINGS = 4_194_304  # cap on the inverted-list postings one batch reads (estimated)
_PAIR_TOKENS = 65_536  # tokens scored at a time when scoring query-document pairs


@dataclass(frozen=True)
class PLAIDConfig:
    """How the index is built (fixed once trained).

    Args:
        nbits: residual bits per dimension: 1, 2 or 4 (4, 6 or 8 with ``quantizer="rq"``).
        quantizer: ``"pq"`` (each byte a learned codeword for a block of dimensions; most accurate),
            ``"scalar"`` (ColBERTv2's per-dimension buckets; faster to build) or ``"rq"`` (nbits 4,
            6 or 8: product quantisers of 2 bits in ``nbits / 2`` stages, each on what the ones
            before missed; at 4 bits as accurate as ``"pq"``, and a token's first stage decodes alone).
        n_centroids: k-means centroids (default from the number of tokens and nbits, see
            :func:`~lateint_plugins.core.codec.default_n_centroids`).
        kmeans_niters: k-means iterations.
        max_training_tokens: token vectors sampled to train centroids and buckets.
        seed: seeds sampling and k-means.
        keep_fp16: also keep the original vectors in fp16 on disk, memory-mapped, for ``rescore``.
        pool_factor: token pooling at index time: cluster each document's tokens and keep about
            ``1 / pool_factor`` of them (the cluster means); 1 = off. 2 halves the index.
    """

    nbits: int = 2
    quantizer: Literal["pq", "scalar", "rq"] = "pq"
    n_centroids: int | None = None
    kmeans_niters: int = 4
    max_training_tokens: int = 131_072
    seed: int = 42
    keep_fp16: bool = False
    pool_factor: int = 1

    def __post_init__(self) -> None:
        check_quantizer(self.nbits, self.quantizer)
        if self.n_centroids is not None and not 1 <= check_k(self.n_centroids, "n_centroids") <= 32768:
            raise InvalidInputError(f"n_centroids must be in [1, 32768] or None, got {self.n_centroids!r}.")
        for name in ("kmeans_niters", "max_training_tokens", "pool_factor"):
            check_k(getattr(self, name), name)
        check_non_negative(self.seed, "seed")


@dataclass(frozen=True)
class SearchConfig:
    """How a query is searched; change it any time (``index.search_config = SearchConfig(...)``).

    Args:
        n_ivf_probe: best centroids per query token whose documents become candidates.
        n_centroid_interaction: best centroids per query token used for the approximate scores
            (PLAID's pruned centroid interaction). A document none of whose centroids is among them
            gets, for that query token, the score of the last one kept: an upper bound.
        centroid_score_threshold: optionally also keep every centroid scoring at least this for
            some query token (PLAID's ``t_cs``). Off by default: many ColBERT models put all their
            vectors in a narrow cone (every centroid scores above 0.7), where a fixed cosine
            threshold prunes nothing.
        n_full_scores: candidates scored by full centroid interaction (all their tokens); the best
            quarter (at least ``k``) are decompressed and scored exactly. Where that would be
            three quarters of them or more, all are decompressed, with no centroid pass: so at
            ``k >= 3 * n_full_scores / 4`` a smaller ``k`` returns the first hits of a larger one.
        rescore: of those, how many to score again against the fp16 vectors (0 = off; needs
            ``PLAIDConfig(keep_fp16=True)``). When it covers every decompressed candidate, they are
            scored on their fp16 vectors only, never on their codes: about as fast as scoring the
            codes, and every score is the exact MaxSim of the stored vectors.
        n_refine: with a residual quantiser (``PLAIDConfig(quantizer="rq")``), the decompressed
            candidates are scored on their first stage's bytes (a 2-bit code's cost) and the best
            ``n_refine`` again on all their bytes, like ``rescore`` (0 = every candidate on all
            its bytes). Ignored for other quantisers.
    """

    n_ivf_probe: int = 8
    n_centroid_interaction: int = 64
    centroid_score_threshold: float | None = None
    n_full_scores: int = 1024
    rescore: int = 0
    n_refine: int = 0

    def __post_init__(self) -> None:
        for name in ("n_ivf_probe", "n_centroid_interaction", "n_full_scores"):
            check_k(getattr(self, name), name)
        check_non_negative(self.rescore, "rescore")
        check_non_negative(self.n_refine, "n_refine")
        threshold = self.centroid_score_threshold
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
        ):
            raise InvalidInputError(f"centroid_score_threshold must be a finite float or None, got {threshold!r}.")


class PLAIDIndex(Index):
    """Compressed late-interaction index (ColBERTv2 residuals, PLAID search).

    The first :meth:`add` trains the codec on a sample of its tokens unless one is given, so add a
    representative batch first (thousands of documents), then stream the rest in chunks.

    Args:
        dim: vector dimension (inferred on first add when None).
        config: build settings (:class:`PLAIDConfig`).
        search_config: query settings (:class:`SearchConfig`).
        codec: a trained codec to reuse (e.g. from another index) instead of training one.
        device: where codes live and search runs (default CUDA when available, else CPU).
    """

    kind = "plaid"

    def __init__(
        self,
        dim: int | None = None,
        *,
        config: PLAIDConfig | None = None,
        search_config: SearchConfig | None = None,
        codec: ResidualCodec | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if config is not None and not isinstance(config, PLAIDConfig):
            raise InvalidInputError(f"config must be a PLAIDConfig or None, got {type(config).__name__}.")
        if search_config is not None and not isinstance(search_config, SearchConfig):
            raise InvalidInputError(
                f"search_config must be a SearchConfig or None, got {type(search_config).__name__}."
            )
        if codec is not None and not isinstance(codec, ResidualCodec):
            raise InvalidInputError(f"codec must be a trained ResidualCodec or None, got {type(codec).__name__}.")
        super().__init__(dim if codec is None else codec.dim)
        self.config = config or PLAIDConfig(nbits=codec.nbits if codec is not None else 2)
        self.search_config = search_config or SearchConfig()
        self.device = check_device(device) if device is not None else _default_device()
        if codec is not None and codec.nbits != self.config.nbits:
            raise InvalidInputError(f"codec has nbits={codec.nbits} but config asks for {self.config.nbits}.")
        self.codec = codec.to(self.device) if codec is not None else None
        # Storage, by slot: a document keeps its slot until compaction; positions (the base class's
        # dense numbering) map to slots through `_slots`.
        self._slots = torch.zeros(0, dtype=torch.long)
        self._alive = torch.zeros(0, dtype=torch.bool)
        self._lengths = torch.zeros(0, dtype=torch.long)
        self._pending = _PendingCodes()  # added since the last search, until consolidated
        # Token rows grow in place (capacity doubling), so consolidating an add copies only its rows.
        self._set_tokens(
            torch.zeros(0, dtype=torch.int16, device=self.device),
            torch.zeros((0, 0), dtype=torch.uint8, device=self.device),
        )
        # Inverted lists: the main ones, plus small ones over the documents added since they were
        # built (merged in at 1/_DELTA_FRACTION of their size), covering slots [0, _ivf_covers).
        self._ivf: InvertedLists | None = None
        self._ivf_delta: InvertedLists | None = None
        self._ivf_covers = 0
        self._fp16 = _Fp16Store() if self.config.keep_fp16 else None
        self._starts_of: tuple[torch.Tensor, torch.Tensor] | None = None  # (lengths, their starts), cached
        self._positions_of: tuple[torch.Tensor, torch.Tensor] | None = None  # (slots, each slot's position), cached
        self._warned_outgrown = False
        self._trained_error = 0.0
        self._added_error_sum = 0.0
        self._added_tokens = 0

    # ------------------------------------------------------------------ public extras
    @property
    def is_trained(self) -> bool:
        return self.codec is not None

    @property
    def n_tokens(self) -> int:
        """Stored token vectors, tombstoned documents included until compaction."""
        return int(self._lengths.sum())

    @property
    def drift(self) -> float:
        """Reconstruction error of tokens added after training, relative to the training sample's.

        1.0 means new documents compress as well as the training sample; above ~1.25 the centroids
        no longer fit the corpus and :meth:`retrain` will help.
        """
        if not self._added_tokens or not self._trained_error:
            return 1.0
        return self._added_error_sum / self._added_tokens / self._trained_error

    @property
    def needs_retraining(self) -> bool:
        """True when :attr:`drift` exceeds 1.25, or when the corpus has outgrown its centroids (see
        :meth:`retrain`).

        Outgrown: the default number of centroids for the tokens now stored is four times the one
        trained (a streamed build sizes them by its first add unless :meth:`train` is given the
        corpus size). Each centroid's inverted list then holds four times the documents it was
        sized for, and each search reads that many more postings.
        """
        return self.drift > 1.25 or self._outgrown()

    def _outgrown(self) -> bool:
        codec = self.codec
        if codec is None or self.config.n_centroids is not None:
            return False
        # n_tokens without summing every document's length: checked after every add.
        n_tokens = len(self._code_rows) + self._pending.n_rows
        return default_n_centroids(max(n_tokens, 1), self.config.nbits) >= 4 * codec.n_centroids

    def nbytes(self) -> dict[str, int]:
        """Bytes held in memory per part (the optional fp16 store lives on disk and is not counted)."""
        self._consolidate()
        offsets, slots = self._ivf_lists()
        codec = self._require_codec()
        return {
            "codes": self._codes.numel() * self._codes.element_size(),
            "residuals": self._residuals.numel(),
            "ivf": offsets.numel() * 8 + slots.numel() * 4,
            "doc_lengths": self._lengths.numel() * 8,
            "inverse_norms": (self._inverse_norm_offsets().numel() + len(self._first_norm_rows)) * 2,
            # float32 centroids in memory (half of that on disk, in fp16)
            "centroids": codec.centroids.numel() * 4,
        }

    def train(self, sample: torch.Tensor, n_tokens: int | None = None) -> None:
        """Train the codec on ``(n, dim)`` sample token vectors (done by the first add if not called).

        Args:
            sample: token vectors drawn from the corpus.
            n_tokens: the corpus size in tokens, which sets the default number of centroids
                (default: the sample size).
        """
        config = self.config
        sample = self._check_matrix(sample, "sample", self.dim).float()
        if sample.shape[0] > config.max_training_tokens:
            generator = torch.Generator().manual_seed(config.seed)
            sample = sample[torch.randperm(sample.shape[0], generator=generator)[: config.max_training_tokens]]
        n_centroids = config.n_centroids or default_n_centroids(n_tokens or sample.shape[0], config.nbits)
        n_centroids = min(n_centroids, max(1, sample.shape[0] // 4))
        self.codec = train_codec(
            sample,
            n_centroids=n_centroids,
            nbits=config.nbits,
            quantizer=config.quantizer,
            niters=config.kmeans_niters,
            seed=config.seed,
            device=self.device,
        )
        self.dim = self.codec.dim
        heldout = sample[torch.randperm(sample.shape[0], generator=torch.Generator().manual_seed(config.seed))[:4096]]
        self._trained_error = _reconstruction_error(self.codec, heldout.to(self.device))

    def retrain(self) -> None:
        """Train new centroids on the current corpus and re-encode every document.

        Uses the fp16 vectors when kept, else the decompressed ones (slightly noisier).
        """
        self.compact()
        if self.n_tokens == 0:
            return
        vectors = self._original_vectors(torch.arange(self.n_tokens))
        generator = torch.Generator().manual_seed(self.config.seed)
        sample = vectors[torch.randperm(vectors.shape[0], generator=generator)[: self.config.max_training_tokens]]
        self.codec = None
        self.train(sample, n_tokens=vectors.shape[0])
        codec = self._require_codec()
        codes, residuals = codec.compress(vectors.to(self.device))
        self._set_tokens(codes.to(torch.int16), residuals)
        self._ivf = None
        self._added_error_sum, self._added_tokens = 0.0, 0

    def compact(self) -> None:
        """Drop tombstoned documents from storage now (``save`` writes compacted files regardless)."""
        self._consolidate()
        if bool(self._alive.all()):
            return
        alive_slots = self._alive.nonzero().squeeze(1)
        rows = self._token_rows(alive_slots)
        if self._fp16 is not None:
            self._fp16 = self._fp16.select(rows.cpu())
        rows = rows.to(self.device)
        norms = self._norm_rows.view if len(self._norm_rows) == self._codes.shape[0] else None
        self._set_tokens(self._codes[rows], self._residuals[rows], norms[rows] if norms is not None else None)
        self._lengths = self._lengths[alive_slots]
        renumber = torch.full((self._alive.numel(),), -1, dtype=torch.long)
        renumber[alive_slots] = torch.arange(alive_slots.numel())
        self._slots = renumber[self._slots]
        self._alive = torch.ones(alive_slots.numel(), dtype=torch.bool)
        self._ivf = None

    def document_codes(self, ids: Sequence[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The stored codes of ``ids``: ``(centroid ids (n,) int16, residuals (n, dim * nbits / 8) uint8)`` on CPU.

        What a sync moves as is (:func:`lateint_plugins.qdrant.sync_to_qdrant`); unknown ids raise
        :class:`~lateint_plugins.core.errors.UnknownIdError`.
        """
        unknown = [i for i in ids if i not in self._positions]
        if unknown:
            raise UnknownIdError(f"ids not in the index: {unknown[:5]}; pass ids from index.ids.")
        self._consolidate()
        out = []
        for doc_id in ids:
            rows = self._token_rows(self._slots[self._positions[doc_id]].reshape(1)).to(self.device)
            out.append((self._codes[rows].cpu(), self._residuals[rows].cpu()))
        return out

    def add_codes(
        self,
        ids: Sequence[str],
        codes: Sequence[torch.Tensor],
        residuals: Sequence[torch.Tensor],
        metadata: Sequence[Metadata | None] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Add documents compressed by this index's codec as they are (no decompress and recompress).

        ``codes[i]`` are ``(n,)`` centroid ids and ``residuals[i]`` ``(n, dim * nbits / 8)`` uint8, as
        :meth:`document_codes` returns them (e.g. read back from Qdrant). Otherwise as :meth:`add`.
        An index keeping fp16 vectors (``keep_fp16``) refuses: there are none to keep.
        """
        codec = self._require_codec()
        if self._fp16 is not None:
            raise InvalidInputError(
                "add_codes: this index keeps fp16 vectors (keep_fp16=True); add embeddings instead."
            )
        ids, metas = self.check_new(ids, metadata, replace=replace)
        if not len(codes) == len(residuals) == len(ids):
            raise InvalidInputError(f"Got {len(ids)} ids, {len(codes)} codes and {len(residuals)} residuals.")
        for i, (c, r) in enumerate(zip(codes, residuals, strict=True)):
            if c.ndim != 1 or not 0 < c.shape[0] == r.shape[0] or c.dtype.is_floating_point:
                raise InvalidInputError(f"codes[{i}] must be (n >= 1,) integer ids with residuals[{i}] of n rows.")
            if int(c.min()) < 0 or int(c.max()) >= codec.n_centroids or r.dtype != torch.uint8:
                raise InvalidInputError(
                    f"codes[{i}] / residuals[{i}] do not fit this index's codec (ids, uint8 bytes)."
                )
            if r.ndim != 2 or r.shape[1] != codec.bytes_per_token:
                raise InvalidInputError(f"residuals[{i}] must have {codec.bytes_per_token} bytes per token.")
        if not ids:
            return
        replaced = [self._positions[i] for i in ids if i in self._positions]
        self._pending.append(torch.cat(list(codes)).to(torch.int16), torch.cat(list(residuals)))
        self._append_slots(torch.tensor([c.shape[0] for c in codes], dtype=torch.long))
        self._register(ids, metas, replaced)

    # ------------------------------------------------------------------ Index hooks
    def _add_vectors(self, vectors: list[torch.Tensor]) -> None:
        # All or nothing: compression appends to scratch files chunk by chunk, so a failure (or
        # Ctrl-C) part-way truncates them back and restores the codec and drift counters.
        saved = (self.codec, self.dim, self._trained_error, self._added_error_sum, self._added_tokens)
        pending_mark = self._pending.mark()
        fp16_mark = self._fp16.mark() if self._fp16 is not None else None
        try:
            self._compress_and_append(vectors)
        except BaseException:
            self.codec, self.dim, self._trained_error, self._added_error_sum, self._added_tokens = saved
            self._pending.rollback(pending_mark)
            if self._fp16 is not None and fp16_mark is not None:
                self._fp16.rollback(fp16_mark)
            raise
        if not self._warned_outgrown and self._outgrown():
            self._warned_outgrown = True
            logger.warning(
                "This PLAID index holds %d tokens but %d centroids (the default for that many is %d), so "
                "every search reads ever longer inverted lists; retrain() sizes them for the corpus (or "
                "call train(sample, n_tokens=<corpus size>) before a streamed build).",
                self.n_tokens,
                self._require_codec().n_centroids,
                default_n_centroids(self.n_tokens, self.config.nbits),
            )

    def _compress_and_append(self, vectors: list[torch.Tensor]) -> None:
        if self.config.pool_factor > 1:
            vectors = [pool_tokens(v.detach(), self.config.pool_factor) for v in vectors]
        # Work in chunks of documents so that only one chunk is ever expanded to float32: peak
        # memory is the compressed index plus one chunk, however many documents come in.
        lengths = torch.tensor([v.shape[0] for v in vectors], dtype=torch.long)
        n_tokens = int(lengths.sum())
        chunks, start, filled = [], 0, 0
        for i, n in enumerate(lengths.tolist()):
            filled += n
            if filled >= _ADD_CHUNK_TOKENS:
                chunks.append((start, i + 1))
                start, filled = i + 1, 0
        if start < len(vectors):
            chunks.append((start, len(vectors)))
        if self.codec is None:
            # Uniform token sample drawn chunk by chunk, to the same total size.
            generator = torch.Generator().manual_seed(self.config.seed)
            rate = min(1.0, self.config.max_training_tokens / n_tokens)
            parts = []
            for a, b in chunks:
                flat = torch.cat(vectors[a:b])
                picked = torch.randperm(flat.shape[0], generator=generator)[: math.ceil(flat.shape[0] * rate)]
                parts.append(flat[picked].float())
            sample = torch.cat(parts)
            del parts, flat
            self.train(sample, n_tokens=n_tokens)
            del sample
        codec = self._require_codec()
        for a, b in chunks:
            flat = torch.cat([v.detach() for v in vectors[a:b]]).to(self.device, torch.float32)
            codes, residuals = codec.compress(flat)
            if self._trained_error:
                # Up to 1,024 tokens a chunk, a sixteenth of a small one (a one-document add stays cheap).
                n_probe = min(1024, max(32, flat.shape[0] // 16))
                probe = torch.arange(0, flat.shape[0], max(1, flat.shape[0] // n_probe), device=self.device)
                error = _reconstruction_error(codec, flat[probe], codes[probe], residuals[probe])
                self._added_error_sum += error * flat.shape[0]
                self._added_tokens += flat.shape[0]
            self._pending.append(codes.to(torch.int16), residuals)
            if self._fp16 is not None:
                self._fp16.append(flat)
        self._append_slots(lengths)

    def _append_slots(self, lengths: torch.Tensor) -> None:
        """Storage slots for documents of ``lengths (n,)`` tokens whose codes were just appended."""
        first_slot = self._alive.numel()
        new_lengths = torch.cat([self._lengths, lengths])
        new_alive = torch.cat([self._alive, torch.ones(lengths.numel(), dtype=torch.bool)])
        new_slots = torch.cat([self._slots, torch.arange(first_slot, first_slot + lengths.numel())])
        self._lengths, self._alive, self._slots = new_lengths, new_alive, new_slots

    def _remove_positions(self, drop: torch.Tensor) -> None:
        self._alive[self._slots[drop]] = False
        self._slots = self._slots[~drop]

    def _search(
        self, queries: list[torch.Tensor], k: int, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._consolidate()
        codec = self._require_codec()
        allowed = self._alive.clone()
        if candidates is not None:
            allowed[:] = False
            allowed[self._slots[candidates]] = True
        n_allowed = len(self) if candidates is None else int(allowed.sum())
        cfg = self.search_config
        depth = min(max(k, cfg.rescore) if self._fp16 is not None else k, n_allowed)
        search = _Search(self, codec, allowed.to(self.device), n_allowed, depth)
        slot_to_position = self._slot_positions()

        # On a GPU, queries of one length are searched together, a batch at a time (each stage one
        # set of kernels for the whole batch). On a CPU a batch's arrays outgrow the caches and cost
        # more than the operations they save, so queries go one at a time, spread over the cores.
        batches: list[list[int]] = []
        by_length: dict[int, list[int]] = {}
        for i, query in enumerate(queries):
            by_length.setdefault(query.shape[0], []).append(i)
        for length, members in by_length.items():
            step = search.batch_size(length)
            batches += [members[first : first + step] for first in range(0, len(members), step)]

        def run(batch: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
            slots, scores = search.run(torch.stack([queries[i] for i in batch]).to(self.device, torch.float32))
            out = []
            for row in range(len(batch)):
                found = slots[row] >= 0
                chosen_slots, chosen_scores = slots[row][found].cpu(), scores[row][found].cpu()
                out.append((chosen_scores[:k], slot_to_position[chosen_slots[:k]]))
            return out

        threads = torch.get_num_threads()
        workers = min(len(batches), threads) if self.device.type == "cpu" else 1
        if workers > 1:
            # One query per core: each worker's operations run single-threaded (torch's thread count
            # is per thread once set; the setting for threads started later is restored after), and
            # torch releases the GIL inside each operation.
            try:
                with ThreadPoolExecutor(
                    workers, thread_name_prefix="lateint-plaid", initializer=torch.set_num_threads, initargs=(1,)
                ) as pool:
                    found = list(pool.map(run, batches))
            finally:
                torch.set_num_threads(threads)
        else:
            found = [run(batch) for batch in batches]
        all_scores: list[torch.Tensor] = [torch.zeros(0)] * len(queries)
        all_positions: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * len(queries)
        for batch, results in zip(batches, found, strict=True):
            for i, (scores, positions) in zip(batch, results, strict=True):
                all_scores[i], all_positions[i] = scores, positions
        width = max(s.numel() for s in all_scores)
        # Rows can be shorter than k (few candidates); pad for stacking, and trim in the caller.
        return _stack_ragged(all_scores, width, -math.inf), _stack_ragged(all_positions, width, -1)

    # ------------------------------------------------------------------ persistence
    def _write(self, folder: Path) -> dict[str, Any]:
        self.compact()
        codec = self._require_codec() if len(self) else self.codec
        _io.save_array(folder, "codes", self._codes.cpu().numpy())
        _io.save_array(folder, "residuals", self._residuals.cpu().numpy())
        _io.save_array(folder, "doc_lengths", self._lengths.numpy().astype(np.int32))
        offsets, slots = self._ivf_lists() if codec is not None else (torch.zeros(1), torch.zeros(0))
        _io.save_array(folder, "ivf_offsets", offsets.cpu().numpy().astype(np.int64))
        _io.save_array(folder, "ivf_slots", slots.cpu().numpy().astype(np.int32))
        if codec is not None:
            _io.save_array(folder, "centroids", codec.centroids.cpu().numpy().astype(np.float16))
            _io.save_array(folder, "codebooks", codec.codebooks.cpu().numpy())
            _io.save_array(folder, "rotation", codec.rotation.cpu().numpy())
            if codec.levels is not None:
                _io.save_array(folder, "levels", codec.levels.cpu().numpy())
        if self._fp16 is not None:
            self._fp16.save(folder / "tokens_fp16.npy", self.dim or 0)
        return {
            "config": asdict(self.config),
            "search_config": asdict(self.search_config),
            "trained": codec is not None,
            "n_tokens": self.n_tokens,
            "trained_error": self._trained_error,
            "added_error_sum": self._added_error_sum,
            "added_tokens": self._added_tokens,
        }

    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any], **options: Any) -> PLAIDIndex:
        _io.check_fields(manifest["config"], _CONFIG_FIELDS, "PLAID manifest field 'config'")
        _io.check_fields(manifest["search_config"], _SEARCH_CONFIG_FIELDS, "PLAID manifest field 'search_config'")
        try:
            config = PLAIDConfig(**manifest["config"])
            search_config = options.pop("search_config", None) or SearchConfig(**manifest["search_config"])
        except (TypeError, InvalidInputError) as exc:
            raise CorruptIndexError(f"PLAID manifest has bad settings: {exc}") from exc
        dim = manifest["dim"]
        if dim is not None and (dim * config.nbits) % 8:
            raise CorruptIndexError(f"PLAID manifest: dim {dim} with nbits {config.nbits} cannot be byte-packed.")
        return cls(dim, config=config, search_config=search_config, **options)

    def _read(self, folder: Path, manifest: dict[str, Any]) -> None:
        # Every header is checked against the manifest before its data is read, and every array that
        # indexes another is range-checked here, so a damaged folder fails now and not at a search.
        n_docs, n_tokens, dim, nbits = len(self._ids), manifest["n_tokens"], self.dim or 0, self.config.nbits
        lengths = _io.load_array(folder, "doc_lengths", dtype=np.int32, shape=(n_docs,)).astype(np.int64)
        if int(lengths.sum()) != n_tokens or (n_docs and int(lengths.min()) < 1):
            raise CorruptIndexError(
                f"{folder / 'doc_lengths.npy'}: document lengths must be >= 1 and sum to n_tokens={n_tokens}; "
                "the index is damaged."
            )
        codes = _io.load_array(folder, "codes", dtype=np.int16, shape=(n_tokens,), mmap=True)
        residuals = _io.load_array(folder, "residuals", dtype=np.uint8, shape=(n_tokens, dim * nbits // 8), mmap=True)
        if manifest["trained"]:
            if self.dim is None:
                raise CorruptIndexError(f"{folder}: a trained PLAID index must record 'dim' in its manifest.")
            centroids_shape = _io.read_array_header(folder / "centroids.npy")[0]
            n_centroids = centroids_shape[0] if len(centroids_shape) == 2 else 0
            if not 1 <= n_centroids <= 32768:
                raise CorruptIndexError(f"{folder / 'centroids.npy'}: {n_centroids} centroids, expected 1 to 32768.")
            centroids = _io.load_array(folder, "centroids", dtype=np.float16, shape=(n_centroids, dim))
            stages = stages_for(nbits, self.config.quantizer)
            codebooks = _io.load_array(
                folder, "codebooks", dtype=np.float32, shape=(dim * nbits // 8, 256, 8 * stages // nbits)
            )
            rotation = _io.load_array(folder, "rotation", dtype=np.float32, shape=(dim, dim))
            levels = (
                _io.load_array(folder, "levels", dtype=np.float32, shape=(dim, 2**nbits))
                if self.config.quantizer == "scalar"
                else None
            )
            for name, array in (("centroids", centroids), ("codebooks", codebooks), ("rotation", rotation)):
                if _io.has_non_finite(array):
                    raise CorruptIndexError(f"{folder / (name + '.npy')} holds NaN or infinite values.")
            try:
                self.codec = ResidualCodec(
                    torch.from_numpy(centroids.astype(np.float32)),
                    torch.from_numpy(codebooks),
                    torch.from_numpy(rotation),
                    nbits,
                    torch.from_numpy(levels) if levels is not None else None,
                    stages,
                ).to(self.device)
            except InvalidInputError as exc:
                raise CorruptIndexError(f"{folder}: the codec files do not fit together ({exc}).") from exc
            if n_tokens and (int(codes.min()) < 0 or int(codes.max()) >= n_centroids):
                raise CorruptIndexError(
                    f"{folder / 'codes.npy'}: centroid ids must be in [0, {n_centroids}); the index is damaged."
                )
            offsets = _io.load_array(folder, "ivf_offsets", dtype=np.int64, shape=(n_centroids + 1,))
            n_pairs = int(offsets[-1])
            steps = np.diff(offsets)
            if int(offsets[0]) != 0 or (steps < 0).any() or n_pairs > n_tokens:
                raise CorruptIndexError(
                    f"{folder / 'ivf_offsets.npy'}: inverted-list offsets must rise from 0 to at most "
                    f"n_tokens={n_tokens}; the index is damaged."
                )
            ivf_slots = _io.load_array(folder, "ivf_slots", dtype=np.int32, shape=(n_pairs,))
            # Within a list, slots strictly increase (each document once); lists may restart anywhere.
            rising = np.diff(ivf_slots.astype(np.int64)) > 0
            rising[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < n_pairs)] - 1] = True
            if n_pairs and (int(ivf_slots.min()) < 0 or int(ivf_slots.max()) >= n_docs or not rising.all()):
                raise CorruptIndexError(
                    f"{folder / 'ivf_slots.npy'}: inverted lists must hold increasing document slots in "
                    f"[0, {n_docs}); the index is damaged."
                )
            self._ivf = InvertedLists(
                torch.from_numpy(offsets).to(self.device), torch.from_numpy(ivf_slots).to(self.device)
            )
            self._ivf_covers = n_docs
        elif n_docs:
            raise CorruptIndexError(f"{folder}: an untrained PLAID index cannot hold documents; the index is damaged.")
        # Codes and residuals are the compressed index itself (26 B/token at nbits=2): read them whole.
        self._set_tokens(
            torch.from_numpy(np.array(codes)).to(self.device), torch.from_numpy(np.array(residuals)).to(self.device)
        )
        self._lengths = torch.from_numpy(lengths)
        self._alive = torch.ones(n_docs, dtype=torch.bool)
        self._slots = torch.arange(n_docs)
        if self.config.keep_fp16:
            self._fp16 = _Fp16Store.open(folder / "tokens_fp16.npy", n_tokens, dim)
        self._trained_error = float(manifest.get("trained_error", 0.0))
        self._added_error_sum = float(manifest.get("added_error_sum", 0.0))
        self._added_tokens = int(manifest.get("added_tokens", 0))

    # ------------------------------------------------------------------ internals
    def _prepare_search(self) -> None:
        """Take in the pending codes, extend the inverted lists and the inverse norms, as a search would."""
        if self.codec is not None:
            self._inverted_lists()  # consolidates first
            self._inverse_norm_offsets()
            self._token_starts()

    def _require_codec(self) -> ResidualCodec:
        if self.codec is None:
            raise InvalidInputError("The PLAID index is not trained yet: add documents (or call train) first.")
        return self.codec

    def _consolidate(self) -> None:
        """Move the codes added since the last search from their scratch files into the index arrays.

        They are read straight from disk into the spare capacity of the token rows (which double
        when full), so an add costs its own rows, and a streamed build peaks at one index.
        """
        n_new = self._pending.n_rows
        if not n_new:
            return
        n_old = self._codes.shape[0]
        if n_old == 0:  # the residual width is known from the first rows
            self._residual_rows = GrowthBuffer(torch.uint8, (self._pending.width,), device=self.device)
        try:
            self._pending.drain_into(self._code_rows.claim(n_new), self._residual_rows.claim(n_new))
        except BaseException:
            self._code_rows.truncate(n_old)
            self._residual_rows.truncate(n_old)
            raise

    @property
    def _codes(self) -> torch.Tensor:
        """Centroid id of every stored token ``(n_tokens,)`` int16 (a view of the growing rows)."""
        return self._code_rows.view

    @property
    def _residuals(self) -> torch.Tensor:
        """Packed residuals of every stored token ``(n_tokens, bytes_per_token)`` uint8."""
        return self._residual_rows.view

    def _set_tokens(
        self, codes: torch.Tensor, residuals: torch.Tensor, norm_offsets: torch.Tensor | None = None
    ) -> None:
        """Replace the stored tokens (their inverse norms are recomputed lazily unless given)."""
        self._code_rows = GrowthBuffer.of(codes)
        self._residual_rows = GrowthBuffer.of(residuals)
        self._norm_rows = (
            GrowthBuffer.of(norm_offsets)
            if norm_offsets is not None
            else GrowthBuffer(torch.float16, device=self.device)
        )
        self._first_norm_rows = GrowthBuffer(torch.float16, device=self.device)

    def _inverse_norm_offsets(self) -> torch.Tensor:
        """``(n_tokens,)`` inverse norms of the decompressed tokens minus 1, computed once per token.

        Kept as float16 offsets from 1 (2 bytes a token): the norms are close to 1, so the offset's
        relative error of 2**-11 is an error of about 1e-5 in the norm, where float16 norms would
        be off by up to 5e-4 and reorder near-ties.
        """
        return self._norm_offsets_of(self._norm_rows, self._require_codec().bytes_per_token)

    def _first_stage_norm_offsets(self) -> torch.Tensor:
        """As :meth:`_inverse_norm_offsets`, of the tokens decoded from their first stage's bytes alone."""
        return self._norm_offsets_of(self._first_norm_rows, self._require_codec().bytes_per_stage)

    def _norm_offsets_of(self, rows: GrowthBuffer, n_bytes: int) -> torch.Tensor:
        done, n_tokens = len(rows), self._codes.shape[0]
        if done < n_tokens:
            codec = self._require_codec()
            rows.append(codec.inverse_norms(self._codes[done:], self._residuals[done:, :n_bytes]) - 1)
        return rows.view

    def _token_starts(self) -> torch.Tensor:
        """Row of each slot's first token ``(n_slots,)`` (cached until the lengths change)."""
        cached = self._starts_of
        if cached is None or cached[0] is not self._lengths:  # lengths are replaced, never edited in place
            cached = (self._lengths, torch.cumsum(self._lengths, 0) - self._lengths)
            self._starts_of = cached
        return cached[1]

    def _slot_positions(self) -> torch.Tensor:
        """Each slot's document position in ``_ids``, -1 for a tombstone ``(n_slots,)`` (cached until the
        slots change: ``_slots`` is replaced, never edited in place)."""
        cached = self._positions_of
        if cached is None or cached[0] is not self._slots:
            positions = torch.full((self._alive.numel(),), -1, dtype=torch.long)
            positions[self._slots] = torch.arange(self._slots.numel())
            cached = (self._slots, positions)
            self._positions_of = cached
        return cached[1]

    def _token_rows(self, slots: torch.Tensor) -> torch.Tensor:
        slots = slots.cpu()
        return ragged_rows(self._token_starts()[slots], self._lengths[slots])

    def _inverted_lists(self) -> list[InvertedLists]:
        """The inverted lists covering every stored document: the main ones, and those of recent adds.

        After adds, only the new documents' lists are built and merged into the recent ones; those
        merge into the main lists once they reach ``1 / _DELTA_FRACTION`` of their postings, so a
        one-document add never rebuilds (or copies) the lists of the whole corpus.
        """
        self._consolidate()
        codec = self._require_codec()
        n_slots = self._lengths.numel()
        if self._ivf is None:
            self._ivf = InvertedLists.build(self._codes, self._lengths, codec.n_centroids)
            self._ivf_delta, self._ivf_covers = None, n_slots
        elif self._ivf_covers < n_slots:
            first = self._ivf_covers
            new = InvertedLists.build(
                self._codes[int(self._lengths[:first].sum()) :],
                self._lengths[first:],
                codec.n_centroids,
                first_slot=first,
            )
            delta = new if self._ivf_delta is None else self._ivf_delta.merge(new)
            if delta.n_postings * _DELTA_FRACTION >= self._ivf.n_postings:
                self._ivf, self._ivf_delta = self._ivf.merge(delta), None
            else:
                self._ivf_delta = delta
            self._ivf_covers = n_slots
        return [self._ivf] if self._ivf_delta is None else [self._ivf, self._ivf_delta]

    def _ivf_lists(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All inverted lists as one CSR: ``offsets (n_centroids + 1,)`` into ``slots (pairs,)`` int32.

        Each (centroid, document) pair appears once however many of the document's tokens share
        the centroid.
        """
        main, *recent = self._inverted_lists()
        if recent:
            main = main.merge(recent[0])
            self._ivf, self._ivf_delta = main, None
        return main.offsets, main.slots

    def _original_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        if self._fp16 is not None:
            return self._fp16.rows(rows).float()
        codec = self._require_codec()
        rows = rows.to(self.device)
        return codec.decompress(self._codes[rows], self._residuals[rows]).cpu()


class _Search:
    """One search call's stages, each run for a batch of equal-length queries at once.

    Every stage yields, per query, a row of document slots (``-1`` where a query has fewer), so a
    batch is a handful of tensor operations whatever its size; query-document pairs are scored
    ``_PAIR_TOKENS`` tokens at a time, so memory stays bounded.
    """

    def __init__(
        self, index: PLAIDIndex, codec: ResidualCodec, allowed: torch.Tensor, n_allowed: int, depth: int
    ) -> None:
        self.index, self.codec, self.allowed, self.depth = index, codec, allowed, depth
        self.config = index.search_config
        self.n_slots = allowed.numel()
        self.exhaustive = n_allowed <= self.config.n_full_scores
        # Every lazily built part is built now: batches may then run in several threads.
        self.lists = [] if self.exhaustive else index._inverted_lists()
        self.norm_offsets = index._inverse_norm_offsets()
        # A residual quantiser scores on its first stage, then refines the best (SearchConfig.n_refine).
        self.refine = codec.stages > 1 and self.config.n_refine > 0
        self.first_norm_offsets = index._first_stage_norm_offsets() if self.refine else None
        self.token_starts = index._token_starts()

    def batch_size(self, q_len: int) -> int:
        """Queries per batch: 1 on a CPU; on a GPU as many as keep the ``(batch, slots)`` candidate
        map and the postings read bounded."""
        if self.allowed.device.type == "cpu":
            return 1
        if self.exhaustive:
            return _QUERY_BATCH
        cfg = self.config
        n_keep = min(max(cfg.n_centroid_interaction, cfg.n_ivf_probe), self.codec.n_centroids)
        postings = q_len * n_keep * sum(ivf.n_postings for ivf in self.lists) / self.codec.n_centroids
        return max(
            1,
            min(
                _QUERY_BATCH,
                int(_TABLE_CELLS / max(1, self.n_slots)),
                int(_BATCH_POSTINGS / max(1.0, postings)),
            ),
        )

    def run(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best ``depth`` slots and their scores per query of ``(n_queries, q_len, dim)``, best first."""
        centroid_scores = queries @ self.codec.centroids.T  # (n_queries, q_len, n_centroids)
        # Built on first use: a search that scores only original vectors never needs them.
        tables = functools.cache(lambda: self.codec.query_tables(queries, centroid_scores))
        if self.exhaustive:  # few documents allowed (a narrow filter or a small index): score them all
            chosen = self.allowed.nonzero().squeeze(1).expand(queries.shape[0], -1)
        else:
            chosen = self._probe(centroid_scores, tables)
        codes, residuals = self.index._codes, self.index._residuals

        def decompressed(first_stage: bool) -> Callable[[torch.Tensor, int], torch.Tensor]:
            stored = residuals[:, : self.codec.bytes_per_stage] if first_stage else residuals
            norms = cast(torch.Tensor, self.first_norm_offsets) if first_stage else self.norm_offsets
            return lambda rows, query: tables().token_scores(
                codes.index_select(0, rows),
                stored.index_select(0, rows),
                norms.index_select(0, rows).float().add_(1),
                query,
            )

        fp16 = self.index._fp16
        rescore = self.config.rescore if fp16 is not None else 0

        def original(rows: torch.Tensor, query: int) -> torch.Tensor:
            vectors = cast(_Fp16Store, fp16).rows(rows).to(queries.device, torch.float32)
            return vectors @ queries[query].T

        # When every candidate would be re-scored, they are scored on their original vectors only.
        direct = rescore > 0 and rescore >= chosen.shape[1]
        scores = self._maxsim(chosen, original if direct else decompressed(self.refine))
        keep = max(self.depth, self.config.n_refine) if self.refine else self.depth
        top = torch.topk(scores, min(keep, scores.shape[1]), dim=1)
        slots, values = chosen.gather(1, top.indices), top.values
        slots[values == -math.inf] = -1
        if self.refine and not direct:  # the best n_refine again on all their bytes
            slots, values = self._rerank_head(slots, values, self.config.n_refine, decompressed(False))
        if rescore and not direct:  # the best rescore again on their original vectors
            slots, values = self._rerank_head(slots, values, rescore, original)
        return slots[:, : self.depth], values[:, : self.depth]

    def _rerank_head(
        self,
        slots: torch.Tensor,
        values: torch.Tensor,
        n: int,
        token_scores: Callable[[torch.Tensor, int], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` of each row of ``slots`` (best first) scored again by ``token_scores`` and
        re-ranked among themselves; the rest keep their places and scores."""
        better = self._maxsim(slots[:, :n], token_scores)
        order = torch.sort(better, dim=1, descending=True, stable=True)
        slots = torch.cat([slots[:, :n].gather(1, order.indices), slots[:, n:]], dim=1)
        return slots, torch.cat([order.values, values[:, n:]], dim=1)

    def _probe(self, centroid_scores: torch.Tensor, tables: Callable[[], QueryTables]) -> torch.Tensor:
        """Stages 1-3: per query, the slots to decompress ``(n_queries, <=max(depth, n_full_scores // 4))``."""
        cfg = self.config
        n_queries, q_len, n_centroids = centroid_scores.shape
        device = centroid_scores.device
        n_keep = min(max(cfg.n_centroid_interaction, cfg.n_ivf_probe), n_centroids)
        kept = centroid_scores.topk(n_keep, dim=2)  # (n_queries, q_len, n_keep), best first
        # Per query token, no unkept centroid scores above its floor; with a threshold, every
        # centroid at or above it is kept too. Pair = (row, kept centroid), a row being one query
        # token of one query; pairs go rank by rank (every row's best centroid, then every row's
        # second best, ...), so the n_ivf_probe best ranks, which make documents candidates, come first.
        floor = kept.values[..., -1]
        pair_row = torch.arange(n_queries * q_len, device=device).repeat(n_keep)
        pair_centroid = kept.indices.permute(2, 0, 1).reshape(-1)
        pair_score = kept.values.permute(2, 0, 1).reshape(-1)
        n_probed = n_queries * q_len * min(cfg.n_ivf_probe, n_keep)
        if cfg.centroid_score_threshold is not None:
            extra = (centroid_scores >= cfg.centroid_score_threshold) & (centroid_scores < floor[..., None])
            query, token, centroid = extra.nonzero(as_tuple=True)
            pair_row = torch.cat([pair_row, query * q_len + token])
            pair_centroid = torch.cat([pair_centroid, centroid])
            pair_score = torch.cat([pair_score, centroid_scores[query, token, centroid]])
            floor = torch.minimum(floor, torch.tensor(cfg.centroid_score_threshold, device=device))
        chosen = self._approximate_top(pair_row, pair_centroid, pair_score, n_probed, floor)
        # Stage 3, full centroid interaction: every token of the chosen documents scored by its
        # centroid; the best quarter go on to decompression. When at least three quarters would go
        # on (a large k), all do: decompressing the rest costs less than scoring every centroid.
        n_decompress = max(self.depth, cfg.n_full_scores // 4)
        if 4 * n_decompress >= 3 * chosen.shape[1]:
            return chosen
        codes = self.index._codes
        scores = self._maxsim(chosen, lambda rows, query: tables().centroid_scores(codes.index_select(0, rows), query))
        columns = _top_columns(scores, n_decompress)
        return torch.where(columns >= 0, chosen.gather(1, columns.clamp(min=0)), -1)

    def _approximate_top(
        self,
        pair_row: torch.Tensor,
        pair_centroid: torch.Tensor,
        pair_score: torch.Tensor,
        n_probed: int,
        floor: torch.Tensor,
    ) -> torch.Tensor:
        """Stages 1 and 2: per query, the ``n_full_scores`` best candidates by approximate score,
        ``(n_queries, n)`` slots in slot order, ``-1`` where a query has fewer.

        A document is a candidate of a query when the list of one of its first ``n_probed`` pairs
        holds it. Its approximate score sums, over the query tokens, the best kept centroid of the
        token whose list holds it, else the token's ``floor (n_queries, q_len)``. Each posting is one
        scalar max into a ``(q_len, candidates)`` table, reached through a ``(query, slot) ->
        column`` map: the work and the floats follow the postings read, not the size of the corpus.
        """
        n_queries, q_len = floor.shape
        device = floor.device
        # Each posting's (query, slot) key; the probed pairs' postings are each list's first ones.
        pair_base = (pair_row // q_len) * self.n_slots
        keys, probed, owners = [], [], []
        for ivf in self.lists:
            slots, owner = ivf.postings(pair_centroid)
            key = slots if n_queries == 1 else pair_base.index_select(0, owner) + slots
            keys.append(key)
            owners.append(owner)
            probed.append(key[: int(torch.searchsorted(owner, n_probed))])
        key, owner = (keys[0], owners[0]) if len(keys) == 1 else (torch.cat(keys), torch.cat(owners))
        head = probed[0] if len(probed) == 1 else torch.cat(probed)
        # Columns through a (query, slot) map, 0 for documents that are not candidates (a spare
        # column). The candidates come without sorting the postings: each probed posting writes
        # its number into the map, and the one whose number stays there stands for its key.
        column = torch.zeros(n_queries * self.n_slots, dtype=torch.int32, device=device)
        number = torch.arange(1, head.numel() + 1, dtype=torch.int32, device=device)
        column[head] = number
        candidates = head[column.index_select(0, head) == number].long().sort().values  # each query's in slot order
        candidates = candidates[self.allowed[candidates % self.n_slots]]
        n_candidates = candidates.numel()
        column[head] = 0
        column[candidates] = torch.arange(1, n_candidates + 1, dtype=torch.int32, device=device)
        query = candidates // self.n_slots
        # (q_len, 1 + candidates): per query token, each candidate's best kept centroid, else the floor.
        best = torch.cat([floor.new_zeros((q_len, 1)), floor.index_select(0, query).T], dim=1)
        cell = ((pair_row % q_len) * (n_candidates + 1)).index_select(0, owner) + column.index_select(0, key)
        best.view(-1).scatter_reduce_(0, cell, pair_score.index_select(0, owner), reduce="amax")
        approx = best[:, 1:].sum(0)
        # One row per query: each query's candidates are a run of the sorted (query, slot) keys.
        counts = torch.bincount(query, minlength=n_queries)
        within = torch.arange(n_candidates, device=device) - (torch.cumsum(counts, 0) - counts).index_select(0, query)
        n = min(self.config.n_full_scores, self.n_slots)
        width = max(int(counts.max()), n)
        scores = torch.full((n_queries, width), -math.inf, device=device)
        scores[query, within] = approx
        slot_at = torch.full((n_queries, width), -1, dtype=torch.long, device=device)
        slot_at[query, within] = candidates % self.n_slots
        columns = _top_columns(scores, n)
        return torch.where(columns >= 0, slot_at.gather(1, columns.clamp(min=0)), -1)

    def _maxsim(self, chosen: torch.Tensor, token_scores: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        """MaxSim of each query with each of its ``chosen (n_queries, width)`` slots; ``-inf`` where the slot is -1.

        ``token_scores(rows, query)`` gives the ``(n, q_len)`` cosines of the tokens at ``rows``
        with the query tokens of the batch's query ``query``.

        Pairs are scored query by query (its lookup tables stay in cache), a run of at most about
        ``_PAIR_TOKENS`` tokens at a time, each run padded to its longest document by repeating
        every document's last token (a maximum is unchanged by repeats): one lookup and one
        reduction per run. When one query's documents need several runs, they go shortest first,
        so that each run pads little.
        """
        device = chosen.device
        out = torch.full(chosen.shape, -math.inf, device=device)
        for query, row in enumerate(chosen):
            columns = (row >= 0).nonzero().squeeze(1)
            if not columns.numel():
                continue
            slots = row.index_select(0, columns).cpu()
            lengths = self.index._lengths[slots]
            runs = [(0, slots.numel())]
            if int(lengths.sum()) > _PAIR_TOKENS:
                order = torch.argsort(lengths)
                columns, slots, lengths = columns[order.to(device)], slots[order], lengths[order]
                runs = _chunks(torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)]), _PAIR_TOKENS)
            starts = self.token_starts[slots]
            for a, b in runs:
                run_lengths = lengths[a:b, None]
                longest = int(run_lengths.max())
                rows = starts[a:b, None] + torch.minimum(torch.arange(longest), run_lengths - 1)  # (pairs, longest)
                scores = token_scores(rows.view(-1).to(device), query)
                out[query, columns[a:b]] = scores.view(b - a, longest, -1).amax(1).sum(1)
        return out


def _top_columns(values: torch.Tensor, n: int) -> torch.Tensor:
    """Per row of ``values (rows, cols)``, the columns of its ``n`` largest finite values, in column order.

    Ties at the cut go to the lower columns (so the choice does not depend on anything between
    them, such as tombstoned slots); ``-1`` pads rows with fewer than ``n`` finite values.
    """
    kth = values.topk(n, dim=1).values[:, -1:]
    take = values > kth
    tied = values == kth
    take |= tied & (tied.cumsum(1) <= n - take.sum(1, keepdim=True))
    take &= values > -math.inf
    row, column = take.nonzero(as_tuple=True)
    counts = take.sum(1)
    out = torch.full((values.shape[0], n), -1, dtype=torch.long, device=values.device)
    out[row, torch.arange(row.numel(), device=values.device) - (torch.cumsum(counts, 0) - counts)[row]] = column
    return out


def _reconstruction_error(
    codec: ResidualCodec, x: torch.Tensor, codes: torch.Tensor | None = None, residuals: torch.Tensor | None = None
) -> float:
    """Mean ``1 - cos(x, decompress(compress(x)))``."""
    if codes is None or residuals is None:
        codes, residuals = codec.compress(x)
    return float((1 - (codec.decompress(codes, residuals) * x.float()).sum(-1)).mean())


def _stack_ragged(rows: list[torch.Tensor], width: int, fill: float) -> torch.Tensor:
    out = torch.full((len(rows), width), fill, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, : row.numel()] = row
    return out


class _PendingCodes:
    """Centroid ids and residuals added since the last search, until the index takes them in.

    A few rows (up to ``_PENDING_RAM_ROWS``) wait in memory, so a small add touches no file. More
    go to scratch files, not RAM: holding each added chunk until consolidation would need the
    whole index twice at that moment (and many mid-sized blocks left between temporaries fragment
    the heap). Rows are in memory or all in the files, never split between them.
    """

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # in memory while there is no _dir
        self.n_rows = 0
        self.width = 0

    def mark(self) -> tuple[int, int]:
        """The current ``(n_rows, width)``, for :meth:`rollback`."""
        return self.n_rows, self.width

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget the rows appended since :meth:`mark` (truncates the scratch files back)."""
        n_rows, width = mark
        if self._dir is not None:
            for name, row_bytes in (("codes", 2), ("residuals", self.width)):
                file = Path(self._dir.name) / name
                if file.exists():
                    os.truncate(file, n_rows * row_bytes)
        else:
            kept, total = [], 0
            for codes, residuals in self._rows:
                take = min(codes.shape[0], n_rows - total)
                if take <= 0:
                    break
                kept.append((codes[:take], residuals[:take]))
                total += take
            self._rows = kept
        self.n_rows, self.width = n_rows, width

    def append(self, codes: torch.Tensor, residuals: torch.Tensor) -> None:
        """Add ``codes (n,)`` int16 and ``residuals (n, width)`` uint8."""
        codes, residuals = codes.cpu(), residuals.cpu()
        if self._dir is None and self.n_rows + codes.shape[0] <= _PENDING_RAM_ROWS:
            self._rows.append((codes, residuals))
        else:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="lateint-plaid-")
            parts, self._rows = [*self._rows, (codes, residuals)], []  # what waited in memory goes first
            for name, column in (("codes", 0), ("residuals", 1)):
                with open(Path(self._dir.name) / name, "ab") as f:
                    for part in parts:
                        part[column].numpy().tofile(f)
        self.n_rows += codes.shape[0]
        self.width = residuals.shape[1]

    def drain_into(self, codes: torch.Tensor, residuals: torch.Tensor) -> None:
        """Move every pending row into ``codes (n_rows,)`` and ``residuals (n_rows, width)``, then forget them."""
        if self._rows:
            codes.copy_(torch.cat([c for c, _ in self._rows]))
            residuals.copy_(torch.cat([r for _, r in self._rows]))
        elif self._dir is not None:
            for name, out in (("codes", codes), ("residuals", residuals)):
                with open(Path(self._dir.name) / name, "rb") as f:
                    if out.device.type == "cpu":  # straight into the index's memory
                        target = out.numpy().data.cast("B")
                        if f.readinto(target) != len(target):
                            raise CorruptIndexError(f"The scratch file of added {name} was cut short; add them again.")
                    else:
                        out.copy_(torch.from_numpy(np.fromfile(f, dtype=_NUMPY_DTYPES[out.dtype])).view(out.shape))
            self._dir.cleanup()
        self._dir, self._rows, self.n_rows = None, [], 0


_NUMPY_DTYPES = {torch.int16: np.int16, torch.uint8: np.uint8}


class _Fp16Store:
    """Original vectors in fp16, appended to a scratch file and read through a memory map.

    After a load, the saved ``tokens_fp16.npy`` is the read-only base; later additions go to a
    scratch file. Rows are addressed by token row across both.
    """

    def __init__(self, base: np.ndarray | None = None) -> None:
        self._dim = base.shape[1] if base is not None else 0
        self._base = _tensor_view(base) if base is not None else torch.empty((0, self._dim), dtype=torch.float16)
        self._scratch_dir = tempfile.TemporaryDirectory(prefix="lateint-fp16-")
        self._scratch_path = Path(self._scratch_dir.name) / "tokens.f16"
        self._scratch_rows = 0
        self._scratch_map: torch.Tensor | None = None

    @classmethod
    def open(cls, path: Path, n_tokens: int, dim: int) -> _Fp16Store:
        base = _io.load_array(path.parent, path.stem, dtype=np.float16, shape=(n_tokens, dim), mmap=True)
        return cls(base)

    @property
    def n_base(self) -> int:
        return self._base.shape[0]

    def mark(self) -> tuple[int, int]:
        """The current ``(scratch rows, dim)``, for :meth:`rollback`."""
        return self._scratch_rows, self._dim

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget the rows appended since :meth:`mark`."""
        rows, dim = mark
        self._scratch_map = None  # unmapped before the file shrinks under it
        if self._scratch_path.exists():
            os.truncate(self._scratch_path, rows * dim * 2)
        self._scratch_rows, self._dim = rows, dim

    def append(self, rows: torch.Tensor) -> None:
        self._dim = rows.shape[1]
        with open(self._scratch_path, "ab") as f:
            f.write(rows.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
        self._scratch_rows += rows.shape[0]

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """The rows at ``index (n,)``, ``(n, dim)`` fp16 (``index_select`` on tensors over the memory
        maps: about twice as fast as NumPy's ``take`` on them)."""
        index = index.cpu()
        if not self._scratch_rows:
            return self._base.index_select(0, index)
        in_base = index < self.n_base
        if not bool(in_base.any()):
            return self._scratch().index_select(0, index - self.n_base)
        if bool(in_base.all()):
            return self._base.index_select(0, index)
        out = torch.empty((index.numel(), self._dim), dtype=torch.float16)
        out[in_base] = self._base.index_select(0, index[in_base])
        out[~in_base] = self._scratch().index_select(0, index[~in_base] - self.n_base)
        return out

    def _scratch(self) -> torch.Tensor:
        """The scratch file's rows, memory-mapped (kept mapped until the file changes)."""
        if self._scratch_map is None or self._scratch_map.shape[0] != self._scratch_rows:
            self._scratch_map = _tensor_view(
                np.memmap(self._scratch_path, dtype=np.float16, mode="r", shape=(self._scratch_rows, self._dim))
            )
        return self._scratch_map

    def select(self, index: torch.Tensor, chunk: int = 262_144) -> _Fp16Store:
        """A new store holding only the rows at ``index`` (in that order)."""
        fresh = _Fp16Store()
        for start in range(0, index.numel(), chunk):
            fresh.append(self.rows(index[start : start + chunk]))
        fresh._dim = self._dim
        return fresh

    def save(self, path: Path, dim: int, chunk: int = 262_144) -> None:
        total = self.n_base + self._scratch_rows
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(total, dim or self._dim))
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            out[start:stop] = self.rows(torch.arange(start, stop)).numpy()
        out.flush()
        del out


def _tensor_view(array: np.ndarray) -> torch.Tensor:
    """A tensor over a read-only array's memory (a memory map), without a copy. Only read from it:
    PyTorch's warning that it could write to read-only memory is silenced here for that reason."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


# Manifest schema of the two configs (types checked before the dataclasses see the values).
_CONFIG_FIELDS = {
    "nbits": "int",
    "quantizer": "str",
    "n_centroids": "int|null",
    "kmeans_niters": "int",
    "max_training_tokens": "int",
    "seed": "int",
    "keep_fp16": "bool",
    "pool_factor": "int",
}
_SEARCH_CONFIG_FIELDS = {
    "n_ivf_probe": "int",
    "n_centroid_interaction": "int",
    "centroid_score_threshold": "float|null",
    "n_full_scores": "int",
    "rescore": "int",
    "n_refine": "int?",  # absent in indexes saved before it existed
}
