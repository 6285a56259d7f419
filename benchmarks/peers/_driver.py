"""What every peer driver shares: reading the exported embeddings, timing queries, writing the result.

A peer driver runs in the peer's own virtual environment (numpy and the standard library are all
this module needs; no ``lateint_plugins``), started by ``benchmarks/bench_index.py`` as::

    PEER_PYTHON benchmarks/peers/peer_NAME.py --input EXPORT --output RESULT.json --workdir TMP \
        --threads 2 --k 100 [--queries N] [--warmup 5]

``EXPORT`` is the folder ``bench_index.py`` writes once per dataset (see :func:`load_export`):

* ``doc_ids.json``: document ids, in storage order;
* ``doc_lengths.npy``: ``(n_documents,)`` int64 token counts;
* ``doc_tokens.npy``: ``(n_tokens, dim)`` float16, every document's L2-normalised token vectors,
  concatenated in ``doc_ids`` order;
* ``query_ids.json``, ``query_lengths.npy``, ``query_tokens.npy`` (float32): the same for queries.

The driver writes one JSON object: the same fields as ``bench_index.py``'s own builds (build
seconds, disk bytes, peak RSS, every query's latency and ranked ids per search setting), or
``{"error": "..."}`` saying why the peer could not run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common needs only the standard library
from _common import peak_rss_mib as peak_rss_mib  # re-exported to the peer scripts

WARMUP_QUERIES = 5


@dataclass
class Export:
    """The exported embeddings (document tokens memory-mapped, not loaded)."""

    path: Path
    doc_ids: list[str]
    doc_lengths: np.ndarray  # (n_documents,) int64
    doc_tokens: np.ndarray  # (n_tokens, dim) float16, memory-mapped
    query_ids: list[str]
    queries: list[np.ndarray]  # each (n_query_tokens, dim) float32

    @property
    def dim(self) -> int:
        return int(self.doc_tokens.shape[1])

    @property
    def n_tokens(self) -> int:
        return int(self.doc_tokens.shape[0])

    def offsets(self) -> np.ndarray:
        """``(n_documents + 1,)`` start of each document's rows in ``doc_tokens``."""
        return np.concatenate([[0], np.cumsum(self.doc_lengths)])

    def chunks(self, chunk_docs: int, dtype: Any = np.float32) -> Iterator[tuple[list[str], list[np.ndarray]]]:
        """Documents ``chunk_docs`` at a time: (ids, per-document ``(n_i, dim)`` arrays in ``dtype``)."""
        offsets = self.offsets()
        for start in range(0, len(self.doc_ids), chunk_docs):
            stop = min(start + chunk_docs, len(self.doc_ids))
            block = npy_rows(self.path / "doc_tokens.npy", offsets[start], offsets[stop]).astype(dtype, copy=False)
            bounds = offsets[start : stop + 1] - offsets[start]
            yield self.doc_ids[start:stop], [block[a:b] for a, b in itertools.pairwise(bounds)]

    def documents(self, dtype: Any = np.float32) -> list[np.ndarray]:
        """Every document's ``(n_i, dim)`` token matrix, in ``dtype`` (loaded into memory)."""
        return [doc for _, docs in self.chunks(len(self.doc_ids), dtype) for doc in docs]


def load_export(folder: Path, n_queries: int | None = None) -> Export:
    """Read an export folder (see the module docstring); the first ``n_queries`` queries."""
    doc_ids = json.loads((folder / "doc_ids.json").read_text(encoding="utf-8"))
    doc_lengths = np.load(folder / "doc_lengths.npy")
    doc_tokens = np.load(folder / "doc_tokens.npy", mmap_mode="r")
    query_ids = json.loads((folder / "query_ids.json").read_text(encoding="utf-8"))
    query_lengths = np.load(folder / "query_lengths.npy")
    query_tokens = np.load(folder / "query_tokens.npy")
    n = len(query_ids) if n_queries is None else min(n_queries, len(query_ids))
    bounds = np.concatenate([[0], np.cumsum(query_lengths)])
    queries = [np.ascontiguousarray(query_tokens[bounds[i] : bounds[i + 1]], dtype=np.float32) for i in range(n)]
    if int(doc_lengths.sum()) != doc_tokens.shape[0] or len(doc_ids) != len(doc_lengths):
        raise ValueError(f"{folder}: doc_lengths, doc_ids and doc_tokens.npy disagree; re-export it.")
    return Export(folder, doc_ids, doc_lengths, doc_tokens, query_ids[:n], queries)


def npy_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a 2-D ``.npy`` file by plain reads (a memory map would stay in RSS)."""
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(f)
        f.seek(f.tell() + int(start) * shape[1] * dtype.itemsize)
        out = np.fromfile(f, dtype=dtype, count=int(stop - start) * shape[1])
    return out.reshape(int(stop - start), shape[1])


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def time_searches(
    label: str,
    setting: Any,
    search: Callable[[np.ndarray, int], Sequence[str]],
    export: Export,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Warm-up queries, then each query timed alone at ``setting``: latencies (ms) and ranked ids per query id."""
    for q in export.queries[: args.warmup]:
        search(q, args.k)
    latencies, run = [], {}
    for qid, q in zip(export.query_ids, export.queries, strict=True):
        start = time.perf_counter()
        ids = list(search(q, args.k))
        latencies.append((time.perf_counter() - start) * 1e3)
        run[qid] = [str(i) for i in ids]
    log(f"{label}: median {np.median(latencies):.1f} ms/query")
    return {"search_config": repr(setting), "latencies_ms": latencies, "run": run}


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", type=Path, required=True, help="export folder written by bench_index.py")
    parser.add_argument("--output", type=Path, required=True, help="JSON result file to write")
    parser.add_argument("--workdir", type=Path, required=True, help="scratch folder for the index")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--k", type=int, default=100, help="hits per query")
    parser.add_argument("--queries", type=int, default=None, help="first N queries (None: all exported)")
    parser.add_argument("--warmup", type=int, default=WARMUP_QUERIES, help="untimed queries per setting")
    parser.add_argument("--chunk-docs", type=int, default=4096, help="documents per add call where streamed")
    return parser.parse_args(argv)


def set_threads(threads: int) -> None:
    """Thread counts for the native pools a peer may use; call before importing the peer."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[name] = str(threads)


def run_driver(
    engine: str,
    package: str,
    body: Callable[[argparse.Namespace, Export, dict[str, Any]], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, load the export, call ``body(args, export, result)`` and write ``result``.

    ``body`` fills ``result`` with ``build_seconds``, ``disk_bytes``, ``peak_rss_mib`` and
    ``searches`` (label -> :func:`time_searches` output plus ``search_config``). Any exception is
    written as ``{"error": ...}`` so the benchmark table can say why this peer did not run.
    """
    args = parse_args(f"{engine} driver for benchmarks/bench_index.py", argv)
    set_threads(args.threads)
    result: dict[str, Any] = {"engine": engine, "package": package, "version": version(package)}
    try:
        export = load_export(args.input, args.queries)
        result.update(n_documents=len(export.doc_ids), n_tokens=export.n_tokens, dim=export.dim)
        args.workdir.mkdir(parents=True, exist_ok=True)
        body(args, export, result)
        code = 0
    except BaseException as exc:  # reported to the parent, which prints the reason
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}".strip()[:500]
        code = 1
    args.output.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return code


def log(message: str) -> None:
    """Progress to stderr (the parent shows it as it runs)."""
    print(f"[peer] {message}", file=sys.stderr, flush=True)
