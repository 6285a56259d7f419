"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint folder ``step-<n>/`` holds ``model.safetensors``, ``optimizer.safetensors`` + ``optimizer.json``
(AdamW moments as tensors, hyper-parameters and scalars as JSON), ``rng.safetensors`` (torch CPU and CUDA
generator states) and ``trainer_state.json`` (step, scheduler, config, history), written last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "STATE_FILE",
    "jsonable",
    "latest_checkpoint",
    "optimizer_from_files",
    "optimizer_to_files",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT_FORMAT = 1
STATE_FILE = "trainer_state.json"


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints`` (None: none)."""
    root = Path(output_dir) / "checkpoints"
    found = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []
    return found[-1] if found else None


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's generator states (CPU, and ``device``'s when it is CUDA) as uint8 tensors."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (dropout then draws the same masks again)."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, tensors as lists and anything else unserialisable (callables) as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None  # callables (LambdaLR keeps None for plain functions anyway)


def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer ``state_dict`` as safetensors tensors plus JSON (no pickle)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(pid), {})[name] = value
    ids = [int(pid) for pid in state["state"]]
    return tensors, {"param_groups": jsonable(state["param_groups"]), "state": plain, "ids": ids}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(meta["state"].get(str(pid), {})) for pid in meta["ids"]}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state[int(pid)][name] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}
