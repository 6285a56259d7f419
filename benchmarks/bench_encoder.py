"""Encoder throughput: our ``ColBERTEncoder`` vs sentence-transformers' ``MultiVectorEncoder``.

Use this when you change the encoder (framing, batching, device or dtype handling) and want to know
whether it got slower, or whether it still produces the same vectors as the reference implementation.
Both encoders load the same checkpoint and encode the same texts in one process, so the numbers are
directly comparable; absolute numbers are only comparable on the same machine and load.

Method: load both models (timed), run one warm-up batch of documents and of queries with each, then
for every repeat time ours and then theirs (ABAB...), so slow drift (thermal throttling, background
load) hits both alike. The report gives the median over repeats of documents/s and queries/s and the
ratio ours/theirs. Both sides are timed up to float32 CPU tensors, which is what our encoder returns
(sentence-transformers leaves its output on the model's device). The outputs of the last repeat are
then compared: same number of vectors per text, and the per-token cosine between the two.

Run from the repository root::

    python benchmarks/bench_encoder.py                      # 256 docs, 300 queries, 3 repeats
    python benchmarks/bench_encoder.py --n-docs 64 --n-queries 64 --repeats 1   # smoke test

The table goes to stdout, progress to stderr, everything (timings of every repeat, machine,
versions, parity) to ``--output`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import ROOT, add_data_arguments, machine_info, machine_lines, prepare_process

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "bench_encoder.json"
DTYPES = ("float32", "float16", "bfloat16")

logger = logging.getLogger("bench_encoder")

Encode = Callable[[Sequence[str]], list[Any]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Documents/s and queries/s: ColBERTEncoder vs sentence-transformers' MultiVectorEncoder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser, split=False)
    parser.add_argument("--n-docs", type=int, default=256, help="first N documents of corpus.jsonl")
    parser.add_argument("--n-queries", type=int, default=300, help="first N queries of queries.jsonl")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder (median reported)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size for documents and queries")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (None: keep torch's current number)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for both encoders, e.g. cpu or cuda")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="weights/activations dtype for both encoders"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    for name in ("n_docs", "n_queries", "repeats", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    return args


# ---------------------------------------------------------------------- inputs
def check_inputs(model: Path, data: Path) -> None:
    """Exit with a message saying what is missing and how to point at it."""
    problems = []
    if not model.is_dir():
        problems.append(f"model folder {model} does not exist (pass --model PATH to a local checkpoint folder)")
    elif not (model / "config.json").is_file():
        problems.append(f"model folder {model} has no config.json; is it a Hugging Face checkpoint?")
    if not data.is_dir():
        problems.append(f"data folder {data} does not exist (pass --data PATH to a BEIR folder)")
    else:
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (data / name).is_file():
                problems.append(f"data folder {data} has no {name} (expected the BEIR layout)")
    if problems:
        raise SystemExit("bench_encoder: " + "; ".join(problems) + ".")


def read_jsonl_texts(path: Path, n: int, *, with_title: bool) -> list[str]:
    """The first ``n`` non-empty texts; documents are ``title + " " + text`` as in BEIR."""
    texts: list[str] = []
    skipped = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            text = (f"{row.get('title', '')} {row.get('text', '')}" if with_title else row.get("text", "")).strip()
            # Our encoder rejects empty texts, so both sides get the same non-empty list.
            if not text:
                skipped += 1
                continue
            texts.append(text)
            if len(texts) == n:
                break
    if skipped:
        logger.warning("Skipped %d empty texts in %s", skipped, path)
    if len(texts) < n:
        logger.warning("%s has only %d usable texts; asked for %d", path, len(texts), n)
    if not texts:
        raise SystemExit(f"bench_encoder: {path} has no usable texts.")
    return texts


# ---------------------------------------------------------------------- machine


# ---------------------------------------------------------------------- timing
def timed(encode: Encode, texts: Sequence[str], sync: Callable[[], None]) -> tuple[float, list[Any]]:
    sync()
    start = time.perf_counter()
    out = encode(texts)
    sync()
    return time.perf_counter() - start, out


def parity(ours: list[Any], theirs: list[Any], torch: Any) -> dict[str, Any]:
    """Token counts per text and per-token cosine between two encoders' outputs."""
    mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a.shape[0] != b.shape[0]]
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=True) if a.shape[0] == b.shape[0] and a.shape[0] > 0]
    result: dict[str, Any] = {
        "texts": len(ours),
        "same_token_count": len(ours) - len(mismatched),
        "mismatched_indices": mismatched[:20],
        "tokens_compared": 0,
        "cosine_min": None,
        "cosine_mean": None,
    }
    if pairs and all(a.shape[1] == b.shape[1] for a, b in pairs):
        cos = torch.cat([torch.nn.functional.cosine_similarity(a, b, dim=-1) for a, b in pairs])
        result.update(tokens_compared=int(cos.numel()), cosine_min=float(cos.min()), cosine_mean=float(cos.mean()))
    elif pairs:
        logger.warning("Output dimensions differ (ours %d, theirs %d)", pairs[0][0].shape[1], pairs[0][1].shape[1])
    return result


def summarise(seconds: list[float], n: int) -> dict[str, Any]:
    rates = [n / s for s in seconds]
    return {
        "seconds": seconds,
        "per_second": rates,
        "median_per_second": statistics.median(rates),
        "min_per_second": min(rates),
        "max_per_second": max(rates),
    }


# ---------------------------------------------------------------------- report
def _rate_cell(s: dict[str, Any]) -> str:
    """Median, with the min-max range when there is more than one repeat."""
    if len(s["per_second"]) == 1:
        return f"{s['median_per_second']:.1f}"
    return f"{s['median_per_second']:.1f} ({s['min_per_second']:.1f}-{s['max_per_second']:.1f})"


def format_table(report: dict[str, Any]) -> str:
    cfg, res, m = report["config"], report["results"], report["machine"]
    title = (
        f"Encoder throughput: {Path(cfg['model']).name}, {cfg['n_docs']} docs / {cfg['n_queries']} queries, "
        f"{m['device']} {cfg['dtype']}, {m['torch_threads']} threads, batch {cfg['batch_size']}, "
        f"median of {cfg['repeats']}"
    )
    rows = [("", "ours", "sentence-transformers", "ours/theirs")]
    load = res["load_seconds"]
    rows.append(("load (s)", f"{load['ours']:.2f}", f"{load['theirs']:.2f}", ""))
    for kind, label in (("documents", "docs/s"), ("queries", "queries/s")):
        ours, theirs = _rate_cell(res[kind]["ours"]), _rate_cell(res[kind]["theirs"])
        rows.append((label, ours, theirs, f"{res[kind]['ratio_ours_over_theirs']:.2f}x"))
    for kind in ("documents", "queries"):
        p = res[kind]["parity"]
        cos = (
            f"cosine min {p['cosine_min']:.7f} mean {p['cosine_mean']:.7f}"
            if p["cosine_min"] is not None
            else "cosine n/a"
        )
        rows.append((f"parity {kind}", f"same token count {p['same_token_count']}/{p['texts']}", cos, ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [title, ""]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines.append("")
    lines.extend(machine_lines(m))
    return "\n".join(lines)


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    prepare_process()  # before transformers is imported
    args = parse_args(argv)
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)

    model_path, data_path = args.model.resolve(), args.data.resolve()
    check_inputs(model_path, data_path)

    import torch

    try:
        from sentence_transformers import MultiVectorEncoder
    except ImportError as exc:
        raise SystemExit(
            "bench_encoder: sentence-transformers >= 6.2 is needed for the comparison: "
            f"pip install 'lateint-plugins[test]' ({exc})"
        ) from exc
    from lateint_plugins.core.encoder import ColBERTEncoder

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = str(args.device)
    dtype = getattr(torch, args.dtype)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"bench_encoder: --device {device} asked for, but torch sees no CUDA device.")

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    docs = read_jsonl_texts(data_path / "corpus.jsonl", args.n_docs, with_title=True)
    queries = read_jsonl_texts(data_path / "queries.jsonl", args.n_queries, with_title=False)
    logger.info("%d documents, %d queries from %s", len(docs), len(queries), data_path)

    # Ours loads first, so it also pays any first-use import cost inside transformers.
    start = time.perf_counter()
    ours_model = ColBERTEncoder.from_pretrained(model_path, device=device, dtype=dtype, local_files_only=True)
    sync()
    load_ours = time.perf_counter() - start
    logger.info("Loaded ours in %.2f s: %r", load_ours, ours_model)

    start = time.perf_counter()
    theirs_model = MultiVectorEncoder(str(model_path), device=device, local_files_only=True)
    if dtype != torch.float32:
        theirs_model = theirs_model.to(dtype)
    sync()
    load_theirs = time.perf_counter() - start
    logger.info("Loaded sentence-transformers in %.2f s", load_theirs)

    bs = args.batch_size

    # Both sides end in float32 CPU tensors, our encoder's output contract; sentence-transformers
    # would otherwise leave its vectors on the model's device and skip a transfer ours pays for.
    def theirs_documents(t: Sequence[str]) -> list[Any]:
        out = theirs_model.encode_document(list(t), batch_size=bs, show_progress_bar=False)
        return [e.float().cpu() for e in out]

    def theirs_queries(t: Sequence[str]) -> list[Any]:
        out = theirs_model.encode_query(list(t), batch_size=bs, show_progress_bar=False)
        return [e.float().cpu() for e in out]

    encoders: dict[str, dict[str, Encode]] = {
        "documents": {
            "ours": lambda t: ours_model.encode_documents(t, batch_size=bs),
            "theirs": theirs_documents,
        },
        "queries": {"ours": lambda t: ours_model.encode_queries(t, batch_size=bs), "theirs": theirs_queries},
    }
    texts = {"documents": docs, "queries": queries}

    logger.info("Warm-up: one batch of documents and of queries per encoder")
    for kind, pair in encoders.items():
        for side in ("ours", "theirs"):
            timed(pair[side], texts[kind][:bs], sync)

    seconds: dict[str, dict[str, list[float]]] = {k: {"ours": [], "theirs": []} for k in encoders}
    last: dict[str, dict[str, list[Any]]] = {k: {} for k in encoders}
    for r in range(args.repeats):
        for kind, pair in encoders.items():
            for side in ("ours", "theirs"):
                elapsed, out = timed(pair[side], texts[kind], sync)
                seconds[kind][side].append(elapsed)
                last[kind][side] = out
                logger.info(
                    "repeat %d/%d %-9s %-6s %.3f s (%.1f/s)",
                    r + 1,
                    args.repeats,
                    kind,
                    side,
                    elapsed,
                    len(texts[kind]) / elapsed,
                )

    results: dict[str, Any] = {"load_seconds": {"ours": load_ours, "theirs": load_theirs}}
    for kind in encoders:
        n = len(texts[kind])
        ours_s, theirs_s = summarise(seconds[kind]["ours"], n), summarise(seconds[kind]["theirs"], n)
        results[kind] = {
            "n": n,
            "tokens_ours": int(sum(v.shape[0] for v in last[kind]["ours"])),
            "ours": ours_s,
            "theirs": theirs_s,
            "ratio_ours_over_theirs": ours_s["median_per_second"] / theirs_s["median_per_second"],
            "parity": parity(last[kind]["ours"], last[kind]["theirs"], torch),
        }

    report = {
        "benchmark": "bench_encoder",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "config": {
            "model": str(model_path),
            "data": str(data_path),
            "n_docs": len(docs),
            "n_queries": len(queries),
            "repeats": args.repeats,
            "batch_size": bs,
            "dtype": args.dtype,
            "order": "warm-up each, then per repeat ours then theirs (ABAB), documents before queries",
            "timed_until": "float32 CPU tensors for both encoders",
            "load_note": "ours loads first and so also pays first-use import costs inside transformers",
            "ours_config": repr(ours_model.config),
        },
        "machine": machine_info(torch, device, ("torch", "transformers", "sentence-transformers", "tokenizers")),
        "results": results,
    }

    print(format_table(report))
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote %s", output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
