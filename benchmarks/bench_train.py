"""Fine-tune a ColBERT on SciFact's train split and measure the test split before and after.

Use this when you change the training module (losses, mining, Matryoshka heads, precision) or want to
know what fine-tuning on your own judged queries buys. One run:

1. the model (default ``../shared/models/answerai-colbert-small-v1``, main head 96) and SciFact (``train``:
   809 queries, ``test``: 300) are loaded; hard negatives for the train queries are mined with the
   original model's own exact index over the evaluation corpus (``--negatives index``: the "before" pass
   is reused, so the corpus is encoded once; SciFact's train and test share the corpus) or BM25;
2. the model trains (``lateint_plugins.core.training.Trainer``: in-batch contrastive with hard negatives,
   every head of ``--matryoshka-dims`` trained jointly) for ``--epochs`` / ``--max-steps``;
3. test nDCG@10 and Recall@100 with the exact index (MaxSim over every document), before and after, for
   the main head and, per Matryoshka width, the trained head against plain truncation of the original
   model's head (first ``d`` rows of its projection, renormalised);
4. with ``--pylate``, PyLate's own trainer (``SentenceTransformerTrainer`` + ``losses.Contrastive``, in its own
   venv) runs on the same triplets (each example's epoch-0 negative), model, batch, steps, learning rate and
   seed, and its saved model is scored by the same evaluation.

The corpus is encoded once per backbone: the encoder runs with an identity projection (L2-normalised
hidden states) and every head is applied afterwards (``normalize(W h / |h|) == normalize(W h)``), so one
pass scores all widths, at the training precision (bf16 autocast where the CPU has native BF16). Wall time
and peak RSS are this process's (PyLate's are its own process's). Timings on a shared machine are noisy and
not interleaved: rerun quietly before quoting them.

Run from the repository root (``nice -n 10`` on a shared machine)::

    python benchmarks/bench_train.py --output benchmarks/results/bench_train.json          # the real run
    python benchmarks/bench_train.py --max-steps 3 --eval-queries 20 --eval-max-documents 300 \\
        --negatives bm25 --batch-size 4 --output /tmp/bench_train_smoke.json                   # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import ROOT, add_data_arguments, load_average, machine_info, peak_rss_mib, prepare_process

logger = logging.getLogger("bench_train")

DEFAULT_PYLATE = ROOT.parent / "venvs" / "pylate" / "bin" / "python"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, split=False)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--negatives", choices=["index", "bm25", "none"], default="index")
    parser.add_argument("--mining-depth", type=int, default=16, help="hard negatives kept per query")
    parser.add_argument("--negatives-per-query", type=int, default=1, help="drawn from the pool per step")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--head-learning-rate", type=float, default=None, help="heads' peak rate (default: the same)")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--schedule", choices=["linear", "constant"], default="linear", help="after the warm-up")
    parser.add_argument("--heads-only", action="store_true", help="train the projection heads only (backbone frozen)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--matryoshka-dims", default="64,32", help="extra heads ('' for none)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--cache-chunk-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--eval-queries", type=int, default=None, help="first N test queries (default: all)")
    parser.add_argument(
        "--eval-max-documents", type=int, default=None, help="judged documents plus a sample, N in all (default: all)"
    )
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=None, help="where the trained models go (default: a temp dir)")
    parser.add_argument("--pylate", action="store_true", help="also train with PyLate's trainer (its own venv)")
    parser.add_argument("--pylate-python", type=Path, default=DEFAULT_PYLATE)
    parser.add_argument("--output", type=Path, default=None, help="write everything as JSON")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


class HiddenStates:
    """L2-normalised hidden states of a corpus and queries under one backbone; heads are applied afterwards."""

    def __init__(
        self,
        model: Any,
        doc_ids: list[str],
        doc_texts: list[str],
        queries: dict[str, str],
        batch: int,
        precision: str,
    ) -> None:
        import torch
        from lateint_plugins.core.encoder import ColBERTEncoder

        encoder = ColBERTEncoder(
            model.backbone,
            model.tokenizer,
            torch.nn.Identity(),
            model.config,
            device=model.device,
            precision=precision,
            checkpoint_format="pylate",
        )
        start = time.perf_counter()
        self.doc_ids = doc_ids
        self.documents = (
            [d.half() for d in encoder.encode_documents(doc_texts, batch_size=batch, show_progress_bar=True)]
            if doc_texts
            else []
        )
        self.query_ids = list(queries)
        self.queries = encoder.encode_queries(list(queries.values()), batch_size=batch)
        self.seconds = time.perf_counter() - start
        model.train()

    def evaluate(self, weight: Any, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
        """Test metrics with the projection ``weight`` ``(dim, hidden)`` and the exact index."""
        import torch.nn.functional as F
        from lateint_plugins.core.evaluation import evaluate
        from lateint_plugins.core.index import ExactIndex

        w = weight.detach().float().cpu()
        index = ExactIndex()
        index.add(self.doc_ids, [F.normalize(d.float() @ w.T, dim=-1) for d in self.documents])
        hits = index.search([F.normalize(q @ w.T, dim=-1) for q in self.queries], k=100)
        run = {q: [h.id for h in row] for q, row in zip(self.query_ids, hits, strict=True)}
        return {k: round(v, 4) for k, v in evaluate(run, qrels, metrics=("ndcg@10", "recall@100")).items()}

    def ranking(self, weight: Any, k: int) -> dict[str, list[str]]:
        import torch.nn.functional as F
        from lateint_plugins.core.index import ExactIndex

        w = weight.detach().float().cpu()
        index = ExactIndex()
        index.add(self.doc_ids, [F.normalize(d.float() @ w.T, dim=-1) for d in self.documents])
        hits = index.search([F.normalize(q @ w.T, dim=-1) for q in self.queries], k=k)
        return {q: [h.id for h in row] for q, row in zip(self.query_ids, hits, strict=True)}


def run_pylate(args: argparse.Namespace, triplets: Path, out: Path, steps: int, bf16: bool) -> dict[str, Any]:
    """PyLate's trainer in its own venv on the same triplets; returns its timing or {"error": ...}."""
    if not args.pylate_python.is_file():
        return {"error": f"no PyLate python at {args.pylate_python}"}
    settings = {
        "model": str(args.model),
        "triplets": str(triplets),
        "out": str(out),
        "batch_size": args.batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_steps": steps,
        "learning_rate": args.learning_rate,
        "head_learning_rate": args.head_learning_rate,
        "warmup_steps": args.warmup_steps,
        "schedule": args.schedule,
        "train_backbone": not args.heads_only,
        "seed": args.seed,
        "threads": args.threads,
        "bf16": bf16,
    }
    result = subprocess.run(
        [str(args.pylate_python), str(ROOT / "benchmarks" / "peers" / "train_pylate.py"), json.dumps(settings)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        check=False,
    )
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger("lateint_plugins").setLevel(logging.INFO if args.verbose else logging.WARNING)
    import torch
    from lateint_plugins.core.evaluation import load_beir
    from lateint_plugins.core.training import (
        EvaluationSet,
        TrainableColBERT,
        Trainer,
        TrainingConfig,
        beir_examples,
        mine_hard_negatives,
    )
    from lateint_plugins.core.training.trainer import _use_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(torch, args.device, ("torch", "transformers", "sentence-transformers"))
    dims = tuple(int(d) for d in args.matryoshka_dims.split(",") if d.strip())
    train_data = load_beir(args.data, split="train")
    test_data = load_beir(args.data, split="test")
    query_ids = list(test_data.qrels)[: args.eval_queries]
    eval_set = EvaluationSet.from_beir(
        test_data, query_ids=query_ids, max_documents=args.eval_max_documents, seed=args.seed
    )
    logger.info("eval: %d test queries over %d documents", len(eval_set.queries), len(eval_set.corpus))

    model = TrainableColBERT.from_pretrained(args.model, matryoshka_dims=dims, seed=args.seed).to(args.device)
    # Evaluation encodes at the training precision (bf16 autocast ranks SciFact as fp32 does: 0.7371 both).
    # (CPU only: on CUDA the encoder's bf16 would cast the shared training weights.)
    bf16_eval = args.device == "cpu" and _use_bf16(args.precision, torch.device(args.device))
    precision = "bf16" if bf16_eval else "fp32"
    original = {d: model.heads[str(model.default_dim)].weight.detach().clone()[:d] for d in model.dims}
    report: dict[str, Any] = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    report["machine"] = machine
    report["eval"] = {"queries": len(eval_set.queries), "documents": len(eval_set.corpus)}

    # 1. before: the original model (main head) and plain truncation of it.
    doc_ids, doc_texts = list(eval_set.corpus), list(eval_set.corpus.values())
    before = HiddenStates(model, doc_ids, doc_texts, eval_set.queries, args.eval_batch_size, precision)
    report["before"] = {str(d): before.evaluate(w, eval_set.qrels) for d, w in original.items()}
    report["before_encode_s"] = round(before.seconds, 1)
    logger.info("before: %s (corpus encoded in %.0fs)", report["before"], before.seconds)

    # 2. mine and train.
    start = time.perf_counter()
    mined = None
    if args.negatives == "index":
        # The original model's own ranking over the evaluation corpus (all of SciFact unless
        # --eval-max-documents cut it), reusing the "before" pass rather than encoding the corpus again.
        train_queries = HiddenStates(model, [], [], train_data.queries, args.eval_batch_size, precision)
        before.query_ids, before.queries = train_queries.query_ids, train_queries.queries
        depth = args.mining_depth + max(len(j) for j in train_data.qrels.values())
        ranked = before.ranking(original[model.default_dim], depth)
        mined = {q: [d for d in ranked[q] if train_data.qrels[q].get(d, 0) <= 0] for q in ranked}
    elif args.negatives == "bm25":
        mined = mine_hard_negatives(train_data, method="bm25", depth=args.mining_depth)
    examples = beir_examples(train_data, negatives="none", n_negatives=args.mining_depth, mined=mined)
    report["mining_s"] = round(time.perf_counter() - start, 1)
    report["examples"] = len(examples)
    config = TrainingConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        negatives_per_query=args.negatives_per_query,
        learning_rate=args.learning_rate,
        head_learning_rate=args.head_learning_rate,
        warmup_steps=args.warmup_steps,
        schedule=args.schedule,
        train_backbone=not args.heads_only,
        temperature=args.temperature,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        cache_chunk_size=args.cache_chunk_size,
        seed=args.seed,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    trainer = Trainer(model, examples, config, output_dir=workdir / "ours", device=args.device)
    rss_before_training = peak_rss_mib()
    result = trainer.train()
    report["train"] = {
        "steps": result.steps,
        "wall_s": round(result.wall_s, 1),
        "s_per_step": round(result.wall_s / max(result.steps, 1), 2),
        "first_losses": [round(x, 4) for x in result.losses[:5]],
        "last_losses": [round(x, 4) for x in result.losses[-5:]],
        "precision": "bf16" if trainer.bf16 else "fp32",
        "peak_rss_mib": round(peak_rss_mib(), 0),
        "peak_rss_mib_before_training": round(rss_before_training, 0),
        "model_path": str(result.model_path),
    }
    logger.info("trained %d steps in %.0fs", result.steps, result.wall_s)

    # 3. after: every trained head.
    after = HiddenStates(model, doc_ids, doc_texts, eval_set.queries, args.eval_batch_size, precision)
    report["after"] = {str(d): after.evaluate(model.heads[str(d)].weight, eval_set.qrels) for d in model.dims}
    main_weight = model.heads[str(model.default_dim)].weight
    report["after_truncated"] = {
        str(d): after.evaluate(main_weight[:d], eval_set.qrels) for d in model.dims if d != model.default_dim
    }
    logger.info("after: %s; fine-tuned main head truncated: %s", report["after"], report["after_truncated"])

    # 4. PyLate's trainer on the same triplets.
    if args.pylate:
        triplets = workdir / "triplets.jsonl"
        with triplets.open("w", encoding="utf-8") as f:
            for i, e in enumerate(examples):
                pool = list(e.documents[1:])
                negative = random.Random(f"{args.seed}:0:{i}").choice(pool) if pool else None
                if negative is not None:
                    f.write(json.dumps({"query": e.query, "positive": e.documents[0], "negative": negative}) + "\n")
        peer = run_pylate(args, triplets, workdir / "pylate", trainer.total_steps, trainer.bf16)
        if "error" not in peer:
            pylate_model = TrainableColBERT.from_pretrained(workdir / "pylate", seed=args.seed)
            hidden = HiddenStates(pylate_model, doc_ids, doc_texts, eval_set.queries, args.eval_batch_size, precision)
            peer["after"] = hidden.evaluate(pylate_model.heads[str(pylate_model.default_dim)].weight, eval_set.qrels)
        report["pylate"] = peer
    report["load_average_end"] = load_average()
    print_table(report)
    if args.output is not None:
        tmp = args.output.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
        os.replace(tmp, args.output)
    return 0


def print_table(report: dict[str, Any]) -> None:
    ev = report["eval"]
    print(f"SciFact test: {ev['queries']} queries over {ev['documents']} documents, exact MaxSim")
    print(f"{'model':<34}{'nDCG@10':>9}{'R@100':>9}")
    main_dim = max(int(d) for d in report["after"])
    rows = [(f"original ({main_dim})", report["before"][str(main_dim)])]
    rows.append((f"fine-tuned ({main_dim})", report["after"][str(main_dim)]))
    if "pylate" in report and "after" in report["pylate"]:
        rows.append((f"PyLate trainer ({main_dim})", report["pylate"]["after"]))
    for d in sorted((int(d) for d in report["after"]), reverse=True)[1:]:
        rows.append((f"original truncated to {d}", report["before"][str(d)]))
        if str(d) in report.get("after_truncated", {}):
            rows.append((f"fine-tuned ({main_dim}) truncated to {d}", report["after_truncated"][str(d)]))
        rows.append((f"fine-tuned head {d}", report["after"][str(d)]))
    for name, m in rows:
        print(f"{name:<34}{m['ndcg@10']:>9.4f}{m['recall@100']:>9.4f}")
    t = report["train"]
    print(
        f"train: {report['examples']} examples, {t['steps']} steps in {t['wall_s']}s ({t['s_per_step']} s/step, "
        f"{t['precision']}), peak RSS {t['peak_rss_mib']:.0f} MiB; mining {report['mining_s']}s"
    )
    if "pylate" in report:
        p = report["pylate"]
        print(
            "PyLate: "
            + (p["error"][-300:] if "error" in p else f"{p['wall_s']}s, peak RSS {p['peak_rss_mib']:.0f} MiB")
        )


if __name__ == "__main__":
    sys.exit(main())
