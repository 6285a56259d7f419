"""PyLate's PLAID index (``pylate.indexes.PLAID``) over the exported embeddings, for bench_index.py.

PyLate's default backend is fast-plaid (``use_fast=True``); when fast-plaid cannot be imported in
this environment (its wheels pin another torch), the driver says so in the result and measures
PyLate's other backend, its vendored Stanford PLAID (``use_fast=False``), at PyLate's defaults
otherwise (``nbits=4``). Documents go in through
``add_documents`` (one call, PyLate batches internally), queries one at a time through the index's
``__call__`` (what ``pylate.retrieve.ColBERT`` calls for an end-to-end index).

Settings searched, k=100 each:

* fast-plaid backend: ``default`` (``n_ivf_probe=8, n_full_scores=8192``) and ``fast``
  (``n_ivf_probe=4, n_full_scores=1024``);
* Stanford backend: ``default`` (``ncells=8, centroid_score_threshold=0.35, ndocs=8192``) and
  ``fast`` (``ncells=1``, threshold 0.5, ``ndocs=256``, colbert-ai's fastest).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _driver import Export, folder_bytes, log, peak_rss_mib, run_driver, time_searches

FAST_PLAID_SETTINGS = {
    "default": {"n_ivf_probe": 8, "n_full_scores": 8192},
    "fast": {"n_ivf_probe": 4, "n_full_scores": 1024},
}
STANFORD_SETTINGS = {
    "default": {"ncells": 8, "centroid_score_threshold": 0.35, "ndocs": 8192},
    "fast": {"ncells": 1, "centroid_score_threshold": 0.5, "ndocs": 256},
}


def body(args: Any, export: Export, result: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from pylate import indexes

    try:
        import fast_plaid  # noqa: F401

        use_fast = True
    except Exception as exc:  # any import failure: the backend cannot run here
        use_fast = False
        result["fast_plaid_backend"] = f"not importable: {type(exc).__name__}: {exc}"[:300]
        log(f"fast-plaid backend unavailable ({exc}); measuring PyLate's Stanford PLAID backend")
    if not use_fast:
        # PyLate's vendored Stanford code compiles the same C++ extensions as colbert-ai: not timed.
        from pylate.indexes.stanford_nlp.search.index_storage import IndexScorer

        start = time.perf_counter()
        IndexScorer.try_load_torch_extensions(use_gpu=False)
        result["extension_load_seconds"] = time.perf_counter() - start

    folder = Path(args.workdir) / "pylate-plaid"
    documents = export.documents(np.float32)
    rss_inputs = peak_rss_mib()
    log(f"building ({'fast-plaid' if use_fast else 'Stanford'} backend): {len(documents)} documents")
    start = time.perf_counter()
    if use_fast:
        index = indexes.PLAID(
            index_folder=str(folder), index_name="index", override=True, show_progress=False, device="cpu"
        )
    else:
        index = indexes.PLAID(
            index_folder=str(folder), index_name="index", override=True, use_fast=False, embedding_size=export.dim
        )
    index.add_documents(documents_ids=export.doc_ids, documents_embeddings=documents)
    build_seconds = time.perf_counter() - start
    rss_built = peak_rss_mib()
    log(f"built in {build_seconds:.1f} s")
    del documents

    backend = index._index
    settings = FAST_PLAID_SETTINGS if use_fast else STANFORD_SETTINGS
    searches = {}
    for label, setting in settings.items():
        if use_fast:
            for name, value in setting.items():
                setattr(backend, name, value)
        else:
            backend.searcher.configure(**setting)

        def search(q: np.ndarray, k: int) -> list[str]:
            return [hit["id"] for hit in index([q], k=k)[0]]

        searches[label] = time_searches(label, setting, search, export, args)

    result.update(
        build="pylate plaid" + ("" if use_fast else " (stanford backend)"),
        index="PyLate PLAID " + ("(fast-plaid)" if use_fast else "(Stanford backend, use_fast=False)"),
        plaid_config=f"nbits={getattr(backend, 'nbits', None) or backend.config.nbits}",
        n_centroids=None,
        build_seconds=build_seconds,
        disk_bytes=folder_bytes(folder),
        peak_rss_mib={"inputs_loaded": rss_inputs, "after_build": rss_built, "end": peak_rss_mib()},
        searches=searches,
    )


if __name__ == "__main__":
    sys.exit(run_driver("PyLate PLAID", "pylate", body))
