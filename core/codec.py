"""ColBERTv2 residual compression: a centroid id plus a few bits per dimension for each token vector.

A token ``x`` (unit norm) is stored as the id of its nearest centroid ``c`` and the residual
``x - c`` quantised per dimension into ``2**nbits`` buckets. Bucket cutoffs and reconstruction
weights are learned per dimension from held-out residuals (quantiles), so each dimension's buckets
fit its own spread. Decompression is ``normalize(c + weights[bucket])``.

Everything here takes tensors and returns tensors; :mod:`.plaid` does the bookkeeping and I/O.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError, MissingDependencyError

logger = logging.getLogger(__name__)

__all__ = ["CentroidGroups", "ResidualCodec", "assign", "default_n_centroids", "kmeans", "pool_tokens", "train_codec"]

_ASSIGN_ROWS = 1024  # tokens per assignment block: keeps the (rows, centroids) buffer in cache
_GROUPED_ROWS = 65_536  # tokens per grouped-assignment block: large enough for good matmuls per group
_GROUPED_MIN_CENTROIDS = 8192  # below this, exhaustive assignment is about as fast
_GROUPS_PROBED = 8  # coarse groups searched per token by grouped assignment
_GROUPED_MIN_ROWS = 512  # below this (one document's add), one exhaustive product beats a product per group
_PACK_ROWS = 1024  # tokens per quantisation block: the (blocks, rows, 256) distances stay in cache
_SCORE_ROWS = 4096  # tokens decompressed at a time by `similarities` on a CPU (16x that on a GPU)


RQ_NBITS = (4, 6, 8)
"""``nbits`` of a residual quantiser (``quantizer="rq"``): stages of 2 bits, ``nbits // 2`` of them."""


def check_quantizer(nbits: int, quantizer: str) -> None:
    """Raise :class:`InvalidInputError` unless ``quantizer`` can store ``nbits`` bits per dimension."""
    if quantizer not in ("pq", "scalar", "rq"):
        raise InvalidInputError(f"quantizer must be 'pq', 'scalar' or 'rq', got {quantizer!r}.")
    allowed = RQ_NBITS if quantizer == "rq" else (1, 2, 4)
    if isinstance(nbits, bool) or nbits not in allowed:
        raise InvalidInputError(f"nbits must be one of {allowed} with quantizer={quantizer!r}, got {nbits!r}.")


def stages_for(nbits: int, quantizer: str) -> int:
    """Stages of a codec made by ``quantizer``: a residual quantiser's 2-bit stages, else 1."""
    return nbits // 2 if quantizer == "rq" else 1


def default_n_centroids(n_tokens: int, nbits: int = 2) -> int:
    """Power of two near ``4 * sqrt(n_tokens)`` (``16 * sqrt`` at ``nbits=4``), between 16 and 32768.

    ColBERTv2 uses ``16 * sqrt``. At 1 and 2 bits a quarter of that trains and assigns 4x faster on
    a CPU and keeps the centroid table a small part of the index, and the extra residual error is
    absorbed by exact scoring of the decompressed candidates. 4 bits is the accuracy setting: there
    the centroids' error is what is left (SciFact Recall@10 vs exact 0.968 -> 0.973 with 4x more).
    """
    if n_tokens < 1:
        raise InvalidInputError(f"n_tokens must be positive, got {n_tokens}.")
    per_sqrt = 16 if nbits >= 4 else 4
    return int(min(32768, max(16, 2 ** round(math.log2(per_sqrt * math.sqrt(n_tokens))))))


def kmeans(
    sample: torch.Tensor, n_centroids: int, *, niters: int = 4, seed: int = 42, gpu: bool | None = None
) -> torch.Tensor:
    """Spherical k-means centroids ``(n_centroids, dim)`` of ``sample`` with FAISS (GPU FAISS when available)."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            "The PLAID index trains its centroids with FAISS. Install it with: "
            "pip install 'lateint-plugins[faiss]' (or [faiss-gpu])"
        ) from exc
    if sample.shape[0] < n_centroids:
        raise InvalidInputError(
            f"Cannot train {n_centroids} centroids from {sample.shape[0]} token vectors; "
            "add more documents first or pass a smaller n_centroids."
        )
    use_gpu = bool(gpu if gpu is not None else (torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources")))
    data = np.ascontiguousarray(sample.detach().cpu().numpy(), dtype="float32")
    km = faiss.Kmeans(
        data.shape[1],
        n_centroids,
        niter=niters,
        seed=seed,
        spherical=True,
        gpu=use_gpu,
        max_points_per_centroid=max(256, math.ceil(data.shape[0] / n_centroids)),
        min_points_per_centroid=1,  # small samples are a choice (speed), not a mistake worth a warning
        verbose=False,
    )
    km.train(data)
    return torch.from_numpy(np.array(km.centroids, dtype="float32"))


def assign(x: torch.Tensor, centroids: torch.Tensor, groups: CentroidGroups | None = None) -> torch.Tensor:
    """Nearest centroid (max inner product) of every row of ``x``: ``(n,)`` int64 on ``centroids.device``.

    With ``groups``, only the centroids of each row's ``_GROUPS_PROBED`` best coarse groups are
    searched: about ``sqrt(n_centroids) + 8 * sqrt(n_centroids)`` dot products per row instead of
    ``n_centroids`` (14x fewer at 16384 centroids; 2.3x faster on a 2-core CPU, where gathers
    cost more than the products). A row whose nearest centroid sits in an unprobed group (2% of
    SciFact's tokens) gets a near-nearest one; its residual, quantised as usual, absorbs the difference.
    Fewer than ``_GROUPED_MIN_ROWS`` rows are assigned exhaustively even with ``groups``: then one
    product costs less than one per group (7.6 against 11.1 ms for 250 tokens at 16,384 centroids).
    """
    if groups is not None and x.shape[0] >= _GROUPED_MIN_ROWS:
        return _grouped_assign(x, centroids, groups)
    out = torch.empty(x.shape[0], dtype=torch.long, device=centroids.device)
    for start in range(0, x.shape[0], _ASSIGN_ROWS):
        block = x[start : start + _ASSIGN_ROWS].to(centroids.device, centroids.dtype)
        out[start : start + block.shape[0]] = _row_argmax(block @ centroids.T)
    return out


def _row_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Column of each row's maximum of ``scores (n, m)`` (the first on ties), ``(n,)`` int64.

    On a CPU through NumPy, whose row argmax is about 7x faster than torch's (0.24 vs 1.7 ms for
    249 tokens x 4,096 centroids, one thread): a third of the cost of compressing one document.
    """
    if scores.device.type == "cpu" and scores.dtype == torch.float32:
        return torch.from_numpy(scores.detach().numpy().argmax(1))
    return scores.argmax(1)


@dataclass(frozen=True)
class CentroidGroups:
    """A coarse k-means over the centroids themselves, for :func:`assign` at large centroid counts.

    Attributes:
        centers: ``(n_groups, dim)`` unit group centers.
        offsets: ``(n_groups + 1,)`` int64; group ``g``'s centroid ids are ``members[offsets[g]:offsets[g + 1]]``.
        members: ``(n_centroids,)`` int64 centroid ids sorted by group.
    """

    centers: torch.Tensor
    offsets: torch.Tensor
    members: torch.Tensor

    @classmethod
    def fit(cls, centroids: torch.Tensor, *, niters: int = 10, seed: int = 0) -> CentroidGroups:
        """About ``sqrt(n_centroids)`` groups of ``centroids (n_centroids, dim)`` by spherical k-means."""
        n_groups = max(1, round(math.sqrt(centroids.shape[0])))
        start = torch.randperm(centroids.shape[0], generator=torch.Generator().manual_seed(seed))[:n_groups]
        data = centroids.float().cpu()
        centers = data[start].clone()
        for _ in range(niters):
            labels = _row_argmax(data @ centers.T)
            sums = torch.zeros_like(centers).index_add_(0, labels, data)
            centers = torch.where(sums.norm(dim=1, keepdim=True) > 0, F.normalize(sums, dim=1), centers)
        labels = _row_argmax(data @ centers.T)
        members = torch.argsort(labels, stable=True)
        offsets = torch.zeros(n_groups + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(labels, minlength=n_groups), 0, out=offsets[1:])
        device = centroids.device
        return cls(centers.to(device), offsets.to(device), members.to(device))


def _grouped_assign(x: torch.Tensor, centroids: torch.Tensor, groups: CentroidGroups) -> torch.Tensor:
    device = centroids.device
    out = torch.empty(x.shape[0], dtype=torch.long, device=device)
    n_probe = min(_GROUPS_PROBED, groups.centers.shape[0])
    offsets = groups.offsets.tolist()
    for start in range(0, x.shape[0], _GROUPED_ROWS):
        block = x[start : start + _GROUPED_ROWS].to(device, centroids.dtype)
        probed = (block @ groups.centers.T).topk(n_probe, dim=1).indices.reshape(-1)  # (rows * n_probe,)
        # Rows grouped by probed group, so each group is one (rows_in_group, dim) @ (dim, members) matmul.
        order = torch.argsort(probed, stable=True)
        rows_by_group = order // n_probe
        bounds = torch.zeros(len(offsets), dtype=torch.long, device=device)
        torch.cumsum(torch.bincount(probed, minlength=len(offsets) - 1), 0, out=bounds[1:])
        best = torch.full((block.shape[0],), -torch.inf, device=device)
        best_id = torch.zeros(block.shape[0], dtype=torch.long, device=device)
        for g, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
            if a == b or offsets[g] == offsets[g + 1]:
                continue
            rows = rows_by_group[a:b]
            ids = groups.members[offsets[g] : offsets[g + 1]]
            value, index = (block[rows] @ centroids[ids].T).max(1)
            better = value > best[rows]
            best[rows[better]] = value[better]
            best_id[rows[better]] = ids[index[better]]
        out[start : start + block.shape[0]] = best_id
    return out


@dataclass(frozen=True)
class QueryTables:
    """Per-query tables for scoring compressed tokens by lookup (asymmetric distance computation).

    A decompressed token is ``(c + r) / ||c + r||``, ``c`` its centroid and ``r`` one codebook entry
    per residual byte, so its product with a query token is the centroid's product plus one table
    entry per byte, times the token's inverse norm: ``bytes_per_token`` row additions per token
    instead of a ``dim``-wide reconstruction and product. Built by :meth:`ResidualCodec.query_tables`
    for one query or a batch; ``owners`` then says which query each token is scored against.

    Attributes:
        table: ``(n_queries * rows_per_query, q_len)``, ``rows_per_query = n_centroids + bytes_per_token * 256``:
            query ``i``'s rows start at ``i * rows_per_query``; the first ``n_centroids`` hold its
            cosines with each centroid, row ``n_centroids + 256 * j + b`` its products with byte ``j``'s
            codebook entry ``b``. One table, so a token is one bag of ``bytes_per_token + 1`` rows.
    """

    table: torch.Tensor
    n_centroids: int
    bytes_per_token: int

    @property
    def rows_per_query(self) -> int:
        return self.n_centroids + 256 * self.bytes_per_token

    def centroid_scores(self, codes: torch.Tensor, owners: torch.Tensor | int | None = None) -> torch.Tensor:
        """Cosines of the query tokens with the tokens' centroids, ``(n, q_len)``, for ``codes (n,)``.

        ``owners`` (for a batch of queries): the query every token is scored against, ``(n,)``, or
        one query's index for all of them.
        """
        rows, first = codes.long(), self._first_rows(owners)
        return F.embedding(rows + first if isinstance(first, torch.Tensor) or first else rows, self.table)

    def token_scores(
        self,
        codes: torch.Tensor,
        residuals: torch.Tensor,
        inverse_norms: torch.Tensor,
        owners: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Cosines of the decompressed tokens with the query tokens, ``(n, q_len)``.

        The same numbers as ``decompress(codes, residuals) @ queries.T`` up to rounding.

        Args:
            codes: ``(n,)`` centroid ids; residuals: ``(n, bytes_per_token)`` uint8, or a residual
                quantiser's first stages (``j * bytes_per_stage`` columns).
            inverse_norms: ``(n,)`` from :meth:`ResidualCodec.inverse_norms` (of the same bytes).
            owners: for a batch of queries, the query each token is scored against ``(n,)``, or one
                query's index for all of them.
        """
        width = residuals.shape[1]  # bytes_per_token, or fewer to score a residual quantiser's first stages
        device = residuals.device
        rows = torch.empty((residuals.shape[0], width + 1), dtype=torch.int32, device=device)
        rows[:, 0] = codes
        rows[:, 1:] = residuals
        first = self._first_rows(owners)
        starts = self._row_starts(width, device)  # each column's first row in the table
        if isinstance(first, torch.Tensor):
            rows += first.to(torch.int32)[:, None]
        elif first:
            starts = starts + first
        rows += starts
        scores = F.embedding_bag(rows, self.table, mode="sum")
        scores *= inverse_norms.to(scores.device, torch.float32)[:, None]
        return scores

    def _row_starts(self, width: int, device: torch.device) -> torch.Tensor:
        """``[0, n_centroids, n_centroids + 256, ...]``, ``(width + 1,)`` int32: where the centroid's
        rows and each byte's rows start (built once per width)."""
        cache: dict[int, torch.Tensor] = self.__dict__.setdefault("_row_starts_of", {})
        if width not in cache:
            bytes_ = self.n_centroids + 256 * torch.arange(width, device=device, dtype=torch.int32)
            cache[width] = torch.cat([torch.zeros(1, dtype=torch.int32, device=device), bytes_])
        return cache[width]

    def _first_rows(self, owners: torch.Tensor | int | None) -> torch.Tensor | int:
        """Where each owner's rows start in :attr:`table`."""
        return 0 if owners is None else owners * self.rows_per_query


@dataclass(frozen=True)
class ResidualCodec:
    """Centroids plus a byte-wise residual quantiser.

    A residual ``r = x - c`` is rotated (``r @ rotation``) and cut into blocks of ``block_width``
    dimensions; each block is stored as one byte, the index of its nearest entry in that block's
    256-entry codebook. Decompression is a table lookup: ``c + codebooks[block, byte] @ rotation.T``,
    normalised.

    With ``stages > 1`` (``quantizer="rq"``, ``nbits = 2 * stages``) the residual is quantised in
    stages of 2 bits per dimension (a byte per 4 dimensions), each on what the stages before it
    missed. A token's bytes are the first stage's, then the second's, ...; the first
    ``bytes_per_stage`` alone decode to a coarser vector, so a reader can score on a fraction of
    the bytes and fetch the rest for a few. Two 2-bit stages reconstruct about as well as one
    4-bit code; a third cuts the error about sixfold again.

    Attributes:
        centroids: ``(n_centroids, dim)`` float32.
        codebooks: ``(bytes_per_token, 256, block_width)`` float32: each byte's 256 reconstructions
            (byte ``j`` covers block ``j % (dim // block_width)``).
        rotation: ``(dim, dim)`` orthogonal float32 applied to residuals before quantising.
        nbits: bits per dimension (1, 2 or 4; 4, 6 or 8 with stages).
        levels: ``(dim, 2**nbits)`` per-dimension reconstruction levels of a scalar quantiser
            (bucket cutoffs are the midpoints), whose product grid the codebooks then hold; None
            for a product quantiser with freely learned codebooks.
        stages: 1, or 2 to 4 for a residual quantiser of 2 bits a stage (see above).
    """

    centroids: torch.Tensor
    codebooks: torch.Tensor
    rotation: torch.Tensor
    nbits: int
    levels: torch.Tensor | None = None
    stages: int = 1

    def __post_init__(self) -> None:
        if self.stages not in (1, 2, 3, 4) or (self.stages > 1 and self.levels is not None):
            raise InvalidInputError(f"stages must be 1, or 2 to 4 without levels, got {self.stages!r}.")
        check_quantizer(self.nbits, self.quantizer)
        if self.stages > 1 and self.nbits != 2 * self.stages:
            raise InvalidInputError(
                f"a residual quantiser stores 2 bits a stage: {self.stages} stages need nbits={2 * self.stages}, "
                f"got {self.nbits}."
            )
        dim = self.centroids.shape[1]
        if dim % self.block_width:
            raise InvalidInputError(
                f"dim must be a multiple of {self.block_width} for byte packing at nbits={self.nbits}, "
                f"stages={self.stages}; got {dim}."
            )
        expected = (dim * self.nbits // 8, 256, self.block_width)
        if tuple(self.codebooks.shape) != expected or tuple(self.rotation.shape) != (dim, dim):
            raise InvalidInputError(
                f"codebooks {tuple(self.codebooks.shape)} / rotation {tuple(self.rotation.shape)} do not match "
                f"dim={dim}, nbits={self.nbits} (expected {expected} and {(dim, dim)})."
            )

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def bytes_per_token(self) -> int:
        """Packed residual bytes per token (the centroid id is stored separately)."""
        return self.dim * self.nbits // 8

    @property
    def quantizer(self) -> Literal["pq", "scalar", "rq"]:
        """The ``quantizer`` of :func:`train_codec` that makes codecs of this kind."""
        return "scalar" if self.levels is not None else "rq" if self.stages > 1 else "pq"

    @property
    def block_width(self) -> int:
        """Dimensions per byte: ``8 * stages // nbits``."""
        return 8 * self.stages // self.nbits

    @property
    def bytes_per_stage(self) -> int:
        """A token's bytes of one stage; the first stage's come first."""
        return self.bytes_per_token // self.stages

    def to(self, device: str | torch.device) -> ResidualCodec:
        levels = self.levels.to(device) if self.levels is not None else None
        return ResidualCodec(
            self.centroids.to(device),
            self.codebooks.to(device),
            self.rotation.to(device),
            self.nbits,
            levels,
            self.stages,
        )

    def compress(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, dim)`` vectors -> centroid ids ``(n,)`` int64 and packed residuals ``(n, bytes_per_token)`` uint8.

        From ``_GROUPED_MIN_CENTROIDS`` centroids up (on CPU), ids come from grouped assignment
        (see :func:`assign`).
        """
        codes = assign(x, self.centroids, self._groups())
        residuals = x.to(self.centroids.device, torch.float32) - self.centroids[codes]
        return codes, self.pack(residuals)

    def pack(self, residuals: torch.Tensor) -> torch.Tensor:
        """Residuals ``(n, dim)`` -> one byte per block of ``8 // nbits`` dimensions, ``(n, bytes_per_token)``.

        The byte is the block's nearest codebook entry; for a scalar quantiser that is each
        dimension's bucket (the count of cutoffs below the value), packed first dimension high.
        """
        rotation = self.rotation.to(residuals.device)
        pqs = self._faiss_pqs() if residuals.device.type == "cpu" else None
        if pqs is not None:  # FAISS's product-quantiser encoder: same bytes, 6-17x faster than torch on a CPU
            left = np.ascontiguousarray((residuals.float() @ rotation).numpy())  # what the stages so far missed
            parts = []
            for stage, pq in enumerate(pqs):
                parts.append(pq.compute_codes(left))
                if stage + 1 < len(pqs):
                    left -= pq.decode(parts[-1])
            return torch.from_numpy(np.concatenate(parts, axis=1))
        out = torch.empty((residuals.shape[0], self.bytes_per_token), dtype=torch.uint8, device=residuals.device)
        width = self.block_width
        if self.levels is not None:
            levels = self.levels.to(residuals.device)
            cutoffs = (levels[:, 1:] + levels[:, :-1]) / 2
            shifts = torch.arange(width - 1, -1, -1, device=residuals.device) * self.nbits
        for start in range(0, residuals.shape[0], _PACK_ROWS):
            rotated = residuals[start : start + _PACK_ROWS].float() @ rotation
            n = rotated.shape[0]
            if self.levels is not None:
                buckets = (rotated[:, :, None] > cutoffs).sum(-1)  # (n, dim)
                out[start : start + n] = (buckets.reshape(n, -1, width) << shifts).sum(-1).to(torch.uint8)
                continue
            for stage, books in enumerate(self.codebooks.to(residuals.device).split(self.bytes_per_stage)):
                blocks = rotated.reshape(n, -1, width).transpose(0, 1)  # (blocks, n, s)
                packed = _nearest_codewords(blocks, books)  # (blocks, n)
                out[start : start + n, stage * self.bytes_per_stage : (stage + 1) * self.bytes_per_stage] = packed.T
                if stage + 1 < self.stages:
                    rotated = rotated - _codewords(books, packed).transpose(0, 1).reshape(n, -1)
        return out

    def decompress(self, codes: torch.Tensor, residuals: torch.Tensor, *, rotated: bool = False) -> torch.Tensor:
        """Centroid ids ``(n,)`` and packed residuals ``(n, bytes_per_token)`` -> unit vectors ``(n, dim)`` float32.

        A residual quantiser's ``residuals`` may hold its first stages only (``j * bytes_per_stage``
        columns): the coarser vectors they decode to. So may those of :meth:`similarities`.

        With ``rotated=True`` the vectors come back in the rotated basis (``x @ rotation``), which
        skips a ``(n, dim) @ (dim, dim)`` product; dot products are unchanged if the query is
        rotated too (see :meth:`rotate`).
        """
        vectors = F.normalize(self._reconstruct(codes, residuals, self._rotated_for(codes.shape[0])), dim=-1)
        return vectors if rotated else vectors @ self.rotation.to(vectors.device).T

    def similarities(self, queries: torch.Tensor, codes: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        """Cosines of query tokens ``(q_len, dim)`` with the decompressed tokens: ``(q_len, n)``.

        The tokens are ``codes (n,)`` and ``residuals (n, bytes_per_token)``, as from :meth:`compress`.

        ``queries @ decompress(codes, residuals).T`` up to rounding, computed a block of tokens at
        a time so that only one block is ever expanded to float32, and without normalising the
        vectors: each column is scaled by its vector's inverse norm instead (``q_len`` products
        per token rather than ``dim``).
        """
        q = self.rotate(queries).to(residuals.device)
        out = torch.empty((q.shape[0], codes.shape[0]), dtype=torch.float32, device=residuals.device)
        block = _SCORE_ROWS if residuals.device.type == "cpu" else 16 * _SCORE_ROWS
        rotated = self._rotated_for(codes.shape[0])
        for start in range(0, codes.shape[0], block):
            vectors = self._reconstruct(codes[start : start + block], residuals[start : start + block], rotated)
            scores = q @ vectors.T
            scores *= torch.linalg.vector_norm(vectors, dim=1).clamp_(min=1e-12).reciprocal_()
            out[:, start : start + block] = scores
        return out

    def inverse_norms(self, codes: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        """``1 / ||centroid + residual||`` of each token ``(n,)`` float32, the scale :class:`QueryTables` needs."""
        out = torch.empty(codes.shape[0], dtype=torch.float32, device=residuals.device)
        block = _SCORE_ROWS if residuals.device.type == "cpu" else 16 * _SCORE_ROWS
        rotated = self._rotated_for(codes.shape[0])
        for start in range(0, codes.shape[0], block):
            vectors = self._reconstruct(codes[start : start + block], residuals[start : start + block], rotated)
            out[start : start + block] = torch.linalg.vector_norm(vectors, dim=1).clamp_(min=1e-12).reciprocal_()
        return out

    def query_tables(self, queries: torch.Tensor, centroid_scores: torch.Tensor | None = None) -> QueryTables:
        """Lookup tables that score compressed tokens against ``queries`` without decompressing them.

        Args:
            queries: ``(q_len, dim)``, or a batch ``(n_queries, q_len, dim)`` of equal-length queries.
            centroid_scores: ``queries @ centroids.T`` (``(..., q_len, n_centroids)``) if the caller has it.
        """
        batch = queries.reshape(-1, *queries.shape[-2:]).to(self.centroids.device, torch.float32)
        n_queries, q_len, _ = batch.shape
        if centroid_scores is None:
            centroid_scores = batch @ self.centroids.T
        centroid_scores = centroid_scores.reshape(n_queries, q_len, self.n_centroids)
        rotated = self.rotate(batch)  # the codebooks live in the rotated basis
        # (bytes, block_width, n_queries * q_len): each byte's block of dimensions of every query token
        blocks = rotated.reshape(n_queries * q_len, self.bytes_per_stage, self.block_width)
        blocks = blocks.repeat(1, self.stages, 1).permute(1, 2, 0)
        residuals = torch.bmm(self.codebooks, blocks)  # (bytes, 256, n_queries * q_len)
        # Row-contiguous tables: a lookup then copies whole rows (a strided table is ~7x slower).
        table = torch.empty((n_queries, self.n_centroids + 256 * self.bytes_per_token, q_len), device=batch.device)
        table[:, : self.n_centroids] = centroid_scores.transpose(1, 2)
        table[:, self.n_centroids :] = residuals.reshape(-1, n_queries, q_len).transpose(0, 1)
        return QueryTables(table.view(-1, q_len), self.n_centroids, self.bytes_per_token)

    def _reconstruct(
        self, codes: torch.Tensor, residuals: torch.Tensor, rotated_centroids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``centroid + residual`` in the rotated basis, not normalised: ``(n, dim)`` float32.

        ``rotated_centroids`` is ``centroids @ rotation`` when the caller made it (see :meth:`_rotated_for`);
        otherwise only these tokens' centroids are rotated.
        """
        device = residuals.device
        books = self.codebooks.to(device).reshape(-1, self.block_width)  # (bytes * 256, s)
        # Row of (byte j, value b) in the flattened table is 256 * j + b; embedding() is the fast gather.
        rows = residuals.long() + 256 * torch.arange(residuals.shape[1], device=device)
        delta = F.embedding(rows, books).reshape(residuals.shape[0], -1, self.dim)  # (n, stages given, dim)
        delta = delta[:, 0] if delta.shape[1] == 1 else delta.sum(1)
        if rotated_centroids is None:
            centroids = F.embedding(codes.long(), self.centroids.to(device)) @ self.rotation.to(device)
        else:
            centroids = F.embedding(codes.long(), rotated_centroids.to(device))
        return centroids.add_(delta)

    def _rotated_for(self, n_tokens: int) -> torch.Tensor | None:
        """``centroids @ rotation`` when rotating every centroid costs less than rotating ``n_tokens``
        tokens' own (not cached: the codec's memory stays its centroids, codebooks and rotation)."""
        return self.centroids @ self.rotation if n_tokens > self.n_centroids else None

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ rotation``: bring queries into the basis of ``decompress(..., rotated=True)``."""
        return x.to(self.rotation.device, torch.float32) @ self.rotation

    def _groups(self) -> CentroidGroups | None:
        if self.n_centroids < _GROUPED_MIN_CENTROIDS or self.centroids.device.type != "cpu":
            return None  # exhaustive is cheap enough, or on a GPU fast enough
        cached: CentroidGroups | None = self.__dict__.get("_centroid_groups")
        if cached is None:
            cached = CentroidGroups.fit(self.centroids)
            object.__setattr__(self, "_centroid_groups", cached)
        return cached

    def _faiss_pqs(self) -> list[Any] | None:
        """A ``faiss.ProductQuantizer`` per stage holding its codebooks (product quantisers), or None without FAISS."""
        if self.levels is not None:
            return None
        if "_pqs" not in self.__dict__:
            pqs = None
            try:
                import faiss
            except ImportError:
                pass
            else:
                pqs = []
                for books in self.codebooks.detach().cpu().float().split(self.bytes_per_stage):
                    pq = faiss.ProductQuantizer(self.dim, self.bytes_per_stage, 8)
                    faiss.copy_array_to_vector(books.contiguous().numpy().ravel(), pq.centroids)
                    pqs.append(pq)
            object.__setattr__(self, "_pqs", pqs)
        return self.__dict__["_pqs"]


def train_codec(
    sample: torch.Tensor,
    *,
    n_centroids: int,
    nbits: int,
    quantizer: Literal["pq", "scalar", "rq"] = "pq",
    niters: int = 4,
    seed: int = 42,
    heldout_fraction: float = 0.25,
    device: str | torch.device = "cpu",
) -> ResidualCodec:
    """Learn centroids on ``sample`` and the residual quantiser on a held-out part of it.

    Args:
        sample: ``(n, dim)`` unit token vectors drawn from the corpus.
        n_centroids: number of k-means centroids.
        nbits: residual bits per dimension (1, 2, 4; 4, 6 or 8 with ``quantizer="rq"``).
        quantizer: ``"pq"`` learns each byte's 256 codewords jointly (k-means over the block's
            ``8 // nbits`` dimensions); ``"scalar"`` learns ``2**nbits`` levels per dimension
            (ColBERTv2's per-dimension buckets, Lloyd-Max refined) and uses their product grid;
            ``"rq"`` (nbits 4, 6 or 8) learns ``nbits / 2`` product quantisers of 2 bits, each on
            what the ones before it missed (the first stage's bytes of a token decode alone).
            Same storage and decompression; ``"pq"`` and ``"rq"`` reconstruct residuals more
            accurately than ``"scalar"``.
        niters: k-means iterations for the centroids.
        seed: seeds the held-out split, the rotation and k-means.
        heldout_fraction: share of ``sample`` kept out of centroid training to fit the quantiser.
        device: where the returned codec's tensors live.
    """
    check_quantizer(nbits, quantizer)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(sample.shape[0], generator=generator)
    n_heldout = max(256, min(int(sample.shape[0] * heldout_fraction), 16_384))
    heldout, train = sample[order[:n_heldout]].float(), sample[order[n_heldout:]].float()
    centroids = kmeans(train if len(train) >= n_centroids else sample.float(), n_centroids, niters=niters, seed=seed)
    # Indexes save centroids in fp16; round them now so a reloaded index scores exactly the same.
    centroids = centroids.half().float()
    dim = centroids.shape[1]
    # A random rotation spreads the residual's energy evenly over dimensions, so equal bits per
    # block waste less.
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=generator))[0]
    residuals = (heldout - centroids[assign(heldout, centroids)]) @ rotation
    stages = stages_for(nbits, quantizer)
    per_byte = 8 * stages // nbits
    blocks = residuals.reshape(residuals.shape[0], dim // per_byte, per_byte).transpose(0, 1)  # (blocks, n, s)
    levels = None
    if quantizer != "scalar":
        books: list[torch.Tensor] = []
        for stage in range(stages):
            if stage:  # a later stage learns on what the ones before it missed
                nearest = torch.cat([_nearest_codewords(blocks[:, a : a + _PACK_ROWS], books[-1])
                                     for a in range(0, blocks.shape[1], _PACK_ROWS)], dim=1)  # fmt: skip
                blocks = blocks - _codewords(books[-1], nearest)
            books.append(_batched_kmeans(blocks, 256, niters=12, generator=generator))
        codebooks = torch.cat(books)
    else:
        levels = _lloyd_max(residuals, 2**nbits)  # (dim, levels)
        grid = torch.cartesian_prod(*[torch.arange(2**nbits)] * per_byte).reshape(256, per_byte)
        level_blocks = levels.reshape(dim // per_byte, per_byte, 2**nbits)
        codebooks = torch.stack([level_blocks[:, i, grid[:, i]] for i in range(per_byte)], dim=-1)
        levels = levels.contiguous()
    codec = ResidualCodec(centroids, codebooks.contiguous(), rotation.contiguous(), nbits, levels, stages).to(device)
    logger.info(
        "Trained %d centroids and a %d-bit %s residual quantiser on %d vectors",
        n_centroids,
        nbits,
        quantizer,
        sample.shape[0],
    )
    return codec


def _batched_kmeans(points: torch.Tensor, k: int, *, niters: int, generator: torch.Generator) -> torch.Tensor:
    """Independent Euclidean k-means for each of ``B`` point sets ``(B, n, s)`` -> centroids ``(B, k, s)``."""
    n_sets, n, _ = points.shape
    start = torch.randperm(n, generator=generator)[:k]
    centroids = points[:, start].clone()
    if n < k:  # too few points: repeat some, so every byte value decodes to something sensible
        centroids = points[:, torch.arange(k) % n].clone()
    labels = torch.empty((n_sets, n), dtype=torch.long)
    for _ in range(niters):
        for first in range(0, n, _PACK_ROWS):  # (B, rows, k) distances a block of points at a time
            labels[:, first : first + _PACK_ROWS] = _nearest_codewords(points[:, first : first + _PACK_ROWS], centroids)
        sums = torch.zeros_like(centroids).scatter_add_(1, labels[..., None].expand_as(points), points)
        counts = torch.zeros(n_sets, k).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float32))
        # Empty clusters keep their previous centroid.
        centroids = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None], centroids)
    return centroids


def _nearest_codewords(points: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """Per set, each point's nearest codeword: ``points (B, n, s)``, ``books (B, k, s)`` -> ``(B, n)`` int64."""
    books_t = books.transpose(1, 2)
    # argmin ||r - c||^2 = argmin (||c||^2 - 2 r.c), every set in one batched matmul
    return torch.baddbmm((books_t**2).sum(1)[:, None, :], points, books_t, alpha=-2).argmin(-1)


def _codewords(books: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """``books (B, k, s)`` at ``picked (B, n)`` -> ``(B, n, s)``."""
    return torch.gather(books, 1, picked[..., None].expand(-1, -1, books.shape[2]))


def _lloyd_max(values: torch.Tensor, levels: int, iters: int = 20) -> torch.Tensor:
    """Per-column Lloyd-Max quantiser levels ``(dim, levels)`` of ``values (n, dim)``, from quantile starts."""
    weights = torch.quantile(values, (torch.arange(levels) + 0.5) / levels, dim=0).T.contiguous()
    for _ in range(iters):
        cutoffs = (weights[:, 1:] + weights[:, :-1]) / 2
        buckets = (values[:, :, None] > cutoffs[None]).sum(-1)  # (n, dim)
        one_hot = torch.nn.functional.one_hot(buckets, levels).float()  # (n, dim, levels)
        counts = one_hot.sum(0)
        sums = (one_hot * values[:, :, None]).sum(0)
        weights = torch.where(counts > 0, sums / counts.clamp(min=1), weights)
    return weights


def pool_tokens(vectors: torch.Tensor, pool_factor: int, *, protected: int = 1, niters: int = 8) -> torch.Tensor:
    """Cluster one document's token vectors ``(n, dim)`` into about ``n / pool_factor`` unit means.

    The first ``protected`` tokens (``[CLS]`` and the ``[D]`` marker carry the document's
    summary) are kept as they are, as PyLate does. Clustering is spherical k-means seeded with
    evenly spaced tokens, so neighbouring (often related) tokens start in different clusters and
    the result is deterministic.
    """
    if pool_factor < 1:
        raise InvalidInputError(f"pool_factor must be >= 1, got {pool_factor!r}.")
    head, rest = vectors[:protected], vectors[protected:].float()
    n_clusters = max(1, math.ceil(rest.shape[0] / pool_factor))
    if pool_factor == 1 or rest.shape[0] <= n_clusters:
        return vectors
    centroids = rest[torch.linspace(0, rest.shape[0] - 1, n_clusters).long()]
    for _ in range(niters):
        labels = _row_argmax(rest @ centroids.T)
        sums = torch.zeros_like(centroids).index_add_(0, labels, rest)
        counts = torch.bincount(labels, minlength=n_clusters)
        centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), centroids)
    used = torch.bincount(_row_argmax(rest @ centroids.T), minlength=n_clusters) > 0
    return torch.cat([head.float(), centroids[used]]).to(vectors.dtype)
