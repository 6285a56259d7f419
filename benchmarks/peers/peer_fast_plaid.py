"""fast-plaid (LightOn's Rust + torch PLAID) over the exported embeddings, for bench_index.py.

``fast_plaid.search.FastPlaid(index=..., device="cpu").create(documents_embeddings=[...])`` at its
defaults (``nbits=4``, ``kmeans_niters=4``); queries one at a time through ``search``.
Settings searched, k=100 each: ``default`` (the installed version's defaults; 1.1.0: ``n_ivf_probe=8,
n_full_scores=8192``) and ``fast``
(``n_ivf_probe=4, n_full_scores=1024``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _driver import Export, folder_bytes, log, peak_rss_mib, run_driver, time_searches

SETTINGS = {"default": {}, "fast": {"n_ivf_probe": 4, "n_full_scores": 1024}}


def body(args: Any, export: Export, result: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from fast_plaid import search as fast_plaid_search

    folder = Path(args.workdir) / "fast-plaid"
    documents = [torch.from_numpy(d) for d in export.documents(np.float32)]
    rss_inputs = peak_rss_mib()
    log(f"building: {len(documents)} documents")
    start = time.perf_counter()
    index = fast_plaid_search.FastPlaid(index=str(folder), device="cpu")
    index.create(documents_embeddings=documents)
    build_seconds = time.perf_counter() - start
    rss_built = peak_rss_mib()
    log(f"built in {build_seconds:.1f} s")
    del documents

    searches = {}
    for label, setting in SETTINGS.items():

        def search(q: np.ndarray, k: int, setting: dict[str, int] = setting) -> list[str]:
            hits = index.search(
                queries_embeddings=torch.from_numpy(q).unsqueeze(0), top_k=k, show_progress=False, **setting
            )
            return [export.doc_ids[int(doc)] for doc, _ in hits[0]]

        searches[label] = time_searches(label, setting, search, export, args)

    result.update(
        build="fast-plaid",
        index="fast-plaid (nbits=4)",
        plaid_config="defaults",
        n_centroids=None,
        build_seconds=build_seconds,
        disk_bytes=folder_bytes(folder),
        peak_rss_mib={"inputs_loaded": rss_inputs, "after_build": rss_built, "end": peak_rss_mib()},
        searches=searches,
    )


if __name__ == "__main__":
    sys.exit(run_driver("fast-plaid", "fast-plaid", body))
