"""Reads straight from qdrant-client's embedded local mode (``QdrantClient(":memory:")`` / ``path=...``).

Local mode keeps every vector in numpy arrays inside the client process, but its public API hands
token vectors back as pydantic float lists and scores a sparse query by a pure-Python merge over
every document; at SciFact scale those two take most of a query's second. When the client is in
local mode, at a qdrant-client version whose internals this module was checked against, the store
reads the candidates' token matrices as arrays and answers the BM25 prefetch from an inverted index
built here. Everything else (servers, other versions, internals that moved) takes the public API,
which gives the same results: tests run both paths.

The inverted index is rebuilt whenever the collection's sparse vectors changed: it keeps a reference
to every ``SparseVector`` object it was built from and compares them by identity on each query (local
mode replaces the object of a point it updates), so a write through any client object is seen.
"""

from __future__ import annotations

import copy
import functools
import logging
import operator
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_TESTED = ((1, 12), (1, 21))
"""qdrant-client versions ``[low, high)`` whose local-mode internals this module reads."""
_ATTRS = ("ids", "ids_inv", "payload", "deleted", "deleted_per_vector", "vectors", "multivectors", "sparse_vectors")


@dataclass
class LocalPoint:
    """A point read from local mode's arrays: what the store's read path uses of a ``models.Record``."""

    id: str
    payload: dict[str, Any]
    vector: dict[str, np.ndarray]


@functools.cache
def _version_ok() -> bool:
    try:
        from importlib.metadata import version

        parts = tuple(int(p) for p in version("qdrant-client").split(".")[:2])
    except Exception:  # unknown or odd version string: take the public API
        return False
    return _TESTED[0] <= parts < _TESTED[1]


def local_collection(client: Any, name: str) -> Any | None:
    """The local-mode collection behind ``client``, or None: a server, an untested version, or moved internals."""
    try:
        from qdrant_client import QdrantClient
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:
        return None
    if not isinstance(client, QdrantClient) or not _version_ok():
        return None
    inner = getattr(client, "_client", None)
    if not isinstance(inner, QdrantLocal):
        return None
    collection = getattr(inner, "collections", {}).get(name)
    if collection is None or not all(hasattr(collection, a) for a in _ATTRS):
        return None
    return collection


def _index_of(collection: Any, point_id: str) -> int | None:
    idx = collection.ids.get(point_id)
    if idx is None or idx >= len(collection.payload) or collection.deleted[idx]:
        return None
    return int(idx)


def read_points(collection: Any, ids: Sequence[str], fields: Sequence[str], vector: str | None) -> list[LocalPoint]:
    """The points ``ids`` that exist: the payload ``fields`` they have and their ``vector`` as a float32 array.

    ``vector=None`` reads the payload only (``vector`` is then ``{}``).

    Like ``client.retrieve(ids, with_payload=fields, with_vectors=[vector])`` (missing points are
    skipped, the order of ``ids`` kept), without turning the vectors into lists. ``ids`` must be
    canonical UUID strings (what :func:`~lateint_plugins.qdrant.layout.point_id` gives).
    """
    out = []
    deleted = collection.deleted_per_vector.get(vector) if vector is not None else None
    for pid in ids:
        idx = _index_of(collection, pid)
        if idx is None:
            continue
        payload = collection.payload[idx]
        vectors = {}
        if vector is not None and (deleted is None or not deleted[idx]):
            vectors[vector] = np.asarray(collection.multivectors[vector][idx], dtype=np.float32)
        out.append(LocalPoint(pid, {k: _copied(payload[k]) for k in fields if k in payload}, vectors))
    return out


def _copied(value: Any) -> Any:
    # The collection's own objects must not reach callers; scalars (the bookkeeping fields) need no copy.
    return value if isinstance(value, (str, int, float, bool, type(None))) else copy.deepcopy(value)


def top_pooled(collection: Any, name: str, query: Sequence[float], depth: int) -> list[int]:
    """Internal ids of the ``depth`` best live points by the cosine vector ``name``, as local mode ranks them."""
    from qdrant_client import models
    from qdrant_client.local.distances import calculate_distance

    n = len(collection.payload)
    # np.array of the list, as local mode converts a query (float64), so the scores are the same bits.
    scores = calculate_distance(np.array(query), collection.vectors[name][:n], models.Distance.COSINE)
    live = _live(collection, name, n)
    return _top(scores, live, depth)


def _live(collection: Any, name: str, n: int) -> np.ndarray:
    # Local mode's deletion flags are int arrays once points were appended (np.append): compare, don't invert.
    return (np.asarray(collection.deleted[:n]) == 0) & (np.asarray(collection.deleted_per_vector[name][:n]) == 0)


def _top(scores: np.ndarray, live: np.ndarray, depth: int) -> list[int]:
    # The order local mode's search uses (argsort, reversed, masked points skipped), so that ties at
    # the cut fall the same way.
    order = np.argsort(scores)[::-1]
    order = order[live[order] & (scores[order] > -np.inf)]
    return order[:depth].tolist()


class _Postings:
    """An inverted index of one sparse vector field: term -> (internal ids, float64 weights)."""

    def __init__(self, vectors: list[Any]) -> None:
        self.source = list(vectors)  # holds the objects, so identity comparison is sound
        lengths = np.fromiter((len(v.indices) for v in self.source), dtype=np.int64, count=len(self.source))
        terms = np.fromiter((t for v in self.source for t in v.indices), dtype=np.int64, count=int(lengths.sum()))
        weights = np.fromiter((w for v in self.source for w in v.values), dtype=np.float64, count=len(terms))
        docs = np.repeat(np.arange(len(self.source), dtype=np.int64), lengths)
        order = np.argsort(terms, kind="stable")  # each term's postings in document order
        self.terms, self.docs, self.weights = terms[order], docs[order], weights[order]

    def fresh(self, vectors: list[Any]) -> bool:
        return len(vectors) == len(self.source) and all(map(operator.is_, vectors, self.source))

    def scores(self, indices: Sequence[int], values: Sequence[float], n: int) -> np.ndarray:
        """Sparse dot products as local mode computes them: float64 sums in index order, float32, -inf if disjoint."""
        total = np.zeros(n, dtype=np.float64)
        hit = np.zeros(n, dtype=bool)
        for term, value in sorted(zip(indices, values, strict=True)):
            lo, hi = np.searchsorted(self.terms, [term, term + 1])
            docs, weights = self.docs[lo:hi], self.weights[lo:hi]
            keep = docs < n
            total[docs[keep]] += value * weights[keep]
            hit[docs[keep]] = True
        out = total.astype(np.float32)
        out[~hit] = -np.inf
        return out


_POSTINGS: weakref.WeakKeyDictionary[Any, dict[str, _Postings]] = weakref.WeakKeyDictionary()
_POSTINGS_GUARD = threading.Lock()


def _postings(collection: Any, name: str) -> _Postings:
    vectors = collection.sparse_vectors[name]
    with _POSTINGS_GUARD:
        cached = _POSTINGS.get(collection, {}).get(name)
    if cached is not None and cached.fresh(vectors):
        return cached
    built = _Postings(vectors)
    with _POSTINGS_GUARD:
        _POSTINGS.setdefault(collection, {})[name] = built
    logger.debug("Built the inverted index of sparse field %r (%d points)", name, len(built.source))
    return built


def top_sparse(collection: Any, name: str, indices: Sequence[int], depth: int) -> list[int]:
    """Internal ids of the ``depth`` best live points by the IDF-weighted sparse field ``name`` (unit query weights)."""
    from qdrant_client import models

    query = collection._rescore_idf(models.SparseVector(indices=list(indices), values=[1.0] * len(indices)), name)
    n = len(collection.payload)
    postings = _postings(collection, name)
    scores = postings.scores(query.indices, query.values, n)
    live = _live(collection, name, n)
    return _top(scores, live, depth)


def point_ids(collection: Any, internal: Sequence[int]) -> list[str]:
    """The point ids of internal ids."""
    return [str(collection.ids_inv[i]) for i in internal]
