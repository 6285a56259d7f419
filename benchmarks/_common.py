"""Helpers shared by the benchmark scripts: what machine and which versions produced a number."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / ".." / "shared" / "models" / "answerai-colbert-small-v1"
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "scifact"
DEFAULT_CACHE = ROOT / "benchmarks" / "cache" / "scifact-answerai"  # the encoded corpus, shared by the benchmarks

logger = logging.getLogger("benchmarks")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` is carried across ``execve``, so a benchmark's child process
    would report its parent's peak (11 GiB for PyLate's trainer started by ``bench_train.py``).
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """HEAD's commit, with ``+dirty`` when the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def add_data_arguments(parser: argparse.ArgumentParser, *, split: bool = True, cache_help: str | None = None) -> None:
    """``--model`` and ``--data`` (with ``--split``, and ``--cache`` when ``cache_help`` says what it holds)."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL.resolve(), help="local ColBERT checkpoint folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA.resolve(), help="BEIR dataset folder")
    if split:
        parser.add_argument("--split", default="test", help="qrels split whose queries are run")
    if cache_help is not None:
        parser.add_argument(
            "--cache",
            type=Path,
            default=DEFAULT_CACHE,
            help=f"saved LateInteractionStore of the corpus (encoded and saved here when missing); {cache_help}",
        )


def prepare_process() -> None:
    """Process set-up common to the benchmarks: offline Hub, logging.

    Call before transformers / huggingface_hub are imported: they read HF_HUB_OFFLINE once, at import.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def machine_lines(machine: dict[str, Any]) -> list[str]:
    """The machine and versions lines closing every benchmark table."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    return [
        f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, {machine['platform']}",
        f"versions: {versions}",
    ]


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: other processes' load shifts latencies, so every report records it."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(torch: Any, device: str, packages: Sequence[str]) -> dict[str, Any]:
    """Machine, torch threads, device (and GPU name), ``packages``' versions, git revision and load."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "versions": {name: package_version(name) for name in (*packages, "lateint-plugins")},
        "git_revision": git_revision(),
        "load_average_start": load_average(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# ---------------------------------------------------------------------- the encoded-corpus cache
def check_inputs(script: str, model: Path, data: Path, split: str, cache: Path) -> None:
    """Exit with a message saying what is missing and how to point at it."""
    problems = []
    if not data.is_dir():
        problems.append(f"data folder {data} does not exist (pass --data PATH to a BEIR folder)")
    elif not (data / "qrels" / f"{split}.tsv").is_file():
        problems.append(f"data folder {data} has no qrels/{split}.tsv (pass --split or another --data)")
    if not model.is_dir():
        problems.append(f"model folder {model} does not exist (pass --model PATH to a local checkpoint folder)")
    if cache.exists() and not (cache / "manifest.json").is_file():
        problems.append(f"--cache {cache} exists but holds no saved store (no manifest.json); pass an empty path")
    if problems:
        raise SystemExit(f"{script}: " + "; ".join(problems) + ".")


def corpus_texts(corpus: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
    """Document ids and ``title + " " + text`` as in BEIR; an empty document stops the run."""
    ids = list(corpus)
    texts = [f"{corpus[i].get('title', '')} {corpus[i].get('text', '')}".strip() for i in ids]
    empty = [i for i, t in zip(ids, texts, strict=True) if not t]
    if empty:
        raise SystemExit(f"{len(empty)} corpus documents are empty (first {empty[:5]}).")
    return ids, texts


def encode_corpus_once(
    cache: Path, corpus: dict[str, dict[str, str]], model: Path, device: str, batch_size: int
) -> float | None:
    """Encode ``corpus`` into an exact store saved at ``cache`` unless one is there.

    Returns the seconds spent encoding, or None when the cache already held a store.
    """
    if (cache / "manifest.json").is_file():
        return None
    from lateint_plugins.core import ColBERTEncoder, LateInteractionStore

    logger.info("No store at %s: encoding %d documents (once; later runs reuse it)", cache, len(corpus))
    store = LateInteractionStore(ColBERTEncoder.from_pretrained(model, device=device, local_files_only=True))
    ids, texts = corpus_texts(corpus)
    start = time.perf_counter()
    store.add_texts(texts, ids=ids, batch_size=batch_size, show_progress_bar=True)
    seconds = time.perf_counter() - start
    store.save(cache)
    return seconds


def query_embeddings_once(
    cache: Path, split: str, queries: dict[str, str], model: Path, device: str, batch_size: int
) -> tuple[Path, float | None]:
    """The cached query embeddings file for exactly these queries, encoded on a miss.

    The key covers the model folder, the cached store's encoder settings (queries are encoded with
    the settings the documents were) and every query id and text. Returns the file (a dict of
    ``ids`` and float32 ``embeddings``) and the seconds spent encoding (None on a hit).
    """
    import torch

    manifest = json.loads((cache / "manifest.json").read_text(encoding="utf-8"))
    encoder_config = dict(manifest.get("encoder_config") or {})
    key = json.dumps(
        {"model": str(model), "encoder_config": encoder_config, "queries": list(queries.items())}, sort_keys=True
    )
    path = cache / f"queries-{split}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}.pt"
    if path.is_file():
        return path, None
    from lateint_plugins.core import ColBERTEncoder

    if "skiplist_words" in encoder_config:
        encoder_config["skiplist_words"] = tuple(encoder_config["skiplist_words"])
    logger.info("Encoding %d queries (cached as %s)", len(queries), path)
    encoder = ColBERTEncoder.from_pretrained(model, device=device, local_files_only=True, **encoder_config)
    start = time.perf_counter()
    vectors = encoder.encode_queries(list(queries.values()), batch_size=batch_size)
    seconds = time.perf_counter() - start
    tmp = path.with_suffix(".tmp")
    torch.save({"ids": list(queries), "embeddings": [v.float().cpu() for v in vectors]}, tmp)
    os.replace(tmp, path)
    return path, seconds
