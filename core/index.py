"""The index interface and :class:`ExactIndex`, the brute-force oracle every other index is tested against.

An index maps string document ids to token matrices (and a JSON metadata dict per document) and
answers MaxSim top-k queries, optionally restricted by a metadata filter (:mod:`.filters`). Filters pick
the candidate subset *before* scoring, so a filtered query returns the best ``k`` matching
documents, never fewer because better non-matching ones were cut.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np
import torch

from . import _io
from ._checks import (
    check_device,
    check_ids,
    check_k,
    check_matrices,
    check_matrix,
    check_metadatas,
    check_sequence,
)
from .errors import (
    CorruptIndexError,
    DuplicateIdError,
    InvalidInputError,
    UnknownIdError,
)
from .filters import matches, parse_filter
from .scoring import maxsim_stored

__all__ = ["ExactIndex", "GrowthBuffer", "Index", "SearchHit", "create_index", "load_index"]

Metadata = dict[str, Any]
Filter = Mapping[str, Any]


@dataclass(frozen=True)
class SearchHit:
    """One ranked document: its id, MaxSim score and metadata."""

    id: str
    score: float
    metadata: Metadata = field(default_factory=dict)


class Index(ABC):
    """What every index offers: ``add``, ``remove``, ``search``, ``save``, ``load`` and ``len``.

    Subclasses store the vectors and score them; this base keeps ids and metadata, validates
    input and applies filters, so those rules are the same for every index.
    """

    kind: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
            raise InvalidInputError(f"dim must be a positive int or None (inferred on first add), got {dim!r}.")
        self.dim = dim
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._metadata: list[Metadata] = []

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and doc_id in self._positions

    @property
    def ids(self) -> list[str]:
        """Document ids in insertion order."""
        return list(self._ids)

    @property
    def is_trained(self) -> bool:
        """False while the index still has to learn from sample vectors (see :meth:`train`)."""
        return True

    def train(self, sample: torch.Tensor, n_tokens: int | None = None) -> None:  # noqa: B027 (optional hook)
        """Learn whatever the index needs from ``(n, dim)`` sample token vectors before the first add.

        Indexes with nothing to learn ignore it; a compressed index trains its codec, which its
        first :meth:`add` would otherwise do on that batch alone. ``n_tokens`` is the expected corpus
        size in tokens.
        """

    def metadata(self, doc_id: str) -> Metadata:
        """The metadata stored with ``doc_id``."""
        if not isinstance(doc_id, str):
            raise InvalidInputError(f"doc_id must be a str, got {type(doc_id).__name__}.")
        if doc_id not in self._positions:
            raise UnknownIdError(f"Document id {doc_id!r} is not in the index.")
        return dict(self._metadata[self._positions[doc_id]])

    def add(
        self,
        ids: Sequence[str],
        embeddings: Sequence[torch.Tensor | np.ndarray],
        metadata: Sequence[Metadata | None] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Add documents, all or nothing: every input is checked before anything changes.

        Args:
            ids: unique string ids, new unless ``replace``.
            embeddings: one ``(n_tokens, dim)`` matrix per document (L2-normalised, finite floats).
            metadata: one JSON-serialisable dict (or None) per document.
            replace: replace documents whose id is already present (an upsert). The new vectors are
                added first and the old ones dropped only once that succeeded, so a failure (or
                Ctrl-C) part-way leaves the old documents exactly as they were.

        Raises:
            DuplicateIdError: an id is repeated, or (without ``replace``) already present.
            InvalidInputError: a bad id, metadata or matrix (wrong type, dtype, rank, NaN/inf), named
                as ``ids[i]``, ``metadata[i]``, ``embeddings[i]``.
            DimensionMismatchError: a matrix has another width than the index.
        """
        ids, metas = self.check_new(ids, metadata, replace=replace)
        items = check_matrices(embeddings, "embeddings")
        if len(items) != len(ids):
            raise InvalidInputError(f"Got {len(ids)} ids but {len(items)} embeddings; pass one per id.")
        # The first document fixes the dimension of an empty index, once every document is valid.
        dim = self.dim
        vectors: list[torch.Tensor] = []
        for i, e in enumerate(items):
            vectors.append(check_matrix(e, f"embeddings[{i}]", dim))
            dim = vectors[-1].shape[1]
        if not ids:
            return
        replaced = [self._positions[i] for i in ids if i in self._positions]
        previous_dim, self.dim = self.dim, dim
        try:
            self._add_vectors(vectors)  # all or nothing (see _add_vectors)
        except BaseException:
            self.dim = previous_dim
            raise
        self._register(ids, metas, replaced)

    def _register(self, ids: list[str], metas: list[Metadata], replaced: list[int]) -> None:
        """Record the documents whose vectors were just stored, then drop the ``replaced`` positions."""
        first = len(self._ids)
        self._ids.extend(ids)
        self._metadata.extend(metas)
        self._positions.update((doc_id, first + j) for j, doc_id in enumerate(ids))
        if replaced:
            drop = torch.zeros(len(self._ids), dtype=torch.bool)
            drop[replaced] = True
            self._drop(drop)

    def check_new(
        self, ids: Sequence[str], metadata: Sequence[Metadata | None] | None = None, *, replace: bool = False
    ) -> tuple[list[str], list[Metadata]]:
        """Validate ids and metadata for :meth:`add` without adding anything (so callers can fail fast).

        Returns the ids as a list and the metadata as dicts. Without ``replace``, ids already in the
        index raise :class:`DuplicateIdError`.
        """
        ids = check_ids(ids, "ids")
        metas = check_metadatas(metadata, len(ids), "metadata")
        if not replace:
            existing = [i for i in ids if i in self._positions]
            if existing:
                raise DuplicateIdError(
                    f"ids already in the index: {existing[:5]}{' ...' if len(existing) > 5 else ''}; "
                    "remove them first or pass replace=True to replace them."
                )
        return ids, metas

    def remove(self, ids: Sequence[str]) -> None:
        """Remove documents by id; unknown ids raise :class:`UnknownIdError` and nothing is removed."""
        ids = check_ids(ids, "ids")
        unknown = [i for i in ids if i not in self._positions]
        if unknown:
            raise UnknownIdError(
                f"ids not in the index: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; nothing was removed."
            )
        if not ids:
            return
        drop = torch.zeros(len(self._ids), dtype=torch.bool)
        drop[[self._positions[i] for i in ids]] = True
        self._drop(drop)

    def _drop(self, drop: torch.Tensor) -> None:
        """Remove the documents where the boolean ``(len(self._ids),)`` mask is true (vectors and bookkeeping)."""
        self._remove_positions(drop)
        keep = (~drop).tolist()
        self._ids = [i for i, k in zip(self._ids, keep, strict=True) if k]
        self._metadata = [m for m, k in zip(self._metadata, keep, strict=True) if k]
        self._positions = {doc_id: p for p, doc_id in enumerate(self._ids)}

    @overload
    def search(
        self, query_embeddings: torch.Tensor | np.ndarray, k: int = ..., filter: Filter | None = ...
    ) -> list[SearchHit]: ...
    @overload
    def search(
        self, query_embeddings: Sequence[torch.Tensor | np.ndarray], k: int = ..., filter: Filter | None = ...
    ) -> list[list[SearchHit]]: ...
    def search(
        self,
        query_embeddings: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray],
        k: int = 10,
        filter: Filter | None = None,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Top-``k`` documents by MaxSim for one query ``(q_len, dim)`` or a batch of them.

        Args:
            query_embeddings: one ``(q_len, dim)`` matrix, or a sequence of them (or a
                ``(n, q_len, dim)`` array) for a batch.
            k: number of hits per query (fewer if fewer documents match).
            filter: metadata filter (:func:`~lateint_plugins.core.filters.parse_filter`), e.g.
                ``{"year": {"$gte": 2020}, "lang": "en"}``; applied before scoring.

        Returns:
            A list of :class:`SearchHit` best first; a list of such lists for a batch.
        """
        single = isinstance(query_embeddings, (torch.Tensor, np.ndarray)) and query_embeddings.ndim == 2
        k = check_k(k)
        if single:
            queries = [check_matrix(query_embeddings, "query_embeddings", self.dim)]
        else:
            batch = check_sequence(query_embeddings, "query_embeddings", "(q_len, dim) matrices")
            queries = [check_matrix(q, f"query_embeddings[{i}]", self.dim) for i, q in enumerate(batch)]
        candidates = self._candidates(filter)
        if not queries:
            return []
        if len(self) == 0 or (candidates is not None and candidates.numel() == 0):
            results: list[list[SearchHit]] = [[] for _ in queries]
        else:
            scores, positions = self._search(queries, k, candidates)
            results = [
                [
                    SearchHit(self._ids[p], s, dict(self._metadata[p]))
                    for s, p in zip(row_scores.tolist(), row_positions.tolist(), strict=True)
                    if p >= 0  # rows with fewer than k hits are padded with -1
                ]
                for row_scores, row_positions in zip(scores, positions, strict=True)
            ]
        return results[0] if single else results

    def save(self, path: str | Path) -> None:
        """Write the index to the folder ``path`` atomically (a crash leaves any previous save intact)."""
        with _io.atomic_directory(path) as tmp:
            _io.write_jsonl(
                tmp / "documents.jsonl",
                ({"id": i, "metadata": m} for i, m in zip(self._ids, self._metadata, strict=True)),
            )
            fields = self._write(tmp)
            _io.write_manifest(tmp, self.kind, self.version, dim=self.dim, n_documents=len(self), **fields)

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> Index:
        """Read an index saved with :meth:`save` (``options`` are passed to the constructor).

        Raises :class:`IndexNotFoundError` when nothing is saved at ``path`` and :class:`CorruptIndexError`
        when the folder is damaged (every file is checked against the checksums in its manifest).
        """
        return _io.read_consistently(path, lambda folder: cls._load_folder(folder, dict(options)))

    @classmethod
    def _load_folder(cls, folder: Path, options: dict[str, Any]) -> Index:
        kinds = [cls.kind] if cls is not Index else list(_KIND_MODULES)
        manifest = _io.read_manifest(folder, kinds, max_version=cls.version)
        index_cls = _index_class(manifest["kind"])
        if manifest["version"] > index_cls.version:
            raise CorruptIndexError(
                f"{str(folder)!r} was written by a newer lateint-plugins (format version {manifest['version']}, "
                f"this version reads up to {index_cls.version}); upgrade lateint-plugins."
            )
        index = index_cls._from_manifest(manifest, **options)
        documents = folder / "documents.jsonl"
        rows = _io.read_jsonl(documents, {"id": "str", "metadata": "dict|null?"})
        for number, row in enumerate(rows, 1):
            if not row["id"]:
                raise CorruptIndexError(f"{documents}: row {number} has an empty id; the saved index is damaged.")
        index._ids = [r["id"] for r in rows]
        index._metadata = [dict(r.get("metadata") or {}) for r in rows]
        index._positions = {doc_id: p for p, doc_id in enumerate(index._ids)}
        if len(index._positions) != len(index._ids):
            raise CorruptIndexError(f"{documents} repeats a document id; the saved index is damaged.")
        if len(index._ids) != manifest["n_documents"]:
            raise CorruptIndexError(
                f"{documents} lists {len(index._ids)} documents but field 'n_documents' of its manifest says "
                f"{manifest['n_documents']}; the saved index is damaged."
            )
        index._read(folder, manifest)
        return index

    # ------------------------------------------------------------------ for subclasses
    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any], **options: Any) -> Index:
        return cls(dim=manifest.get("dim"), **options)

    @abstractmethod
    def _add_vectors(self, vectors: list[torch.Tensor]) -> None:
        """Append one ``(n_tokens, dim)`` float matrix per new document (already validated).

        All or nothing: if it raises (even ``KeyboardInterrupt``), the stored vectors are unchanged.
        """

    @abstractmethod
    def _remove_positions(self, drop: torch.Tensor) -> None:
        """Drop the documents where the boolean ``(len(self),)`` mask is true."""

    @abstractmethod
    def _search(
        self, queries: list[torch.Tensor], k: int, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and positions ``(n_queries, <=k)``, best first, among ``candidates`` (None = all).

        A row with fewer hits than the others is padded with position -1.
        """

    def _prepare_search(self) -> None:
        """Do the deferred work of recent adds that the next search would do first (none by default).

        What an add costs before the next search is the add plus this (see ``benchmarks/bench_index.py``).
        """
        return None

    @abstractmethod
    def _write(self, folder: Path) -> dict[str, Any]:
        """Write the vectors into ``folder``; return extra manifest fields."""

    @abstractmethod
    def _read(self, folder: Path, manifest: dict[str, Any]) -> None:
        """Read the vectors written by :meth:`_write`."""

    # ------------------------------------------------------------------ helpers
    def _check_matrix(self, x: torch.Tensor | np.ndarray, name: str, dim: int | None) -> torch.Tensor:
        """``x`` as a finite float tensor of shape ``(n >= 1, dim)`` (any width when ``dim`` is None)."""
        return check_matrix(x, name, dim)

    def _candidates(self, filter: Filter | None) -> torch.Tensor | None:
        """Positions of the documents whose metadata matches ``filter`` (None = all; see :mod:`.filters`)."""
        tree = parse_filter(filter)
        if tree is None:
            return None
        hits = [p for p, meta in enumerate(self._metadata) if matches(tree, meta)]
        return torch.tensor(hits, dtype=torch.long)


class ExactIndex(Index):
    """Exhaustive MaxSim over an fp16 token store: exact, simple, the reference for other indexes.

    Token vectors of all documents are kept in one ``(total_tokens, dim)`` float16 tensor with a
    lengths vector; search scores every (candidate) document with :func:`maxsim`.

    Args:
        dim: vector dimension (inferred on first ``add`` when None).
        device: where scoring runs (default CUDA when available, else CPU); storage stays in CPU memory
            and streams through in chunks.
    """

    kind = "exact"

    def __init__(self, dim: int | None = None, *, device: str | torch.device | None = None) -> None:
        super().__init__(dim)
        self.device = check_device(device) if device is not None else _default_device()
        # Capacity-doubling buffers: an add writes its rows after the used ones (copying the store
        # only when the capacity runs out, so O(1) amortised per token); a search reads views.
        self._token_buffer = GrowthBuffer(torch.float16, (dim or 0,))
        self._length_buffer = GrowthBuffer(torch.long)

    @property
    def _tokens(self) -> torch.Tensor:
        """The used rows of the token buffer, ``(total_tokens, dim)`` fp16 (a view)."""
        return self._token_buffer.view

    @property
    def _lengths(self) -> torch.Tensor:
        """Tokens per document, ``(n_documents,)`` int64 (a view)."""
        return self._length_buffer.view

    @property
    def n_tokens(self) -> int:
        """Total number of stored token vectors."""
        return len(self._token_buffer)

    def embeddings(self) -> list[torch.Tensor]:
        """Every document's fp16 token matrix, in :attr:`ids` order (views into the store, no copy).

        This is how the vectors of an exact index are reused, e.g. to build a compressed index.
        """
        tokens, lengths = self._store()
        return list(tokens.split(lengths.tolist()))

    def _store(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed token store ``(total_tokens, dim)`` and lengths ``(n_documents,)``: views, no copy."""
        return self._tokens, self._lengths

    def _add_vectors(self, vectors: list[torch.Tensor]) -> None:
        # Write past the used rows, then publish both lengths: a failure part-way (even Ctrl-C
        # between the two appends) is undone by truncating back, and the used rows never change.
        marks = len(self._token_buffer), len(self._length_buffer)
        try:
            if self._token_buffer.width != (self.dim or 0,):
                self._token_buffer = GrowthBuffer(torch.float16, (self.dim or 0,))
            self._token_buffer.extend(vectors)
            self._length_buffer.append(torch.tensor([v.shape[0] for v in vectors], dtype=torch.long))
        except BaseException:
            self._token_buffer.truncate(marks[0])
            self._length_buffer.truncate(marks[1])
            raise

    def _remove_positions(self, drop: torch.Tensor) -> None:
        tokens, lengths = self._store()
        keep = ~torch.repeat_interleave(drop, lengths)
        self._token_buffer = GrowthBuffer.of(tokens[keep])
        self._length_buffer = GrowthBuffer.of(lengths[~drop])

    def _search(
        self, queries: list[torch.Tensor], k: int, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, lengths = self._store()
        if candidates is not None:
            tokens, lengths = _gather_documents(tokens, lengths, candidates)
        scores = maxsim_stored(queries, tokens, lengths, device=self.device).cpu()
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        positions = top.indices if candidates is None else candidates[top.indices]
        return top.values, positions

    def _write(self, folder: Path) -> dict[str, Any]:
        tokens, lengths = self._store()
        _io.save_array(folder, "tokens", tokens.numpy())
        _io.save_array(folder, "lengths", lengths.numpy())
        return {"n_tokens": int(lengths.sum()), "dtype": "float16"}

    def _read(self, folder: Path, manifest: dict[str, Any]) -> None:
        n_docs, n_tokens = len(self._ids), manifest["n_tokens"]
        if manifest["dtype"] != "float16":
            raise CorruptIndexError(f"{folder}: manifest field 'dtype' must be 'float16', got {manifest['dtype']!r}.")
        lengths = _io.load_array(folder, "lengths", dtype=np.int64, shape=(n_docs,))
        if n_docs and (int(lengths.min()) < 1 or int(lengths.sum()) != n_tokens):
            raise CorruptIndexError(
                f"{folder / 'lengths.npy'}: document lengths must be >= 1 and sum to n_tokens={n_tokens}; "
                "the saved index is damaged."
            )
        if n_tokens != int(lengths.sum()):
            raise CorruptIndexError(f"{folder}: field 'n_tokens' of the manifest says {n_tokens} for an empty index.")
        tokens = _io.load_array(folder, "tokens", dtype=np.float16, shape=(n_tokens, self.dim or 0))
        if _io.has_non_finite(tokens):
            raise CorruptIndexError(f"{folder / 'tokens.npy'} holds NaN or infinite values; the index is damaged.")
        self._token_buffer = GrowthBuffer.of(torch.from_numpy(tokens))
        self._length_buffer = GrowthBuffer.of(torch.from_numpy(lengths))


class GrowthBuffer:
    """A tensor that grows by appending rows, with capacity doubling (amortised O(1) per row).

    :attr:`view` is the used rows (a view of the buffer, no copy); appends write after them and
    reallocate (copying the used rows once) only when the capacity runs out. ``width`` is the shape
    of one row. Rows past the used ones are scratch: :meth:`truncate` forgets appended rows.
    """

    def __init__(self, dtype: torch.dtype, width: tuple[int, ...] = (), *, device: torch.device | str = "cpu") -> None:
        self.width = tuple(width)
        self._data = torch.empty((0, *self.width), dtype=dtype, device=device)
        self._used = 0

    @classmethod
    def of(cls, rows: torch.Tensor) -> GrowthBuffer:
        """A buffer holding exactly ``rows`` (no copy; the next append reallocates)."""
        buffer = cls(rows.dtype, tuple(rows.shape[1:]), device=rows.device)
        buffer._data, buffer._used = rows, rows.shape[0]
        return buffer

    def __len__(self) -> int:
        return self._used

    @property
    def view(self) -> torch.Tensor:
        """The used rows ``(len(self), *width)``."""
        return self._data[: self._used]

    @property
    def capacity(self) -> int:
        return self._data.shape[0]

    def reserve(self, n_rows: int) -> None:
        """Make room for ``n_rows`` rows in all (at least doubling when it has to grow)."""
        if n_rows <= self.capacity:
            return
        grown = torch.empty(
            (max(n_rows, 2 * self.capacity, 16), *self.width), dtype=self._data.dtype, device=self._data.device
        )
        grown[: self._used] = self._data[: self._used]
        self._data = grown

    def append(self, rows: torch.Tensor) -> None:
        """Append ``rows (n, *width)`` (converted to the buffer's dtype and device)."""
        self.extend([rows])

    def extend(self, parts: Sequence[torch.Tensor]) -> None:
        """Append each ``(n_i, *width)`` part in order."""
        total = sum(part.shape[0] for part in parts)
        self.reserve(self._used + total)
        at = self._used
        for part in parts:
            self._data[at : at + part.shape[0]] = part.detach()
            at += part.shape[0]
        self._used = at

    def claim(self, n_rows: int) -> torch.Tensor:
        """Append ``n_rows`` uninitialised rows and return them, a view to fill in place."""
        self.reserve(self._used + n_rows)
        self._used += n_rows
        return self._data[self._used - n_rows : self._used]

    def truncate(self, n_rows: int) -> None:
        """Forget every row from ``n_rows`` on."""
        self._used = min(self._used, n_rows)


def ragged_rows(starts: torch.Tensor, lengths: torch.Tensor, *, owner: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenated ``arange(start, start + length)`` for every (start, length) pair, without a loop.

    ``owner``, when the caller has it, is ``repeat_interleave(arange(len(lengths)), lengths)``.
    """
    shift = starts - (torch.cumsum(lengths, 0) - lengths)
    shift = torch.repeat_interleave(shift, lengths) if owner is None else shift.index_select(0, owner)
    return shift + torch.arange(shift.numel(), device=lengths.device)


def _gather_documents(
    tokens: torch.Tensor, lengths: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The packed tokens and lengths of the documents at ``positions``, in that order."""
    starts = torch.cumsum(lengths, 0) - lengths
    sub_lengths = lengths[positions]
    return tokens[ragged_rows(starts[positions], sub_lengths)], sub_lengths


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# Index kinds and the module defining each, imported only when an index of that kind is loaded.
_KIND_MODULES = {"exact": __name__, "plaid": __name__.rsplit(".", 1)[0] + ".plaid"}


def _index_class(kind: str) -> type[Index]:
    import importlib

    module = importlib.import_module(_KIND_MODULES[kind])
    return next(
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Index) and getattr(c, "kind", None) == kind
    )


def create_index(kind: str = "exact", **options: Any) -> Index:
    """A new, empty index of ``kind`` (``"exact"`` or ``"plaid"``); ``options`` go to its constructor.

    Example:
        >>> create_index("plaid", config=PLAIDConfig(nbits=2))  # doctest: +SKIP
    """
    if not isinstance(kind, str) or kind not in _KIND_MODULES:
        raise InvalidInputError(f"index kind must be one of {sorted(_KIND_MODULES)}, got {kind!r}.")
    return _index_class(kind)(**options)


def load_index(path: str | Path, **options: Any) -> Index:
    """Load any saved index, whatever its kind."""
    return Index.load(path, **options)
