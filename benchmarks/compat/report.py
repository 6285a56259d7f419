"""Compare our encoder with the reference libraries' golden vectors and print the README table.

Run it in the project venv (no reference library needed); it reads every ``tests/fixtures/compat/*/``
written by ``build_fixtures.py``, loads each model with ``ColBERTEncoder.from_pretrained`` and compares:

* token counts: our number of vectors per text equals the reference's, for every query and document;
* per-token cosine min: the smallest cosine between our vector and the reference's at the same position,
  over every token of every text whose count matches;
* identical rankings: for each query, the family's documents ranked by MaxSim with our vectors, against
  the ranking by the reference's own float32 MaxSim scores (``reference_scores``).

    python benchmarks/compat/report.py                      # table + benchmarks/results/compat.json

Any load or encode failure becomes that row's status; the script never stops at the first family.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "compat"
SHARED = ROOT.parent / "shared"  # ../shared next to the repository
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "compat.json"

logger = logging.getLogger("compat.report")


@dataclass
class Row:
    """One family's comparison (what the README table prints)."""

    family: str
    description: str
    reference: str
    reference_version: str | None
    status: str = "ok"
    token_counts_equal: bool | None = None
    count_mismatches: list[str] = field(default_factory=list)
    cosine_min: float | None = None
    rankings_identical: int | None = None
    queries: int = 0
    order: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.status == "ok"
            and bool(self.token_counts_equal)
            and self.cosine_min is not None
            and self.cosine_min >= 0.9999
            and self.rankings_identical == self.queries
        )


def load_golden(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``golden.json`` and the arrays of ``golden.safetensors`` (float16 vectors unpacked to float32)."""
    from safetensors.numpy import load_file

    record = json.loads((folder / "golden.json").read_text(encoding="utf-8"))
    arrays = load_file(str(folder / "golden.safetensors"))
    return record, arrays


def split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Per-text ``(n_tokens, dim)`` float32 arrays from a concatenation and its lengths."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[a:b].astype(np.float32) for a, b in itertools.pairwise(offsets)]


def model_path(folder: Path, record: dict[str, Any]) -> Path:
    where = record["model"]
    if where.startswith("shared:"):
        return SHARED / where.removeprefix("shared:")
    return folder / where


def missing_requirements(record: dict[str, Any]) -> list[str]:
    return [name for name in record.get("requires", []) if importlib.util.find_spec(name) is None]


def maxsim_scores(queries: Sequence[np.ndarray], documents: Sequence[np.ndarray]) -> np.ndarray:
    """``(n_queries, n_documents)`` MaxSim: for each query token the best document token, summed."""
    scores = np.zeros((len(queries), len(documents)), dtype=np.float64)
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            scores[i, j] = (q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum()
    return scores


def compare(
    ours_q: Sequence[np.ndarray],
    ours_d: Sequence[np.ndarray],
    golden_q: Sequence[np.ndarray],
    golden_d: Sequence[np.ndarray],
    reference_scores: np.ndarray,
) -> dict[str, Any]:
    """Token counts, per-token cosine min and identical rankings of ours against the reference."""
    mismatches = [
        f"{kind}[{i}]: {len(a)} vs {len(b)}"
        for kind, ours, gold in (("query", ours_q, golden_q), ("document", ours_d, golden_d))
        for i, (a, b) in enumerate(zip(ours, gold, strict=True))
        if len(a) != len(b)
    ]
    cosines = [
        float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
        for ours, gold in ((ours_q, golden_q), (ours_d, golden_d))
        for a, b in zip(ours, gold, strict=True)
        if len(a) == len(b) and len(a)
    ]
    ours_scores = maxsim_scores(ours_q, ours_d)
    # Stable sorts on both sides, so exact ties order the same way (by document position).
    identical = sum(
        np.array_equal(np.argsort(-ours_scores[i], kind="stable"), np.argsort(-reference_scores[i], kind="stable"))
        for i in range(len(ours_q))
    )
    return {
        "token_counts_equal": not mismatches,
        "count_mismatches": mismatches,
        "cosine_min": min(cosines) if cosines else None,
        "rankings_identical": int(identical),
    }


def evaluate(folder: Path) -> Row:
    record, arrays = load_golden(folder)
    versions = record.get("versions", {})
    reference = record["reference"]
    row = Row(
        family=record["family"],
        description=record["description"],
        reference=reference,
        reference_version=versions.get(reference),
        queries=len(record["queries"]),
        order=int(record.get("order", 0)),
        notes=list(record.get("notes", [])),
    )
    path = model_path(folder, record)
    if not path.exists():
        row.status = f"skipped: model not found at {path}"
        return row
    missing = missing_requirements(record)
    if missing:
        packages = " ".join(name.replace("_", "-") for name in missing)
        row.status = f"skipped: pip install {packages}"
        return row
    try:
        from lateint_plugins.core.encoder import ColBERTEncoder

        encoder = ColBERTEncoder.from_pretrained(path, device="cpu", **record.get("load_kwargs", {}))
        ours_q = [t.numpy() for t in encoder.encode_queries(record["queries"])]
        ours_d = [t.numpy() for t in encoder.encode_documents(record["documents"])]
    except Exception as exc:
        message = str(exc).splitlines()[0].replace(f"{ROOT}/", "")  # repository-relative paths in the table
        row.status = f"error: {type(exc).__name__}: {message[:200]}"
        return row
    golden_q = split(arrays["queries"], arrays["query_lengths"])
    golden_d = split(arrays["documents"], arrays["document_lengths"])
    for key, value in compare(ours_q, ours_d, golden_q, golden_d, arrays["reference_scores"]).items():
        setattr(row, key, value)
    return row


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| family | reference | token counts equal | per-token cosine min | identical rankings | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        reference = f"{r.reference} {r.reference_version or ''}".strip()
        if r.status != "ok":
            lines.append(f"| {r.description} | {reference} | – | – | – | {r.status} |")
            continue
        counts = "yes" if r.token_counts_equal else f"no ({len(r.count_mismatches)} texts)"
        cosine = "–" if r.cosine_min is None else f"{r.cosine_min:.6f}"
        note = "; ".join(n for n in r.notes if "fails" in n)  # only what a reader must know (reference bugs)
        lines.append(
            f"| {r.description} | {reference} | {counts} | {cosine} | {r.rankings_identical}/{r.queries} | {note} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    folders = sorted(p.parent for p in args.fixtures.glob("*/golden.json"))
    if not folders:
        logger.error("no fixtures under %s: run build_fixtures.py in the reference venvs first", args.fixtures)
        return 2
    rows = sorted((evaluate(folder) for folder in folders), key=lambda r: r.order)
    sys.stdout.write(table(rows) + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    payload = {"rows": [{**asdict(r), "passed": r.passed} for r in rows]}
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
