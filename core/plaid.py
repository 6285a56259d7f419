"""`PLAIDIndex`: a ColBERTv2 compressed index searched the PLAID way, in pure torch + FAISS.

Each token is a centroid id (int16) plus ``nbits`` per dimension of residual (:mod:`.codec`), about
26 bytes for a 96-d token at ``nbits=2`` against 192 in fp16. Search has three stages, all
vectorised over tokens and documents:

1. **Candidates**: the query tokens' scores against every centroid; the ``n_ivf_probe`` best
   centroids per query token, plus every centroid scoring at least ``centroid_score_threshold``
   for some query token, select documents through the inverted lists (centroid -> documents).
2. **Centroid interaction** (pruned): each candidate's approximate MaxSim uses only those kept
   centroids, read straight from the inverted lists; the best ``n_full_scores`` go on, and full
   centroid interaction (every token's centroid) keeps the best quarter of them (at least ``k``).
3. **Exact scoring**: MaxSim of those on their decompressed vectors (decompressed a block at a
   time). Optionally (``rescore > 0``) the best ``rescore`` are scored once more against the
   original fp16 vectors, kept memory-mapped on disk rather than in RAM.

Adds compress a chunk at a time and park the codes in scratch files until the next search, so a
streamed build holds one input chunk plus the compressed index. Removals are tombstones
(documents keep their storage slot and are skipped at search time); :meth:`PLAIDIndex.save`
writes a compacted index, and :meth:`PLAIDIndex.compact` compacts in memory.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from . import _io
from ._checks import check_device, check_k, check_non_negative
from .codec import ResidualCodec, default_n_centroids, pool_tokens, train_codec
from .errors import CorruptIndexError, InvalidInputError
from .index import GrowthBuffer, Index, _default_device, ragged_rows
from .scoring import segment_max

logger = logging.getLogger(__name__)

__all__ = ["PLAIDConfig", "PLAIDIndex", "SearchConfig"]

_ADD_CHUNK_TOKENS = 16_384  # tokens expanded to float32 at a time while adding (~6 MiB each)
_IVF_BLOCK_DOCS = 4096  # documents per block while building the inverted lists
_PROBE_TABLE_CELLS = 2**22  # (query tokens x slots) cells of the candidate table per chunk of queries


@dataclass(frozen=True)
class PLAIDConfig:
    """How the index is built (fixed once trained).

    Args:
        nbits: residual bits per dimension: 1, 2 or 4.
        quantizer: ``"pq"`` (each byte a learned codeword for a block of dimensions; most accurate)
            or ``"scalar"`` (ColBERTv2's per-dimension buckets; faster to build).
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
    quantizer: Literal["pq", "scalar"] = "pq"
    n_centroids: int | None = None
    kmeans_niters: int = 4
    max_training_tokens: int = 131_072
    seed: int = 42
    keep_fp16: bool = False
    pool_factor: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.nbits, bool) or self.nbits not in (1, 2, 4):
            raise InvalidInputError(f"nbits must be 1, 2 or 4, got {self.nbits!r}.")
        if self.quantizer not in ("pq", "scalar"):
            raise InvalidInputError(f"quantizer must be 'pq' or 'scalar', got {self.quantizer!r}.")
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
            quarter (at least ``k``) are decompressed and scored exactly.
        rescore: of those, how many to score again against the fp16 vectors (0 = off; needs
            ``PLAIDConfig(keep_fp16=True)``).
    """

    n_ivf_probe: int = 8
    n_centroid_interaction: int = 64
    centroid_score_threshold: float | None = None
    n_full_scores: int = 1024
    rescore: int = 0

    def __post_init__(self) -> None:
        for name in ("n_ivf_probe", "n_centroid_interaction", "n_full_scores"):
            check_k(getattr(self, name), name)
        check_non_negative(self.rescore, "rescore")
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
        # Every per-slot and per-token array is a capacity-doubling GrowthBuffer: an add writes after
        # the used rows (no copy of the index unless the capacity runs out), a search reads views.
        self._slot_buffer = GrowthBuffer(torch.long)  # position -> slot
        self._alive_buffer = GrowthBuffer(torch.bool)  # by slot
        self._length_buffer = GrowthBuffer(torch.long)  # tokens per slot
        self._start_buffer = GrowthBuffer(torch.long)  # first token row per slot
        self._code_buffer = GrowthBuffer(torch.int16, device=self.device)
        self._residual_buffer = GrowthBuffer(torch.uint8, (0,), device=self.device)
        # Inverted lists in parts: CSR ``(first_slot, stop_slot, offsets (K+1,), slots (P,) int32)``
        # over consecutive slot ranges. A search after an add builds a part for the new slots only;
        # parts are merged (rebuilt over their joint range) when the newest is at least a quarter
        # of the one before, so each slot is re-listed O(log n) times in all.
        self._ivf_parts: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        self._fp16 = _Fp16Store() if self.config.keep_fp16 else None
        self._slot_to_position: torch.Tensor | None = None  # cached inverse of the slots, by slot
        self._trained_error = 0.0
        self._added_error_sum = 0.0
        self._added_tokens = 0

    # ------------------------------------------------------------------ storage views
    @property
    def _codes(self) -> torch.Tensor:
        """Centroid id per token row ``(n_rows,)`` int16 (a view of the growth buffer)."""
        return self._code_buffer.view

    @_codes.setter
    def _codes(self, value: torch.Tensor) -> None:
        self._code_buffer = GrowthBuffer.of(value)

    @property
    def _residuals(self) -> torch.Tensor:
        """Packed residuals per token row ``(n_rows, bytes_per_token)`` uint8 (a view)."""
        return self._residual_buffer.view

    @_residuals.setter
    def _residuals(self, value: torch.Tensor) -> None:
        self._residual_buffer = GrowthBuffer.of(value)

    @property
    def _lengths(self) -> torch.Tensor:
        """Tokens per slot ``(n_slots,)`` int64 (a view)."""
        return self._length_buffer.view

    @_lengths.setter
    def _lengths(self, value: torch.Tensor) -> None:
        self._length_buffer = GrowthBuffer.of(value)
        self._start_buffer = GrowthBuffer.of(torch.cumsum(value, 0) - value)

    @property
    def _alive(self) -> torch.Tensor:
        """Whether each slot holds a live document ``(n_slots,)`` bool (a view; edited in place)."""
        return self._alive_buffer.view

    @_alive.setter
    def _alive(self, value: torch.Tensor) -> None:
        self._alive_buffer = GrowthBuffer.of(value)

    @property
    def _slots(self) -> torch.Tensor:
        """Slot of each position ``(len(self),)`` int64 (a view)."""
        return self._slot_buffer.view

    @_slots.setter
    def _slots(self, value: torch.Tensor) -> None:
        self._slot_buffer = GrowthBuffer.of(value)
        self._slot_to_position = None

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
        """True when :attr:`drift` exceeds 1.25 (see :meth:`retrain`)."""
        return self.drift > 1.25

    def nbytes(self) -> dict[str, int]:
        """Bytes held in memory per part (the optional fp16 store lives on disk and is not counted)."""
        offsets, slots = self._ivf_lists()
        codec = self._require_codec()
        return {
            "codes": self._codes.numel() * self._codes.element_size(),
            "residuals": self._residuals.numel(),
            "ivf": offsets.numel() * 8 + slots.numel() * 4,
            "doc_lengths": self._lengths.numel() * 8,
            # float32 centroids and their rotated copy in memory (half of that on disk, in fp16)
            "centroids": codec.centroids.numel() * 8,
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
        self._codes, self._residuals = codes.to(torch.int16), residuals
        self._ivf_parts = []
        self._added_error_sum, self._added_tokens = 0.0, 0

    def compact(self) -> None:
        """Drop tombstoned documents from storage now (``save`` writes compacted files regardless)."""
        if bool(self._alive.all()):
            return
        alive_slots = self._alive.nonzero().squeeze(1)
        rows = self._token_rows(alive_slots)
        if self._fp16 is not None:
            self._fp16 = self._fp16.select(rows.cpu())
        self._codes, self._residuals = self._codes[rows.to(self.device)], self._residuals[rows.to(self.device)]
        self._lengths = self._lengths[alive_slots]
        renumber = torch.full((self._alive.numel(),), -1, dtype=torch.long)
        renumber[alive_slots] = torch.arange(alive_slots.numel())
        self._slots = renumber[self._slots]
        self._alive = torch.ones(alive_slots.numel(), dtype=torch.bool)
        self._ivf_parts = []

    # ------------------------------------------------------------------ Index hooks
    def _add_vectors(self, vectors: list[torch.Tensor]) -> None:
        # All or nothing: compression appends to scratch files chunk by chunk, so a failure (or
        # Ctrl-C) part-way truncates them back and restores the codec and drift counters.
        saved = (self.codec, self.dim, self._trained_error, self._added_error_sum, self._added_tokens)
        buffers = (
            self._code_buffer,
            self._residual_buffer,
            self._length_buffer,
            self._start_buffer,
            self._alive_buffer,
            self._slot_buffer,
        )
        marks = [len(b) for b in buffers]
        fp16_mark = self._fp16.mark() if self._fp16 is not None else None
        try:
            self._compress_and_append(vectors)
        except BaseException:
            self.codec, self.dim, self._trained_error, self._added_error_sum, self._added_tokens = saved
            for buffer, mark in zip(buffers, marks, strict=True):
                buffer.truncate(mark)
            self._code_buffer, self._residual_buffer, self._length_buffer = buffers[:3]
            self._start_buffer, self._alive_buffer, self._slot_buffer = buffers[3:]
            if self._fp16 is not None and fp16_mark is not None:
                self._fp16.rollback(fp16_mark)
            raise

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
                probe = torch.arange(0, flat.shape[0], max(1, flat.shape[0] // 1024), device=self.device)
                error = _reconstruction_error(codec, flat[probe], codes[probe], residuals[probe])
                self._added_error_sum += error * flat.shape[0]
                self._added_tokens += flat.shape[0]
            if self._residual_buffer.width != (residuals.shape[1],):  # the first add fixes the width
                self._residual_buffer = GrowthBuffer(torch.uint8, (residuals.shape[1],), device=self.device)
            self._code_buffer.append(codes.to(torch.int16))
            self._residual_buffer.append(residuals)
            if self._fp16 is not None:
                self._fp16.append(flat.half().cpu().numpy())
        first_slot = self._alive.numel()
        first_row = len(self._code_buffer) - n_tokens
        self._start_buffer.append(first_row + torch.cumsum(lengths, 0) - lengths)
        self._length_buffer.append(lengths)
        self._alive_buffer.append(torch.ones(len(vectors), dtype=torch.bool))
        self._slot_buffer.append(torch.arange(first_slot, first_slot + len(vectors)))
        self._slot_to_position = None

    def _remove_positions(self, drop: torch.Tensor) -> None:
        self._alive[self._slots[drop]] = False
        self._slots = self._slots[~drop]

    def _search(
        self, queries: list[torch.Tensor], k: int, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._alive.numel() >= 64 and int(self._alive.sum()) * 2 < self._alive.numel():
            self.compact()  # more than half the slots are tombstones: reclaim them (amortised)
        codec = self._require_codec()
        allowed = self._alive.clone()
        if candidates is not None:
            allowed[:] = False
            allowed[self._slots[candidates]] = True
        allowed_slots = allowed.nonzero().squeeze(1)
        slot_to_position = self._slot_positions()
        cfg = self.search_config
        depth = min(max(k, cfg.rescore) if self._fp16 is not None else k, allowed_slots.numel())
        q, q_mask = _pad_queries(queries, self.device)
        # All queries go through every stage together; a single query is a batch of one, so a
        # batch returns exactly what its queries return alone.
        n_slots = allowed.numel()
        per_chunk = max(1, _PROBE_TABLE_CELLS // max(1, q.shape[1] * n_slots))
        all_scores, all_slots = [], []
        for first in range(0, q.shape[0], per_chunk):
            qc, mc = q[first : first + per_chunk], q_mask[first : first + per_chunk]
            if allowed_slots.numel() <= cfg.n_full_scores:
                # Few documents allowed (a narrow filter or a small index): score them all exactly.
                chosen = allowed_slots.to(self.device).expand(qc.shape[0], -1)
            else:
                chosen = self._probe(qc, mc, codec, allowed.to(self.device), depth)
            scores = self._packed_scores(codec.rotate(qc), mc, chosen, self._decompressed_tokens)
            top = torch.topk(scores, min(depth, scores.shape[1]), dim=1)
            chosen_slots, chosen_scores = chosen.gather(1, top.indices).cpu(), top.values.cpu()
            if self._fp16 is not None and cfg.rescore > 0:
                head, rest = chosen_slots[:, : cfg.rescore], chosen_slots[:, cfg.rescore :]
                exact = self._packed_scores(qc, mc, head.to(self.device), self._fp16_tokens).cpu()
                exact[chosen_scores[:, : cfg.rescore] == -math.inf] = -math.inf
                order = torch.argsort(exact, dim=1, descending=True, stable=True)
                chosen_slots = torch.cat([head.gather(1, order), rest], dim=1)
                chosen_scores = torch.cat([exact.gather(1, order), chosen_scores[:, cfg.rescore :]], dim=1)
            all_scores.append(chosen_scores[:, :k])
            all_slots.append(chosen_slots[:, :k])
        scores, slots = torch.cat(all_scores), torch.cat(all_slots)
        # Rows can hold fewer than k hits (few candidates): those cells are -inf, position -1.
        positions = torch.where(scores > -math.inf, slot_to_position[slots.clamp(min=0)], -1)
        return scores, positions

    def _slot_positions(self) -> torch.Tensor:
        """Position of every slot ``(n_slots,)`` (-1 for tombstones), cached until the slots change."""
        cached = self._slot_to_position
        if cached is None or cached.numel() != self._alive.numel():
            cached = torch.full((self._alive.numel(),), -1, dtype=torch.long)
            cached[self._slots] = torch.arange(self._slots.numel())
            self._slot_to_position = cached
        return cached

    def _probe(
        self,
        q: torch.Tensor,
        q_mask: torch.Tensor,
        codec: ResidualCodec,
        allowed: torch.Tensor,
        depth: int,
    ) -> torch.Tensor:
        """Stages 1-3 for padded queries ``(n, q_len, dim)``: candidate slots ``(n, m)`` to decompress.

        A row with fewer candidates than the others is padded with slot -1.
        """
        cfg = self.search_config
        n_queries, q_len = q_mask.shape
        device = q.device
        centroid_scores = q.reshape(n_queries * q_len, -1) @ codec.centroids.T  # (rows, n_centroids)
        n_keep = min(max(cfg.n_centroid_interaction, cfg.n_ivf_probe), codec.n_centroids)
        kept = centroid_scores.topk(n_keep, dim=1)  # sorted, best first
        # Per query token, no unkept centroid scores above its floor; with a threshold, every
        # centroid at or above it is kept too. Padded query tokens keep nothing.
        floor = kept.values[:, -1]
        real_rows = q_mask.reshape(-1).nonzero().squeeze(1)
        pair_row = real_rows.repeat_interleave(n_keep)
        pair_centroid = kept.indices.index_select(0, real_rows).reshape(-1)
        pair_score = kept.values.index_select(0, real_rows).reshape(-1)
        pair_probe = (torch.arange(n_keep, device=device) < cfg.n_ivf_probe).repeat(real_rows.numel())
        if cfg.centroid_score_threshold is not None:
            extra = (centroid_scores >= cfg.centroid_score_threshold) & (centroid_scores < floor[:, None])
            extra &= q_mask.reshape(-1, 1)
            extra_rows, extra_centroids = extra.nonzero().unbind(1)
            pair_row = torch.cat([pair_row, extra_rows])
            pair_centroid = torch.cat([pair_centroid, extra_centroids])
            pair_score = torch.cat([pair_score, centroid_scores[extra_rows, extra_centroids]])
            pair_probe = torch.cat([pair_probe, torch.zeros_like(extra_rows, dtype=torch.bool)])
            floor = torch.clamp(floor, max=cfg.centroid_score_threshold)
        # Stage 1 and 2 over the pairs' inverted lists: each posting is one scalar max into a
        # dense (rows, slots) table, so the work is the postings read, not q_len times them.
        n_slots = allowed.numel()
        best = floor[:, None].expand(n_queries * q_len, n_slots).contiguous()
        candidate = torch.zeros(n_queries * n_slots, dtype=torch.bool, device=device)
        for slots, pair_of in self._postings(pair_centroid):
            row = pair_row.index_select(0, pair_of)
            best.view(-1).scatter_reduce_(0, row * n_slots + slots, pair_score.index_select(0, pair_of), "amax")
            probed = pair_probe.index_select(0, pair_of)
            candidate[(torch.div(row, q_len, rounding_mode="floor") * n_slots + slots)[probed]] = True
        candidate = candidate.view(n_queries, n_slots) & allowed
        best.view(n_queries, q_len, n_slots)[~q_mask] = 0.0  # padded query tokens add nothing
        approx = _sum_rows(best.view(n_queries, q_len, n_slots), 1)
        approx.masked_fill_(~candidate, -math.inf)
        # Ranked among the candidates only: ties break by slot order whatever the tombstones.
        n_chosen = min(cfg.n_full_scores, int(candidate.sum(1).max()))
        chosen = _top_in_order(approx, n_chosen)
        chosen.masked_fill_(approx.gather(1, chosen) == -math.inf, -1)
        # Stage 3, full centroid interaction: every token of the chosen documents scored by its
        # centroid; the best quarter go on to decompression.
        n_decompress = max(depth, cfg.n_full_scores // 4)
        if chosen.shape[1] <= n_decompress:
            return chosen
        valid, rows, dest, width, runs = self._layout(chosen)
        codes = torch.zeros(n_queries * width, dtype=torch.long, device=device)
        codes[dest.to(device)] = self._codes.index_select(0, rows.to(device)).long()
        per_token = centroid_scores.view(n_queries, q_len, -1).gather(
            2, codes.view(n_queries, 1, width).expand(n_queries, q_len, width)
        )  # (n, q_len, width): each token's centroid scored by its own query's tokens
        full = self._run_max_sum(per_token, q_mask, runs).masked_fill_(~valid, -math.inf)
        picked = _top_in_order(full, n_decompress)
        return chosen.gather(1, picked).masked_fill_(full.gather(1, picked) == -math.inf, -1)

    def _postings(self, centroids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each inverted-list part: the slots listed under ``centroids`` and the pair each came from."""
        out = []
        for _, _, offsets, ivf_slots in self._ivf_list_parts():
            starts = offsets.index_select(0, centroids)
            list_lengths = offsets.index_select(0, centroids + 1) - starts
            pair_of = torch.repeat_interleave(torch.arange(list_lengths.numel(), device=centroids.device), list_lengths)
            slots = ivf_slots.index_select(0, ragged_rows(starts, list_lengths, owner=pair_of)).long()
            out.append((slots, pair_of))
        return out

    def _decompressed_tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """Token rows decompressed in the rotated basis and scaled to unit norm: ``(n, dim)`` float32."""
        codec = self._require_codec()
        rows = rows.to(self.device)
        vectors = codec._reconstruct(self._codes.index_select(0, rows), self._residuals.index_select(0, rows))
        return vectors.mul_(torch.linalg.vector_norm(vectors, dim=1, keepdim=True).clamp_(min=1e-12).reciprocal_())

    def _fp16_tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """The original vectors of token rows (from the fp16 store): ``(n, dim)`` float32."""
        assert self._fp16 is not None
        return torch.from_numpy(self._fp16.rows(rows.cpu())).to(self.device, torch.float32)

    def _packed_scores(
        self,
        q: torch.Tensor,
        q_mask: torch.Tensor,
        slots: torch.Tensor,
        tokens: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """MaxSim of each padded query ``(n, q_len, dim)`` against its own documents ``slots (n, m)``.

        ``tokens(rows)`` gives the vectors of token rows. Cells with slot -1 score -inf. One batched
        product per chunk of queries: every query's tokens padded to the longest query's.
        """
        n_queries = q_mask.shape[0]
        if slots.numel() == 0:
            return torch.full(slots.shape, -math.inf, dtype=torch.float32, device=q.device)
        valid, rows, dest, width, runs = self._layout(slots)
        vectors = tokens(rows)  # (tokens, dim)
        if n_queries == 1:  # one query: its tokens are the batch as they stand
            padded = vectors[None]
        else:
            padded = vectors.new_zeros((n_queries * width, vectors.shape[1]))
            padded.index_copy_(0, dest.to(vectors.device), vectors)
            padded = padded.view(n_queries, width, -1)
        similarities = torch.bmm(q.to(vectors.device, torch.float32), padded.transpose(1, 2))  # (n, q_len, width)
        return self._run_max_sum(similarities, q_mask, runs).masked_fill_(~valid.to(vectors.device), -math.inf)

    def _layout(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
        """Where the tokens of each query's documents ``slots (n, m)`` (-1: none) go in a padded batch.

        Returns ``valid (n, m)``, the token ``rows`` to read, their ``dest`` in a flattened
        ``(n * width)`` layout (each query's documents one after another, then padding), ``width``
        and ``runs (n * (m + 1),)``: every document's length, then each query's padding.
        """
        n_queries = slots.shape[0]
        valid = slots >= 0
        flat = slots.reshape(-1).clamp(min=0).cpu()
        doc_lengths = (self._lengths.index_select(0, flat) * valid.reshape(-1).cpu()).view(slots.shape)
        totals = doc_lengths.sum(1)
        width = int(totals.max()) if n_queries else 0
        rows = self._token_rows(flat, doc_lengths.reshape(-1))
        owner = torch.repeat_interleave(torch.arange(n_queries), totals)
        # Rows go to owner * width + (their rank within the owner's rows).
        shift = torch.arange(n_queries) * width - (torch.cumsum(totals, 0) - totals)
        dest = shift.index_select(0, owner) + torch.arange(owner.numel())
        runs = torch.cat([doc_lengths, (width - totals)[:, None]], dim=1).reshape(-1)
        return valid, rows, dest, width, runs

    @staticmethod
    def _run_max_sum(table: torch.Tensor, q_mask: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
        """``(n, q_len, width)`` similarities -> ``(n, m)``: per run (document), max per query token, summed.

        ``runs`` as from :meth:`_layout` (each query's last run is its padding and is dropped).
        """
        n_queries, q_len, width = table.shape
        flat = table.permute(1, 0, 2).reshape(q_len, n_queries * width)
        best = segment_max(flat, runs.to(table.device), empty=0.0).view(q_len, n_queries, -1)[:, :, :-1]
        best = best * q_mask.T[:, :, None].to(best.device)  # padded query tokens add nothing
        return _sum_rows(best, 0)

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
            codebooks = _io.load_array(folder, "codebooks", dtype=np.float32, shape=(dim * nbits // 8, 256, 8 // nbits))
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
            ivf = (torch.from_numpy(offsets).to(self.device), torch.from_numpy(ivf_slots).to(self.device))
            self._ivf_parts = [(0, n_docs, *ivf)]
        elif n_docs:
            raise CorruptIndexError(f"{folder}: an untrained PLAID index cannot hold documents; the index is damaged.")
        # Codes and residuals are the compressed index itself (26 B/token at nbits=2): read them whole.
        self._codes = torch.from_numpy(np.array(codes)).to(self.device)
        self._residuals = torch.from_numpy(np.array(residuals)).to(self.device)
        self._lengths = torch.from_numpy(lengths)
        self._alive = torch.ones(n_docs, dtype=torch.bool)
        self._slots = torch.arange(n_docs)
        if self.config.keep_fp16:
            self._fp16 = _Fp16Store.open(folder / "tokens_fp16.npy", n_tokens, dim)
        self._trained_error = float(manifest.get("trained_error", 0.0))
        self._added_error_sum = float(manifest.get("added_error_sum", 0.0))
        self._added_tokens = int(manifest.get("added_tokens", 0))

    # ------------------------------------------------------------------ internals
    def _require_codec(self) -> ResidualCodec:
        if self.codec is None:
            raise InvalidInputError("The PLAID index is not trained yet: add documents (or call train) first.")
        return self.codec

    def _token_rows(self, slots: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Token rows of ``slots``, concatenated; ``lengths`` overrides their lengths (0 skips a slot)."""
        slots = slots.cpu()
        return ragged_rows(self._start_buffer.view[slots], self._lengths[slots] if lengths is None else lengths)

    def _ivf_lists(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverted lists as one CSR: ``offsets (n_centroids + 1,)`` into ``slots (pairs,)`` int32.

        Each (centroid, document) pair appears once however many of the document's tokens share
        the centroid. Merges the parts (see :meth:`_ivf_list_parts`) into one.
        """
        parts = self._ivf_list_parts()
        if len(parts) != 1:
            self._ivf_parts = [self._build_ivf(0, self._lengths.numel())]
        return self._ivf_parts[0][2], self._ivf_parts[0][3]

    def _ivf_list_parts(self) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
        """The inverted lists, brought up to date: a new part for the slots added since, merged with
        the parts before it while it is at least a quarter of their size (amortised O(log n) per slot)."""
        n_slots = self._lengths.numel()
        parts = self._ivf_parts
        covered = parts[-1][1] if parts else 0
        if covered < n_slots or not parts:
            first = covered
            tokens = self._slot_range_tokens
            while parts and 4 * tokens(first, n_slots) >= tokens(parts[-1][0], parts[-1][1]):
                first = parts.pop()[0]
            parts.append(self._build_ivf(first, n_slots))
        return parts

    def _slot_range_tokens(self, first: int, stop: int) -> int:
        if stop <= first:
            return 0
        starts = self._start_buffer.view
        return int(starts[stop - 1] + self._lengths[stop - 1] - starts[first])

    def _build_ivf(self, first_slot: int, stop_slot: int) -> tuple[int, int, torch.Tensor, torch.Tensor]:
        """Inverted lists of slots ``[first_slot, stop_slot)``: ``(first, stop, offsets, slots)``."""
        codec = self._require_codec()
        # Deduplicated (centroid, slot) pairs, a block of documents at a time so the int64 keys
        # stay block-sized. A block's pairs come out sorted by centroid, then slot; blocks are
        # in slot order. So after counting every list's length, each block's runs go straight
        # to their place (after the earlier blocks' part of the list): sorted lists, no global sort.
        n_slots = max(1, stop_slot)
        blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        counts = torch.zeros(codec.n_centroids, dtype=torch.long, device=self.device)
        for first in range(first_slot, stop_slot, _IVF_BLOCK_DOCS):
            last = min(first + _IVF_BLOCK_DOCS, stop_slot)
            lengths = self._lengths[first:last]
            a = int(self._start_buffer.view[first])
            codes = self._codes[a : a + int(lengths.sum())].long()
            slot = torch.repeat_interleave(torch.arange(first, last, device=self.device), lengths.to(self.device))
            pairs = torch.unique(codes * n_slots + slot)
            block_codes = pairs // n_slots
            counts += torch.bincount(block_codes, minlength=codec.n_centroids)
            blocks.append((block_codes.to(torch.int16), (pairs % n_slots).to(torch.int32)))
        offsets = torch.zeros(codec.n_centroids + 1, dtype=torch.long, device=self.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        ivf_slots = torch.empty(int(offsets[-1]), dtype=torch.int32, device=self.device)
        cursor = offsets[:-1].clone()
        blocks.reverse()
        while blocks:
            block_codes, block_slots = blocks.pop()
            block_codes = block_codes.long()
            block_counts = torch.bincount(block_codes, minlength=codec.n_centroids)
            run_starts = torch.cumsum(block_counts, 0) - block_counts
            shift = cursor - run_starts  # where each centroid's run of this block goes
            positions = shift.index_select(0, block_codes) + torch.arange(block_codes.numel(), device=self.device)
            ivf_slots[positions] = block_slots
            cursor += block_counts
        return first_slot, stop_slot, offsets, ivf_slots

    def _original_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        if self._fp16 is not None:
            return torch.from_numpy(self._fp16.rows(rows)).float()
        codec = self._require_codec()
        rows = rows.to(self.device)
        return codec.decompress(self._codes[rows], self._residuals[rows]).cpu()


def _reconstruction_error(
    codec: ResidualCodec, x: torch.Tensor, codes: torch.Tensor | None = None, residuals: torch.Tensor | None = None
) -> float:
    """Mean ``1 - cos(x, decompress(compress(x)))``."""
    if codes is None or residuals is None:
        codes, residuals = codec.compress(x)
    return float((1 - (codec.decompress(codes, residuals) * x.float()).sum(-1)).mean())


def _sum_rows(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``values.sum(dim)`` added one slice at a time, in order.

    ``Tensor.sum`` may group the additions differently for different widths of the other
    dimensions, so the same document could score a rounding step apart in two indexes (or two
    batches); slice-by-slice addition gives every column the same order whatever the width.
    """
    total = values.select(dim, 0).clone()
    for i in range(1, values.shape[dim]):
        total += values.select(dim, i)
    return total


def _top_in_order(values: torch.Tensor, n: int) -> torch.Tensor:
    """Columns of the ``n`` largest values of each row of ``(rows, m)``, in column order ``(rows, n)``.

    Ties at the cut go to the lower columns, so the choice depends only on the values' order (not
    on where, e.g., tombstoned columns sit between them, as it could with :func:`torch.topk`).
    """
    if n >= values.shape[1]:
        return torch.arange(values.shape[1], device=values.device).expand(values.shape[0], -1).contiguous()
    if n == 0:
        return torch.zeros((values.shape[0], 0), dtype=torch.long, device=values.device)
    cut = torch.topk(values, n, dim=1, sorted=False).values.amin(1, keepdim=True)
    above = values > cut
    at_cut = values == cut
    need = n - above.sum(1, keepdim=True)
    keep = above | (at_cut & (torch.cumsum(at_cut, 1) <= need))
    return keep.nonzero()[:, 1].view(values.shape[0], n)


def _pad_queries(queries: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries ``(q_len_i, dim)`` as a padded float32 ``(n, max q_len, dim)`` batch and its ``(n, max q_len)`` mask."""
    if len(queries) == 1:  # the common single query: no padding, no copy beyond the dtype change
        q = queries[0].to(device, torch.float32)
        return q[None], torch.ones((1, q.shape[0]), dtype=torch.bool, device=device)
    padded = torch.nn.utils.rnn.pad_sequence(queries, batch_first=True).to(device, torch.float32)
    lengths = torch.tensor([q.shape[0] for q in queries], device=device)
    mask = torch.arange(padded.shape[1], device=device)[None, :] < lengths[:, None]
    return padded, mask


class _Fp16Store:
    """Original vectors in fp16, appended to a scratch file and read through a memory map.

    After a load, the saved ``tokens_fp16.npy`` is the read-only base; later additions go to a
    scratch file. Rows are addressed by token row across both.
    """

    def __init__(self, base: np.ndarray | None = None) -> None:
        self._base = base
        self._scratch_dir = tempfile.TemporaryDirectory(prefix="lateint-fp16-")
        self._scratch_path = Path(self._scratch_dir.name) / "tokens.f16"
        self._scratch_rows = 0
        self._dim = base.shape[1] if base is not None else 0
        self._map: np.ndarray | None = None

    @classmethod
    def open(cls, path: Path, n_tokens: int, dim: int) -> _Fp16Store:
        base = _io.load_array(path.parent, path.stem, dtype=np.float16, shape=(n_tokens, dim), mmap=True)
        return cls(base)

    @property
    def n_base(self) -> int:
        return 0 if self._base is None else self._base.shape[0]

    def mark(self) -> tuple[int, int]:
        """The current ``(scratch rows, dim)``, for :meth:`rollback`."""
        return self._scratch_rows, self._dim

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget the rows appended since :meth:`mark`."""
        rows, dim = mark
        self._map = None
        if self._scratch_path.exists():
            os.truncate(self._scratch_path, rows * dim * 2)
        self._scratch_rows, self._dim = rows, dim

    def append(self, rows: np.ndarray) -> None:
        self._dim = rows.shape[1]
        with open(self._scratch_path, "ab") as f:
            f.write(np.ascontiguousarray(rows, dtype=np.float16).tobytes())
        self._scratch_rows += rows.shape[0]

    def rows(self, index: torch.Tensor) -> np.ndarray:
        idx = index.numpy()
        out = np.empty((idx.size, self._dim), dtype=np.float16)
        in_base = idx < self.n_base
        if in_base.any():
            out[in_base] = self._base[idx[in_base]]  # type: ignore[index]
        if (~in_base).any():
            out[~in_base] = self._scratch_map()[idx[~in_base] - self.n_base]
        return out

    def _scratch_map(self) -> np.ndarray:
        """The scratch rows, memory-mapped (the map is reused until rows are appended or dropped)."""
        cached = self._map
        if cached is None or cached.shape[0] != self._scratch_rows:
            cached = np.memmap(self._scratch_path, dtype=np.float16, mode="r", shape=(self._scratch_rows, self._dim))
            self._map = cached
        return cached

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
            out[start:stop] = self.rows(torch.arange(start, stop))
        out.flush()
        del out


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
}
