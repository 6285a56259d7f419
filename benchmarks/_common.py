"""Helpers shared by the benchmark scripts: what machine and which versions produced a number."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
