"""Fine-tune ColBERT models: contrastive with mined hard negatives, distillation, Matryoshka heads.

Example::

    from lateint_plugins.core.training import Trainer, TrainingConfig, TrainableColBERT, beir_examples

    model = TrainableColBERT.from_pretrained("path/to/colbert", matryoshka_dims=(64, 32))
    examples = beir_examples("data/scifact", split="train", negatives="bm25")
    Trainer(model, examples, TrainingConfig(epochs=1), output_dir="runs/scifact").train()
    # runs/scifact/model: a PyLate-layout ColBERT; ColBERTEncoder.from_pretrained(..., dim=64) picks a head.

Importing this package imports torch (the rest of ``lateint_plugins.core`` stays cheap to import).
"""

from __future__ import annotations

from .data import BM25, EvaluationSet, TrainingExample, beir_examples, mine_hard_negatives, read_examples, split_queries
from .losses import colbert_scores, contrastive_loss, distillation_loss, grouped_scores
from .model import TokenBatch, TrainableColBERT
from .trainer import Trainer, TrainingConfig, TrainingResult, latest_checkpoint

__all__ = [
    "BM25",
    "EvaluationSet",
    "TokenBatch",
    "TrainableColBERT",
    "Trainer",
    "TrainingConfig",
    "TrainingExample",
    "TrainingResult",
    "beir_examples",
    "colbert_scores",
    "contrastive_loss",
    "distillation_loss",
    "grouped_scores",
    "latest_checkpoint",
    "mine_hard_negatives",
    "read_examples",
    "split_queries",
]
