"""Qdrant's embedded engine (``qdrant-edge-py``) multivector MaxSim search, for bench_index.py.

One Edge shard, one multivector per document (``MultiVectorComparator.MaxSim``, dot product on the
L2-normalised vectors, stored as float16 like our exact index). Points are upserted in batches of
``--chunk-docs`` documents, then ``optimize()`` runs; build time covers both.

No HNSW graph (``m=0``, Qdrant's recommended set-up for ColBERT multivectors): an HNSW graph over
MaxSim distances took 1286 s to build for 600 SciFact documents on the 2-core benchmark machine
(``--hnsw`` builds one anyway, ``m=16, ef_construct=100``), hours for the full corpus. Search is
then Qdrant's exhaustive MaxSim over the fp16 multivectors. Settings searched, k=100 each:

* ``default``: plain search (a full scan without a graph);
* with ``--hnsw`` also ``fast``: ``hnsw_ef=100`` and ``exact``: ``SearchParams(exact=True)``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _driver import Export, folder_bytes, log, peak_rss_mib, run_driver, time_searches

HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}
NO_GRAPH = {"m": 0, "ef_construct": 100, "full_scan_threshold": 10_000}
SETTINGS = {"default": {}, "fast": {"hnsw_ef": 100}, "exact": {"exact": True}}


def body(args: Any, export: Export, result: dict[str, Any]) -> None:
    hnsw = "--hnsw" in sys.argv
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeVectorParams,
        HnswIndexConfig,
        MultiVectorComparator,
        MultiVectorConfig,
        Point,
        Query,
        QueryRequest,
        SearchParams,
        UpdateOperation,
        VectorStorageDatatype,
    )

    folder = Path(args.workdir) / "qdrant-edge"
    config = EdgeConfig(
        vectors=EdgeVectorParams(
            size=export.dim,
            distance=Distance.Dot,
            multivector_config=MultiVectorConfig(MultiVectorComparator.MaxSim),
            datatype=VectorStorageDatatype.Float16,
        ),
        hnsw_config=HnswIndexConfig(max_indexing_threads=args.threads, **(HNSW if hnsw else NO_GRAPH)),
        max_search_threads=args.threads,
    )
    rss_inputs = peak_rss_mib()
    log(f"building: {len(export.doc_ids)} documents")
    build_seconds = 0.0
    shard = EdgeShard.create(str(folder), config)
    position = 0
    for ids, docs in export.chunks(args.chunk_docs, np.float32):
        points = [Point(position + i, doc.tolist()) for i, doc in enumerate(docs)]
        position += len(ids)
        start = time.perf_counter()
        shard.update(UpdateOperation.upsert_points(points))
        build_seconds += time.perf_counter() - start
        del points
    start = time.perf_counter()
    shard.optimize()
    shard.flush()
    build_seconds += time.perf_counter() - start
    rss_built = peak_rss_mib()
    info = shard.info()
    result["shard_info"] = {
        "segments": info.segments_count,
        "points": info.points_count,
        "indexed_vectors": info.indexed_vectors_count,
    }
    log(f"built in {build_seconds:.1f} s: {result['shard_info']}")

    searches = {}
    for label, setting in SETTINGS.items() if hnsw else [("default", {})]:
        params = SearchParams(**setting) if setting else None

        def search(q: np.ndarray, k: int, params: Any = params) -> list[str]:
            hits = shard.query(QueryRequest(limit=k, query=Query.Nearest(q.tolist()), params=params))
            return [export.doc_ids[int(hit.id)] for hit in hits]

        searches[label] = time_searches(label, setting, search, export, args)
    shard.close()

    result.update(
        build="qdrant-edge " + ("hnsw" if hnsw else "plain"),
        index="Qdrant Edge multivector (MaxSim, fp16, " + ("HNSW m=16 ef_construct=100)" if hnsw else "no graph)"),
        plaid_config=None,
        n_centroids=None,
        build_seconds=build_seconds,
        disk_bytes=folder_bytes(folder),
        peak_rss_mib={"inputs_loaded": rss_inputs, "after_build": rss_built, "end": peak_rss_mib()},
        searches=searches,
    )


if __name__ == "__main__":
    sys.exit(run_driver("Qdrant Edge", "qdrant-edge-py", body, [a for a in sys.argv[1:] if a != "--hnsw"]))
