"""Stanford ColBERT (``colbert-ai``) PLAID over the exported embeddings, for bench_index.py.

colbert-ai encodes passages itself, so the driver runs its own ``CollectionIndexer`` in-process
with the encoder replaced by a lookup into the exported token vectors (passage ``i`` is the text
``"i"``) and no checkpoint loaded; everything else (sampling, FAISS k-means, residual buckets, the
saved chunks, the IVF) is colbert-ai's code at its defaults (``nbits=2``, ``kmeans_niters=4``).
Queries go straight to ``IndexScorer.rank`` (what ``Searcher.dense_search`` calls after encoding).

Settings searched, k=100 each:

* ``default``: what ``Searcher.dense_search`` picks for ``k <= 100``: ``ncells=2``,
  ``centroid_score_threshold=0.45``, ``ndocs=1024``;
* ``fast``: its ``k <= 10`` setting, the fastest it ships: ``ncells=1``, threshold 0.5, ``ndocs=256``.

The C++ extensions colbert-ai compiles with ninja on first use are loaded before the build is timed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _driver import Export, folder_bytes, log, peak_rss_mib, run_driver, time_searches

NBITS = 2
SETTINGS = {
    "default": {"ncells": 2, "centroid_score_threshold": 0.45, "ndocs": 1024},
    "fast": {"ncells": 1, "centroid_score_threshold": 0.5, "ndocs": 256},
}


def body(args: Any, export: Export, result: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import colbert.indexing.collection_indexer as collection_indexer
    from colbert.indexing.codecs.residual import ResidualCodec
    from colbert.indexing.collection_encoder import CollectionEncoder
    from colbert.infra import ColBERTConfig, Run, RunConfig
    from colbert.modeling.colbert import ColBERT
    from colbert.search.index_storage import IndexScorer
    from colbert.search.strided_tensor import StridedTensor

    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass

    log("loading the C++ extensions (compiled with ninja on first use; not timed)")
    start = time.perf_counter()
    for owner in (IndexScorer, StridedTensor, ColBERT, ResidualCodec):
        owner.try_load_torch_extensions(False)  # ColBERT's own is normally loaded by the (skipped) model
    result["extension_load_seconds"] = time.perf_counter() - start

    offsets = export.offsets()
    tokens = export.doc_tokens

    def encode_passages(self: Any, passages: list[str]) -> tuple[Any, list[int]] | tuple[None, None]:
        """colbert-ai's encoder, replaced: passage "i" -> document i's stored vectors (float32)."""
        if not passages:
            return None, None
        rows = [int(p) for p in passages]
        embs = np.concatenate([np.asarray(tokens[offsets[i] : offsets[i + 1]], dtype=np.float32) for i in rows])
        return torch.from_numpy(embs), [int(offsets[i + 1] - offsets[i]) for i in rows]

    collection_indexer.Checkpoint = lambda *a, **kw: None  # no model: vectors come from the export
    CollectionEncoder.encode_passages = encode_passages

    index_path = Path(args.workdir) / "colbert-index"
    collection = [str(i) for i in range(len(export.doc_ids))]
    config = ColBERTConfig(
        nbits=NBITS,
        dim=export.dim,
        doc_maxlen=int(export.doc_lengths.max()),
        index_path=str(index_path),
        avoid_fork_if_possible=True,
    )
    rss_inputs = peak_rss_mib()
    # An index built earlier in this workdir from the same export is reused (bench_index.py
    # --peer-workdir): only the searches run, and the build figures are the earlier build's.
    record = Path(args.workdir) / "build.json"
    source = {"export": str(Path(args.input).resolve()), "n_tokens": int(export.n_tokens)}
    earlier = json.loads(record.read_text()) if record.is_file() else None
    if earlier is not None and earlier.get("source") == source:
        build_seconds, rss_built = earlier["build_seconds"], earlier["rss_built"]
        result["reused_build"] = {"built_at": earlier["built_at"], "load_average": earlier.get("load_average")}
        log(f"reusing the index built at {earlier['built_at']} ({build_seconds:.1f} s)")
    else:
        log(f"building: {len(collection)} documents, {export.n_tokens} tokens")
        with Run().context(RunConfig(nranks=1, experiment="bench", root=str(args.workdir))):
            index_path.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            collection_indexer.encode(config, collection, [[None]], [], verbose=0)
            build_seconds = time.perf_counter() - start
        rss_built = peak_rss_mib()
        log(f"built in {build_seconds:.1f} s")
        built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fields = {"source": source, "build_seconds": build_seconds, "rss_built": rss_built, "built_at": built_at}
        record.write_text(json.dumps({**fields, "load_average": os.getloadavg()}))

    with Run().context(RunConfig(nranks=1, experiment="bench", root=str(args.workdir))):
        start = time.perf_counter()
        scorer = IndexScorer(str(index_path), use_gpu=False, load_index_with_mmap=False)
        load_seconds = time.perf_counter() - start
        searches = {}
        for label, setting in SETTINGS.items():
            search_config = ColBERTConfig.from_existing(config, ColBERTConfig(**setting))

            def search(q: np.ndarray, k: int, search_config: Any = search_config) -> list[str]:
                pids, _ = scorer.rank(search_config, torch.from_numpy(q).unsqueeze(0))
                return [export.doc_ids[p] for p in pids[:k]]

            searches[label] = time_searches(label, setting, search, export, args)

    result.update(
        build="colbert-ai plaid-2bit",
        index="colbert-ai PLAID",
        plaid_config=f"ColBERTConfig(nbits={NBITS}, kmeans_niters={config.kmeans_niters})",
        n_centroids=int(scorer.codec.centroids.shape[0]),
        build_seconds=build_seconds,
        load_seconds=load_seconds,
        disk_bytes=folder_bytes(index_path),
        peak_rss_mib={"inputs_loaded": rss_inputs, "after_build": rss_built, "end": peak_rss_mib()},
        searches=searches,
    )


if __name__ == "__main__":
    sys.exit(run_driver("Stanford ColBERT PLAID", "colbert-ai", body))
