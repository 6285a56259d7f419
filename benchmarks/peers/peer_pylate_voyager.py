"""PyLate's Voyager index (HNSW over every token vector) over the exported embeddings, for bench_index.py.

``pylate.indexes.Voyager`` at its defaults (``M=64, ef_construction=200``); search is what
``pylate.retrieve.ColBERT.retrieve`` does for it: each query token's ``k_token`` nearest document
tokens, then the union of their documents re-ranked by exact MaxSim on their vectors (read back
from the Voyager index). Settings searched, k=100 each:

* ``default``: ``k_token=100`` (``retrieve.ColBERT``'s default), ``ef_search=200``;
* ``fast``: ``k_token=100`` with ``ef_search=100`` (the smallest that still returns 100 per token).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _driver import Export, folder_bytes, log, peak_rss_mib, run_driver, time_searches

SETTINGS = {"default": {"k_token": 100, "ef_search": 200}, "fast": {"k_token": 100, "ef_search": 100}}


def body(args: Any, export: Export, result: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from pylate import indexes, retrieve

    folder = Path(args.workdir) / "pylate-voyager"
    documents = export.documents(np.float32)
    rss_inputs = peak_rss_mib()
    log(f"building: {len(documents)} documents, {export.n_tokens} token vectors")
    start = time.perf_counter()
    index = indexes.Voyager(index_folder=str(folder), index_name="index", override=True, embedding_size=export.dim)
    index.add_documents(documents_ids=export.doc_ids, documents_embeddings=documents)
    build_seconds = time.perf_counter() - start
    rss_built = peak_rss_mib()
    log(f"built in {build_seconds:.1f} s")
    del documents

    retriever = retrieve.ColBERT(index=index)
    searches = {}
    for label, setting in SETTINGS.items():
        index.ef_search = setting["ef_search"]

        def search(q: np.ndarray, k: int, k_token: int = setting["k_token"]) -> list[str]:
            hits = retriever.retrieve(queries_embeddings=[q], k=k, k_token=k_token, device="cpu")
            return [hit["id"] for hit in hits[0]]

        searches[label] = time_searches(label, setting, search, export, args)

    result.update(
        build="pylate voyager",
        index="PyLate Voyager (HNSW, M=64, ef_construction=200)",
        plaid_config=None,
        n_centroids=None,
        build_seconds=build_seconds,
        disk_bytes=folder_bytes(folder),
        peak_rss_mib={"inputs_loaded": rss_inputs, "after_build": rss_built, "end": peak_rss_mib()},
        searches=searches,
    )


if __name__ == "__main__":
    sys.exit(run_driver("PyLate Voyager", "pylate", body))
