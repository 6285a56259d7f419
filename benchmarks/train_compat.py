"""Does PyLate load a model saved by ``lateint train`` unchanged, and encode as our encoder does?

Run it in the project venv; it starts PyLate in its own venv (never install PyLate into the project's)::

    python benchmarks/train_compat.py MODEL_DIR [--pylate-python ../venvs/pylate/bin/python]

It encodes the compatibility texts (``benchmarks/compat/texts.py``) with ``ColBERTEncoder`` (fp32) and with
``pylate.models.ColBERT`` (fp32, CPU), and with sentence-transformers 6 ``MultiVectorEncoder`` when the
project venv has it, then prints the token counts that differ and the smallest per-token
cosine over every query and document (the issue asks for >= 0.9999). Vectors cross between the processes as
``.npy`` files (no pickle).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYLATE = ROOT.parent / "venvs" / "pylate" / "bin" / "python"


def _save(folder: Path, name: str, vectors: list[np.ndarray]) -> None:
    np.save(folder / f"{name}_lengths.npy", np.array([len(v) for v in vectors], dtype=np.int64))
    np.save(folder / f"{name}_tokens.npy", np.concatenate(vectors).astype(np.float32))


def _load(folder: Path, name: str) -> list[np.ndarray]:
    lengths = np.load(folder / f"{name}_lengths.npy")
    tokens = np.load(folder / f"{name}_tokens.npy")
    return np.split(tokens, np.cumsum(lengths)[:-1])


def pylate_side(model: str, texts_file: Path, out: Path) -> None:
    """Runs inside the PyLate venv: encode the texts with pylate.models.ColBERT and save them."""
    from pylate import models

    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    colbert = models.ColBERT(model_name_or_path=model, device="cpu")
    for kind, is_query in (("queries", True), ("documents", False)):
        vectors = colbert.encode(texts[kind], is_query=is_query, batch_size=4, convert_to_numpy=True)
        _save(out, kind, [np.asarray(v, dtype=np.float32) for v in vectors])


def compare(model: Path, pylate_python: Path) -> dict[str, object]:
    """Encode with both libraries and return the comparison (counts, min cosine)."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "compat"))
    import texts as T
    from lateint_plugins.core import ColBERTEncoder

    texts = {"queries": list(T.ENGLISH_QUERIES), "documents": list(T.ENGLISH_DOCUMENTS)}
    encoder = ColBERTEncoder.from_pretrained(model, device="cpu", precision="fp32")
    ours = {
        "queries": [q.numpy() for q in encoder.encode_queries(texts["queries"])],
        "documents": [d.numpy() for d in encoder.encode_documents(texts["documents"])],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        subprocess.run(
            [str(pylate_python), __file__, "--pylate-side", str(model), str(work / "texts.json"), str(work)],
            check=True,
            env=env,
        )
        theirs = {kind: _load(work, kind) for kind in ("queries", "documents")}
    result: dict[str, object] = {
        "model": str(model),
        "checkpoint_format": encoder.checkpoint_format,
        "texts": sum(len(v) for v in texts.values()),
        "pylate": _agreement(ours, theirs),
    }
    try:
        from sentence_transformers import MultiVectorEncoder  # sentence-transformers >= 6

        st = MultiVectorEncoder(str(model), device="cpu", local_files_only=True)
        result["sentence_transformers_6"] = _agreement(
            ours,
            {
                "queries": [np.asarray(v, dtype=np.float32) for v in st.encode_query(texts["queries"])],
                "documents": [np.asarray(v, dtype=np.float32) for v in st.encode_document(texts["documents"])],
            },
        )
    except ImportError:
        result["sentence_transformers_6"] = "not installed"
    return result


def _agreement(ours: dict[str, list[np.ndarray]], theirs: dict[str, list[np.ndarray]]) -> dict[str, object]:
    """Token-count mismatches and the smallest per-token cosine between two encodings of the same texts."""
    cosines, mismatched = [], []
    for kind in ("queries", "documents"):
        for i, (a, b) in enumerate(zip(ours[kind], theirs[kind], strict=True)):
            if a.shape != b.shape:
                mismatched.append(f"{kind}[{i}]: ours {a.shape}, theirs {b.shape}")
                continue
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
            cosines.append(float((a * b).sum(1).min()))
    return {"shape_mismatches": mismatched, "cosine_min": min(cosines) if cosines else None}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--pylate-side":
        pylate_side(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model folder saved by lateint train / TrainableColBERT.save")
    parser.add_argument("--pylate-python", type=Path, default=DEFAULT_PYLATE, help="python of a venv with PyLate")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if not args.pylate_python.is_file():
        raise SystemExit(f"no PyLate python at {args.pylate_python}; pass --pylate-python")
    print(json.dumps(compare(args.model, args.pylate_python), indent=1))


if __name__ == "__main__":
    main()
