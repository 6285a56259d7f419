"""PyLate's trainer on triplets, for ``benchmarks/bench_train.py`` (runs in the PyLate venv).

    PYLATE_PYTHON benchmarks/peers/train_pylate.py '{"model": ..., "triplets": ..., "out": ..., "batch_size": 16,
        "gradient_accumulation_steps": 1, "max_steps": 58, "learning_rate": 1e-5, "head_learning_rate": null,
        "warmup_steps": 5, "schedule": "linear", "seed": 42, "threads": null, "bf16": false}'

Trains ``pylate.models.ColBERT`` with ``losses.Contrastive`` (in-batch, temperature 1.0) through
sentence-transformers' ``SentenceTransformerTrainer``, saves the model to ``out`` and prints one JSON line:
``{"wall_s", "steps", "peak_rss_mib", "versions"}``. ``head_learning_rate`` (optional) puts the projection
``1.linear`` on its own peak rate through ``learning_rate_mapping``, as ``TrainingConfig.head_learning_rate`` does;
``"train_backbone": false`` freezes the transformer (``requires_grad_(False)``).
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common needs only the standard library
from _common import peak_rss_mib


def main() -> None:
    settings = json.loads(sys.argv[1])
    import torch
    from datasets import Dataset
    from pylate import losses, models, utils
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    with open(settings["triplets"], encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    model = models.ColBERT(model_name_or_path=settings["model"], device="cpu")
    if settings.get("train_backbone") is False:
        model[0].requires_grad_(False)  # the transformer frozen: only the projection trains
    args = SentenceTransformerTrainingArguments(
        output_dir=settings["out"] + "-trainer",
        max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation_steps"],
        learning_rate=settings["learning_rate"],
        learning_rate_mapping=(
            {r"(?:^|\.)1\.linear\.": settings["head_learning_rate"]} if settings.get("head_learning_rate") else None
        ),
        warmup_steps=settings["warmup_steps"],
        lr_scheduler_type="constant_with_warmup" if settings.get("schedule") == "constant" else "linear",
        max_grad_norm=1.0,
        seed=settings["seed"],
        bf16=settings["bf16"],
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=10,
        dataloader_drop_last=False,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=losses.Contrastive(model=model),
        data_collator=utils.ColBERTCollator(model.tokenize),
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    model.save(settings["out"])
    versions = {name: metadata.version(name) for name in ("pylate", "sentence-transformers", "torch", "transformers")}
    print(
        json.dumps(
            {
                "wall_s": round(wall, 1),
                "steps": trainer.state.global_step,
                "peak_rss_mib": round(peak_rss_mib()),
                "versions": versions,
            }
        )
    )


if __name__ == "__main__":
    main()
