"""The training loop: contrastive or distillation loss over every head, resumable, on CPU or GPU.

One optimizer step consumes ``batch_size * gradient_accumulation_steps`` examples. The example order of
epoch ``e`` is a permutation seeded by ``seed + e`` and each example's negatives are drawn from a
generator seeded by ``(seed, e, example)``, so a run resumed from a checkpoint sees the same batches, the
same dropout (the torch RNG is saved) and the same learning rates as an uninterrupted one: on a CPU the
weights come out bit-identical.

Checkpoints (``<output_dir>/checkpoints/step-<n>/``) hold no pickle: ``model.safetensors``,
``optimizer.safetensors`` + ``optimizer.json`` (AdamW moments and hyper-parameters), ``rng.safetensors``
and ``trainer_state.json`` (step, scheduler, config, history), written last and swapped in by a rename.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F

from ..encoder import cpu_has_native_bf16, resolve_device
from ..errors import CorruptIndexError, InvalidInputError
from .checkpoints import (
    CHECKPOINT_FORMAT,
    STATE_FILE,
    jsonable,
    latest_checkpoint,
    optimizer_from_files,
    optimizer_to_files,
    rng_state,
    set_rng_state,
)
from .data import EvaluationSet, TrainingExample
from .losses import colbert_scores, contrastive_loss, distillation_loss, grouped_scores
from .model import TokenBatch, TrainableColBERT

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainingConfig", "TrainingResult", "latest_checkpoint"]

# Settings that fix which examples land in which step: a resumed run must share them.
_RESUME_KEYS = (
    "loss",
    "batch_size",
    "gradient_accumulation_steps",
    "negatives_per_query",
    "seed",
    "epochs",
    "max_steps",
)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. Names follow sentence-transformers / PyLate where they exist.

    Args:
        loss: ``"contrastive"`` (in-batch cross-entropy over MaxSim, the example's positive against every
            document in the batch, hard negatives included) or ``"distillation"`` (KL to teacher scores).
        epochs: passes over the examples (``max_steps`` overrides).
        max_steps: optimizer steps to run in all (None: ``epochs`` full passes).
        batch_size: examples (queries) per forward pass.
        gradient_accumulation_steps: forward passes per optimizer step.
        negatives_per_query: hard negatives drawn from each example's pool per step (contrastive).
        learning_rate: AdamW peak learning rate, reached after ``warmup_steps``, then decayed or held (``schedule``).
        head_learning_rate: peak learning rate of the projection heads (None: ``learning_rate``), on the
            same schedule. Narrow Matryoshka heads start as truncations of the main head; under AdamW every
            weight moves by about the learning rate per step, so at the backbone's rate they barely leave it.
        warmup_steps: linear warm-up steps.
        schedule: after the warm-up, ``"linear"`` decays the rates to 0 at the last step (transformers'
            ``linear``); ``"constant"`` keeps them at their peak (``constant_with_warmup``). Short runs that
            train new or narrow heads gain from ``"constant"``: a decayed head rate leaves them half-trained.
        train_backbone: False trains the projection heads only: the transformer runs without gradients and
            without dropout (as at inference), and the optimizer holds the heads alone. A step then costs
            about a forward pass. On a CPU this adapts a model to a domain in minutes, where training
            the backbone too takes the time of a backward pass through it every step.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping norm (None: no clipping).
        temperature: contrastive scores are divided by it.
        normalize_scores: distillation: min-max scale student scores per query (PyLate's default).
        head_weights: loss weight per head, widest first (None: 1.0 each; the losses are summed).
        precision: ``"auto"`` (bf16 autocast on CUDA with bf16 and on CPUs with native BF16, else fp32),
            ``"bf16"`` (autocast anywhere; weights and optimizer stay float32) or ``"fp32"``.
        gradient_checkpointing: recompute transformer activations in the backward pass (less memory).
        cache_chunk_size: cached contrastive loss (GradCache): embed queries and documents in chunks of this
            many texts without a graph, take the loss's gradient on the embeddings, then replay each chunk
            with that gradient. The batch is then bounded by the loss's memory, not the transformer's. None:
            one plain forward pass.
        seed: seeds data order, negative sampling and dropout.
        save_every: write a resumable checkpoint every this many steps (and at the end); None: never.
        keep_checkpoints: how many recent checkpoints to keep (None: all).
        eval_batch_size: batch size of the per-epoch evaluation encodes.
        show_progress_bar: a tqdm bar with the running loss.
    """

    loss: Literal["contrastive", "distillation"] = "contrastive"
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    negatives_per_query: int = 1
    learning_rate: float = 3e-6
    head_learning_rate: float | None = None
    warmup_steps: int = 0
    schedule: Literal["linear", "constant"] = "linear"
    train_backbone: bool = True
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    temperature: float = 1.0
    normalize_scores: bool = True
    head_weights: tuple[float, ...] | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    cache_chunk_size: int | None = None
    seed: int = 42
    save_every: int | None = None
    keep_checkpoints: int | None = 2
    eval_batch_size: int = 32
    show_progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.loss not in ("contrastive", "distillation"):
            raise InvalidInputError(f"loss must be 'contrastive' or 'distillation', got {self.loss!r}.")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "eval_batch_size"):
            _positive_int(getattr(self, name), name)
        for name in ("max_steps", "cache_chunk_size", "save_every", "keep_checkpoints"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        for name in ("negatives_per_query", "warmup_steps", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInputError(f"{name} must be an int >= 0, got {value!r}.")
        for name in ("learning_rate", "temperature"):
            _positive_number(getattr(self, name), name)
        if self.head_learning_rate is not None:
            _positive_number(self.head_learning_rate, "head_learning_rate")
        if self.max_grad_norm is not None:
            _positive_number(self.max_grad_norm, "max_grad_norm")
        value = self.weight_decay
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise InvalidInputError(f"weight_decay must be a number >= 0, got {value!r}.")
        if not isinstance(self.train_backbone, bool):
            raise InvalidInputError(f"train_backbone must be True or False, got {self.train_backbone!r}.")
        if self.schedule not in ("linear", "constant"):
            raise InvalidInputError(f"schedule must be 'linear' or 'constant', got {self.schedule!r}.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InvalidInputError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}.")
        if self.head_weights is not None:
            weights = tuple(self.head_weights)
            if not weights or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
            ):
                raise InvalidInputError(f"head_weights must be numbers >= 0, one per head, got {self.head_weights!r}.")
            object.__setattr__(self, "head_weights", tuple(float(w) for w in weights))


@dataclass
class TrainingResult:
    """What :meth:`Trainer.train` did.

    Attributes:
        steps: optimizer steps done in all (resumed ones included).
        losses: the loss of each step this run made (summed over heads).
        evaluations: one dict per evaluation: ``{"epoch", "step", "ndcg@10", "recall@100"}``.
        model_path: the saved model folder.
        wall_s: seconds this run took.
    """

    steps: int
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    model_path: Path | None = None
    wall_s: float = 0.0


@dataclass(frozen=True)
class _Batch:
    queries: TokenBatch
    documents: TokenBatch
    targets: torch.Tensor  # contrastive: (n_queries,) column of each positive
    ignore: torch.Tensor  # contrastive: (n_queries, n_documents) other positives of the same query
    teacher: torch.Tensor  # distillation: (n_queries, n_way) teacher scores


class Trainer:
    """Fine-tunes a :class:`TrainableColBERT` on :class:`TrainingExample` s.

    Args:
        model: the model (moved to ``device``).
        examples: training examples; for distillation every example needs teacher scores and the same
            number of documents.
        config: :class:`TrainingConfig`.
        output_dir: where ``model/`` (the final PyLate-layout model) and ``checkpoints/`` go.
        eval_set: scored (nDCG@10 with the exact index) after each epoch; None: no evaluation.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA, then MPS, then CPU).
    """

    def __init__(
        self,
        model: TrainableColBERT,
        examples: Sequence[TrainingExample],
        config: TrainingConfig | None = None,
        *,
        output_dir: str | os.PathLike[str],
        eval_set: EvaluationSet | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(model, TrainableColBERT):
            raise InvalidInputError(f"model must be a TrainableColBERT, got {type(model).__name__}.")
        self.config = config or TrainingConfig()
        if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence) or not examples:
            raise InvalidInputError("examples must be a non-empty list of TrainingExample.")
        bad = next((i for i, e in enumerate(examples) if not isinstance(e, TrainingExample)), None)
        if bad is not None:
            raise InvalidInputError(f"examples[{bad}] is a {type(examples[bad]).__name__}, not a TrainingExample.")
        if self.config.loss == "distillation":
            missing = next((i for i, e in enumerate(examples) if e.scores is None), None)
            if missing is not None:
                raise InvalidInputError(
                    f"examples[{missing}] has no teacher scores; loss='distillation' needs scores for every example."
                )
            ways = {len(e.documents) for e in examples}
            if len(ways) > 1:
                raise InvalidInputError(
                    f"distillation examples have {sorted(ways)} documents each; give every example the same number."
                )
        if self.config.head_weights is not None and len(self.config.head_weights) != len(model.dims):
            raise InvalidInputError(
                f"head_weights has {len(self.config.head_weights)} weights for {len(model.dims)} heads {model.dims}."
            )
        if eval_set is not None and not isinstance(eval_set, EvaluationSet):
            raise InvalidInputError(f"eval_set must be an EvaluationSet or None, got {type(eval_set).__name__}.")
        self.model = model
        self.examples = list(examples)
        self.output_dir = Path(output_dir)
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise InvalidInputError(f"output_dir {str(self.output_dir)!r} is a file; pass a folder.")
        self.eval_set = eval_set
        self.device = resolve_device(device)
        self.bf16 = _use_bf16(self.config.precision, self.device)
        if self.config.gradient_checkpointing:
            backbone: Any = model.backbone
            if not getattr(backbone, "supports_gradient_checkpointing", False):
                raise InvalidInputError(
                    "gradient_checkpointing=True, but this transformer does not support it; set it to False."
                )
            # transformers >= 5.x names it activation checkpointing (the old name warns); 4.x has only the old one.
            if hasattr(backbone, "activation_checkpointing_enable"):
                backbone.activation_checkpointing_enable({"use_reentrant": False})
            else:
                backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.to(self.device)
        n_micro = math.ceil(len(self.examples) / self.config.batch_size)
        self.steps_per_epoch = math.ceil(n_micro / self.config.gradient_accumulation_steps)
        self.total_steps = self.config.max_steps or self.config.epochs * self.steps_per_epoch
        cfg = self.config
        if not cfg.train_backbone:
            groups: list[dict[str, Any]] = [
                {"params": list(model.heads.parameters()), "lr": cfg.head_learning_rate or cfg.learning_rate}
            ]
        elif cfg.head_learning_rate is None:
            groups = [{"params": list(model.parameters())}]
        else:
            heads = list(model.heads.parameters())
            in_heads = {id(p) for p in heads}
            rest = [p for p in model.parameters() if id(p) not in in_heads]
            groups = [{"params": rest}, {"params": heads, "lr": cfg.head_learning_rate}]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(self))
        self.step = 0
        self.history: dict[str, Any] = {"losses": [], "evaluations": []}

    # ------------------------------------------------------------------ the loop
    def train(self, resume_from: str | os.PathLike[str] | None = None) -> TrainingResult:
        """Train to ``total_steps``, evaluating after each epoch, and save the model to ``output_dir/model``.

        Args:
            resume_from: a checkpoint folder, or ``"latest"`` for the newest under ``output_dir/checkpoints``.

        Raises:
            InvalidInputError: the checkpoint was written with other data-order settings.
            CorruptIndexError: the checkpoint cannot be read.
        """
        from tqdm.auto import tqdm

        start = time.perf_counter()
        if resume_from is not None:
            folder = latest_checkpoint(self.output_dir) if str(resume_from) == "latest" else Path(resume_from)
            if folder is None:
                raise InvalidInputError(f"resume_from='latest': no checkpoint under {self.output_dir / 'checkpoints'}.")
            self._load_checkpoint(folder)
        else:
            torch.manual_seed(self.config.seed)
        result = TrainingResult(steps=self.step)
        self._train_mode()
        with tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="Training",
            unit="step",
            disable=not self.config.show_progress_bar,
        ) as bar:
            while self.step < self.total_steps:
                epoch, within = divmod(self.step, self.steps_per_epoch)
                loss = self._optimizer_step(epoch, within)
                self.step += 1
                result.losses.append(loss)
                self.history["losses"].append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                end_of_epoch = self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
                if end_of_epoch and self.eval_set is not None:
                    scores = self.evaluate()
                    record = {"epoch": epoch + 1, "step": self.step, **scores}
                    result.evaluations.append(record)
                    self.history["evaluations"].append(record)
                    logger.info("epoch %d step %d: %s", epoch + 1, self.step, scores)
                save_every = self.config.save_every
                if save_every is not None and (self.step % save_every == 0 or self.step == self.total_steps):
                    self.save_checkpoint()
        result.steps = self.step
        result.model_path = self.model.save(self.output_dir / "model")
        result.wall_s = time.perf_counter() - start
        return result

    def evaluate(self, dim: int | None = None) -> dict[str, float]:
        """nDCG@10 and Recall@100 of ``eval_set`` with the exact index (head ``dim``; default the main one)."""
        if self.eval_set is None:
            raise InvalidInputError("evaluate() needs an eval_set; pass eval_set= to the Trainer.")
        try:
            encoder = self.model.as_encoder(dim, bf16=self.bf16)
            return self.eval_set.evaluate(encoder, batch_size=self.config.eval_batch_size)
        finally:
            self._train_mode()

    def _train_mode(self) -> None:
        self.model.train()
        if not self.config.train_backbone:
            self.model.backbone.eval()

    def _optimizer_step(self, epoch: int, within: int) -> float:
        cfg = self.config
        order = torch.randperm(len(self.examples), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        n_micro = math.ceil(len(order) / cfg.batch_size)
        micro = range(
            within * cfg.gradient_accumulation_steps, min((within + 1) * cfg.gradient_accumulation_steps, n_micro)
        )
        total = 0.0
        for m in micro:
            positions = order[m * cfg.batch_size : (m + 1) * cfg.batch_size]
            batch = self._collate(epoch, positions)
            if cfg.cache_chunk_size is None:
                total += self._plain_backward(batch, len(micro))
            else:
                total += self._cached_backward(batch, len(micro), cfg.cache_chunk_size)
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def _collate(self, epoch: int, positions: list[int]) -> _Batch:
        cfg = self.config
        examples = [self.examples[i] for i in positions]
        queries = [e.query for e in examples]
        if cfg.loss == "distillation":
            documents = [d for e in examples for d in e.documents]
            teacher = torch.tensor([e.scores for e in examples], dtype=torch.float32)
            return _Batch(
                self.model.tokenize_queries(queries),
                self.model.tokenize_documents(documents),
                torch.zeros(0, dtype=torch.long),
                torch.zeros(0, dtype=torch.bool),
                teacher,
            )
        documents, targets = [], []
        for i, e in zip(positions, examples, strict=True):
            pool = list(e.documents[1:])
            k = min(cfg.negatives_per_query, len(pool))
            negatives = random.Random(f"{cfg.seed}:{epoch}:{i}").sample(pool, k) if k else []
            targets.append(len(documents))
            documents.extend([e.documents[0], *negatives])
        positives: dict[str, set[str]] = {}
        for e in examples:
            positives.setdefault(e.query, set()).add(e.documents[0])
        ignore = torch.tensor([[d in positives[q] for d in documents] for q in queries], dtype=torch.bool)
        return _Batch(
            self.model.tokenize_queries(queries),
            self.model.tokenize_documents(documents),
            torch.tensor(targets, dtype=torch.long),
            ignore,
            torch.zeros(0),
        )

    def _autocast(self) -> AbstractContextManager[Any]:
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _loss(
        self, queries: dict[int, torch.Tensor], documents: dict[int, torch.Tensor], batch: _Batch
    ) -> torch.Tensor:
        """The loss summed over heads (weighted by ``head_weights``)."""
        cfg = self.config
        weights = cfg.head_weights or (1.0,) * len(self.model.dims)
        q_mask = batch.queries.mask.to(self.device)
        d_mask = batch.documents.mask.to(self.device)
        total = torch.zeros((), device=self.device)
        for weight, dim in zip(weights, self.model.dims, strict=True):
            if weight == 0:
                continue
            q, d = queries[dim], documents[dim]
            if cfg.loss == "contrastive":
                scores = colbert_scores(q, q_mask, d, d_mask)
                loss = contrastive_loss(
                    scores,
                    batch.targets.to(self.device),
                    temperature=cfg.temperature,
                    ignore=batch.ignore.to(self.device),
                )
            else:
                n_way = batch.teacher.shape[1]
                scores = grouped_scores(
                    q, q_mask, d.view(len(q), n_way, *d.shape[1:]), d_mask.view(len(q), n_way, d_mask.shape[1])
                )
                loss = distillation_loss(scores, batch.teacher.to(self.device), normalize=cfg.normalize_scores)
            total = total + weight * loss
        return total

    def _plain_backward(self, batch: _Batch, n_micro: int) -> float:
        with self._autocast():
            queries = self.model(batch.queries, backbone_grad=self.config.train_backbone)
            documents = self.model(batch.documents, backbone_grad=self.config.train_backbone)
        loss = self._loss(queries, documents, batch)
        (loss / n_micro).backward()
        return float(loss.detach()) / n_micro

    def _cached_backward(self, batch: _Batch, n_micro: int, chunk: int) -> float:
        """GradCache (Gao et al., 2021): the gradient of :meth:`_plain_backward` with activations for ``chunk`` texts.

        1. embed queries and documents chunk by chunk without a graph (each chunk's RNG state kept);
        2. the loss over all the cached embeddings, backward to the embeddings only;
        3. replay each chunk with its RNG state (same dropout) and backpropagate the cached embedding gradient.
        """
        chunks: list[tuple[str, TokenBatch, int, dict[str, torch.Tensor]]] = []
        cached: dict[str, dict[int, torch.Tensor]] = {}
        for name, tokens in (("queries", batch.queries), ("documents", batch.documents)):
            pieces: dict[int, list[torch.Tensor]] = {d: [] for d in self.model.dims}
            width = tokens.input_ids.shape[1]
            for start in range(0, len(tokens), chunk):
                part = tokens.slice(start, min(start + chunk, len(tokens)))
                state = rng_state(self.device)
                with torch.no_grad(), self._autocast():
                    out = self.model(part, backbone_grad=self.config.train_backbone)
                for d, x in out.items():
                    pieces[d].append(F.pad(x, (0, 0, 0, width - x.shape[1])))  # back to the batch's width
                chunks.append((name, part, start, state))
            cached[name] = {d: torch.cat(p).requires_grad_() for d, p in pieces.items()}
        loss = self._loss(cached["queries"], cached["documents"], batch)
        (loss / n_micro).backward()
        for name, part, start, state in chunks:
            set_rng_state(state, self.device)
            with self._autocast():
                out = self.model(part, backbone_grad=self.config.train_backbone)
            grads = {d: cast(torch.Tensor, cached[name][d].grad) for d in out}
            surrogate = sum((x * grads[d][start : start + len(part), : x.shape[1]]).sum() for d, x in out.items())
            cast(torch.Tensor, surrogate).backward()
        return float(loss.detach()) / n_micro

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint of this step under ``output_dir/checkpoints/step-<n>`` (atomic)."""
        from safetensors.torch import save_file

        root = self.output_dir / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        target = root / f"step-{self.step:07d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                str(tmp / "model.safetensors"),
            )
            tensors, meta = optimizer_to_files(self.optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps(meta), encoding="utf-8")
            save_file(rng_state(self.device), str(tmp / "rng.safetensors"))
            state = {
                "format": CHECKPOINT_FORMAT,
                "step": self.step,
                "total_steps": self.total_steps,
                "n_examples": len(self.examples),
                "heads": self.model.dims,
                "config": jsonable(asdict(self.config)),
                "scheduler": jsonable(self.scheduler.state_dict()),
                "history": self.history,
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        keep = self.config.keep_checkpoints
        if keep is not None:
            for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("Saved checkpoint %s", target)
        return target

    def _load_checkpoint(self, folder: Path) -> None:
        from safetensors.torch import load_file

        state_file = folder / STATE_FILE
        if not state_file.is_file():
            raise CorruptIndexError(f"resume_from: {folder} is not a training checkpoint (no {STATE_FILE}).")
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            saved = state["config"]
            if state.get("format") != CHECKPOINT_FORMAT:
                raise CorruptIndexError(f"{state_file}: unknown checkpoint format {state.get('format')!r}.")
            mine = jsonable(asdict(self.config))
            for key in _RESUME_KEYS:
                if saved.get(key) != mine[key]:
                    raise InvalidInputError(
                        f"resume_from: {folder} was trained with {key}={saved.get(key)!r}, this run has "
                        f"{key}={mine[key]!r}; resume with the same setting (it fixes the data order)."
                    )
            if state["n_examples"] != len(self.examples) or state["heads"] != self.model.dims:
                raise InvalidInputError(
                    f"resume_from: {folder} was trained on {state['n_examples']} examples with heads {state['heads']}; "
                    f"this run has {len(self.examples)} and {self.model.dims}. Resume with the same data and model."
                )
            self.model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(self.device)))
            meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
            saved_sizes = [len(g["params"]) for g in meta["param_groups"]]
            sizes = [len(g["params"]) for g in self.optimizer.param_groups]
            if saved_sizes != sizes:
                raise InvalidInputError(
                    f"resume_from: {folder} optimised parameter groups of {saved_sizes} tensors, this run has "
                    f"{sizes}; resume with the same train_backbone and head_learning_rate (set or not)."
                )
            self.optimizer.load_state_dict(
                optimizer_from_files(load_file(str(folder / "optimizer.safetensors"), device=str(self.device)), meta)
            )
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(load_file(str(folder / "rng.safetensors")), self.device)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise CorruptIndexError(f"resume_from: cannot read the checkpoint {folder}: {exc}") from exc
        self.step = int(state["step"])
        self.history = state["history"]
        logger.info("Resumed from %s at step %d", folder, self.step)


# ---------------------------------------------------------------------- helpers
def _positive_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}.")


def _positive_number(value: object, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}.")


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_native_bf16()


def _schedule(trainer: Trainer) -> Callable[[int], float]:
    warmup, total, constant = trainer.config.warmup_steps, trainer.total_steps, trainer.config.schedule == "constant"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 1.0 if constant else max(0.0, (total - step) / max(1, total - warmup))

    return factor
