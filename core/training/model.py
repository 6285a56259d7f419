"""A trainable ColBERT: a transformer, one linear projection head per output width, and the encoder's framing.

:class:`TrainableColBERT` tokenises exactly as :class:`~lateint_plugins.core.encoder.ColBERTEncoder` does
for PyLate folders (it borrows an encoder's framing: markers, query expansion, skiplist), so vectors seen in
training are the vectors served after :meth:`TrainableColBERT.save`. Saves use the PyLate /
sentence-transformers layout (``modules.json``, ``1_Dense/``, ``config_sentence_transformers.json``); extra
Matryoshka heads sit in ``1_Dense_<dim>/`` folders listed under ``matryoshka_heads``, which
``ColBERTEncoder.from_pretrained(path, dim=64)`` selects and PyLate ignores (it loads the main head).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..encoder import ColBERTEncoder, EncoderConfig, _Dense, _matryoshka_head, _matryoshka_heads
from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["TokenBatch", "TrainableColBERT"]

_IDENTITY = "torch.nn.modules.linear.Identity"


@dataclass(frozen=True)
class TokenBatch:
    """Padded model inputs of one batch of texts.

    Attributes:
        input_ids: ``(n, length)`` long.
        attention_mask: ``(n, length)`` long, the positions the transformer attends to.
        mask: ``(n, length)`` bool, the output positions that take part in MaxSim (queries: every
            position with expansion; documents: real tokens minus the skiplist).
        lengths: ``(n,)`` long, the framed length of each row (padding excluded).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def slice(self, start: int, stop: int) -> TokenBatch:
        """Rows ``start:stop``, trimmed to the longest of them."""
        width = int(self.lengths[start:stop].max())
        return TokenBatch(
            self.input_ids[start:stop, :width],
            self.attention_mask[start:stop, :width],
            self.mask[start:stop, :width],
            self.lengths[start:stop],
        )


class TrainableColBERT(nn.Module):
    """A ColBERT model to fine-tune: ``backbone`` (a Hugging Face encoder) and ``heads`` (width -> Linear).

    Build it with :meth:`from_pretrained`. ``default_dim`` is the main head (saved as ``1_Dense``, the one
    PyLate and ``ColBERTEncoder.from_pretrained`` load by default); the others are Matryoshka heads
    trained jointly (Jina-ColBERT-v2's non-weight-tied variant: separate Linear layers, not slices of one).
    """

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        heads: dict[int, nn.Linear],
        config: EncoderConfig,
        *,
        default_dim: int,
        name_or_path: str = "",
    ) -> None:
        super().__init__()
        if default_dim not in heads:
            raise InvalidInputError(f"default_dim={default_dim} is not one of the heads {sorted(heads)}.")
        if config.query_prompt != config.document_prompt:
            raise InvalidInputError(
                "The PyLate layout stores one prompt for queries and documents; this model has query_prompt="
                f"{config.query_prompt!r} and document_prompt={config.document_prompt!r}. Train from a model "
                "whose prompts are equal (or empty)."
            )
        if config.truncate_dim is not None or config.long_documents != "truncate":
            config = replace(config, truncate_dim=None, long_documents="truncate")
        self.backbone = backbone
        self.heads = nn.ModuleDict({str(d): heads[d] for d in sorted(heads, reverse=True)})
        self.tokenizer = tokenizer
        self.config = config
        self.default_dim = default_dim
        self.name_or_path = name_or_path
        # The framing (markers, expansion, skiplist ids) of the encoder that will load the saved folder.
        self._framer = ColBERTEncoder(
            backbone, tokenizer, heads[default_dim], config, device="cpu", precision="fp32", checkpoint_format="pylate"
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        embedding_dim: int = 128,
        matryoshka_dims: Sequence[int] = (),
        local_files_only: bool = True,
        seed: int = 0,
        **config_overrides: Any,
    ) -> TrainableColBERT:
        """Start from a ColBERT checkpoint (PyLate, sentence-transformers 6 or Stanford) or a plain encoder.

        Args:
            name_or_path: a checkpoint folder (or a Hub id, with ``local_files_only=False``).
            embedding_dim: width of the new projection when the checkpoint has none (a plain Hugging Face
                encoder); ignored for ColBERT checkpoints, which keep their head.
            matryoshka_dims: widths of extra heads to train jointly (e.g. ``(64, 32)``). A head narrower than
                the main one starts as its first rows (plain truncation), so training starts where
                truncation stands; a wider one starts at random. The heads of a model saved by
                :meth:`save` (its ``matryoshka_heads``) load as saved, so training can go on from it.
            local_files_only: never reach the Hub.
            seed: seeds the initialisation of new heads (the same call builds the same model).
            **config_overrides: :class:`EncoderConfig` fields (``query_length``, ``document_length``, ...).

        Raises:
            InvalidInputError: a bad width, or a projection that is not one linear layer.
            ModelLoadError: the folder cannot be read (from :meth:`ColBERTEncoder.from_pretrained`).
        """
        _check_width(embedding_dim, "embedding_dim")
        dims = _check_dims(matryoshka_dims)
        encoder = ColBERTEncoder.from_pretrained(
            name_or_path, device="cpu", precision="fp32", local_files_only=local_files_only, **config_overrides
        )
        backbone, tokenizer, config = encoder.backbone, encoder.tokenizer, encoder.config
        hidden = int(getattr(backbone, "config").hidden_size)  # noqa: B009
        if encoder.checkpoint_format == "plain":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                main = nn.Linear(hidden, embedding_dim, bias=False)
            config = _add_markers(backbone, tokenizer, config)
            logger.info("%s is a plain encoder: added a %d -> %d projection", name_or_path, hidden, embedding_dim)
        else:
            main = _as_linear(encoder.projection, str(name_or_path))
        if getattr(tokenizer, "mask_token_id", None) is not None:
            tokenizer.pad_token = tokenizer.mask_token  # as PyLate saves it
        default_dim = main.out_features
        heads: dict[int, nn.Linear] = {default_dim: main}
        if encoder.checkpoint_format != "plain":  # a model this module saved: its trained heads come back too
            heads.update(_saved_heads(Path(name_or_path), encoder.projection))
        for d in dims:
            if d in heads:
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + d)
                head = nn.Linear(hidden, d, bias=main.bias is not None)
            if d < default_dim:
                with torch.no_grad():
                    head.weight.copy_(main.weight[:d])
                    if head.bias is not None and main.bias is not None:
                        head.bias.copy_(main.bias[:d])
            heads[d] = head
        model = cls(backbone, tokenizer, heads, config, default_dim=default_dim, name_or_path=str(name_or_path))
        return model.train()

    @property
    def dims(self) -> list[int]:
        """Widths of the heads, widest first."""
        return [int(d) for d in self.heads]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ tokenising
    def tokenize_queries(self, texts: Sequence[str]) -> TokenBatch:
        """Queries framed as the encoder frames them: ``[CLS] marker text [SEP]`` plus mask-token expansion."""
        f = self._framer
        sequences = [f._frame_query(i, c) for i, c in enumerate(f._tokenize(texts, self.config.query_prompt))]
        return self._pad([s.input_ids for s in sequences], [s.attended for s in sequences], skip=False)

    def tokenize_documents(self, texts: Sequence[str]) -> TokenBatch:
        """Documents framed and truncated to ``document_length`` as the encoder does; the mask drops the skiplist."""
        f = self._framer
        sequences = [
            next(f._frame_document(i, c, window=False))
            for i, c in enumerate(f._tokenize(texts, self.config.document_prompt))
        ]
        return self._pad([s.input_ids for s in sequences], [s.attended for s in sequences], skip=True)

    def _pad(self, rows: list[list[int]], attended: list[int], *, skip: bool) -> TokenBatch:
        f = self._framer
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), f._pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        positions = torch.arange(width)
        lengths = torch.tensor([len(r) for r in rows])
        mask = positions[None, :] < lengths[:, None]
        if skip and f._skip_ids:
            mask &= ~torch.isin(ids, torch.tensor(sorted(f._skip_ids), dtype=torch.long))
        attention = (positions[None, :] < torch.tensor(attended)[:, None]).long()
        return TokenBatch(ids, attention, mask, lengths)

    # ------------------------------------------------------------------ forward
    def forward(
        self, batch: TokenBatch, dims: Sequence[int] | None = None, *, backbone_grad: bool = True
    ) -> dict[int, torch.Tensor]:
        """L2-normalised token vectors per head: width -> ``(n, length, width)`` float32 (all positions; apply
        ``batch.mask`` when scoring). ``dims`` defaults to every head; ``backbone_grad=False`` runs the
        transformer without a graph (only the heads get gradients)."""
        device = self.device
        inputs = {
            "input_ids": batch.input_ids.to(device),
            "attention_mask": batch.attention_mask.to(device),
        }
        if self._framer._token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        with torch.set_grad_enabled(torch.is_grad_enabled() and backbone_grad):
            hidden = self.backbone(**inputs).last_hidden_state
        return {d: F.normalize(self.heads[str(d)](hidden).float(), p=2, dim=-1) for d in (dims or self.dims)}

    def as_encoder(self, dim: int | None = None, *, bf16: bool = False, **options: Any) -> ColBERTEncoder:
        """A :class:`ColBERTEncoder` sharing these weights (no copy), for mining and evaluation.

        ``bf16``: bf16 autocast on a CPU. Elsewhere the encoder computes in float32: its bf16 on CUDA casts
        the weights, which here are the training weights. It puts the model in eval mode; call
        ``model.train()`` before training again.
        """
        dim = self.default_dim if dim is None else dim
        if str(dim) not in self.heads:
            raise InvalidInputError(f"dim={dim} is not one of this model's heads {self.dims}.")
        options["precision"] = "bf16" if bf16 and self.device.type == "cpu" else "fp32"
        return ColBERTEncoder(
            self.backbone,
            self.tokenizer,
            self.heads[str(dim)],
            self.config,
            device=self.device,
            checkpoint_format="pylate",
            name_or_path=self.name_or_path,
            **options,
        )

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a complete ColBERT in the PyLate layout to the folder ``path`` (replaced atomically).

        Files: the transformer (``config.json``, ``model.safetensors``) and tokenizer at the top,
        ``modules.json``, ``sentence_bert_config.json``, ``config_sentence_transformers.json`` (PyLate's keys),
        ``1_Dense/`` (the main head) and ``1_Dense_<dim>/`` per Matryoshka head. Weights are float32.
        """
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise InvalidInputError(f"path {str(target)!r} is a file; pass a folder to save the model into.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
        try:
            self._write(tmp)
            _swap_folder(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("Saved the model (heads %s) to %s", self.dims, target)
        return target

    def _write(self, folder: Path) -> None:
        from safetensors.torch import save_file

        import lateint_plugins

        backbone: Any = self.backbone
        state = {k: v.detach().float().cpu().contiguous() for k, v in backbone.state_dict().items()}
        from transformers.utils import logging as hf_logging

        # A library should not draw transformers' "Writing model shards" bar on stderr unasked.
        bars_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            backbone.save_pretrained(folder, state_dict=state)
        finally:
            if bars_enabled:
                hf_logging.enable_progress_bar()
        self.tokenizer.save_pretrained(folder)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ]
        extra: dict[str, str] = {}
        for d in self.dims:
            name = "1_Dense" if d == self.default_dim else f"1_Dense_{d}"
            head = cast(nn.Linear, self.heads[str(d)])  # built as Linear in __init__
            (folder / name).mkdir()
            weights = {"linear.weight": head.weight.detach().float().cpu().contiguous()}
            if head.bias is not None:
                weights["linear.bias"] = head.bias.detach().float().cpu().contiguous()
            save_file(weights, str(folder / name / "model.safetensors"))
            _write_json(
                folder / name / "config.json",
                {
                    "in_features": head.in_features,
                    "out_features": head.out_features,
                    "bias": head.bias is not None,
                    "activation_function": _IDENTITY,
                    "use_residual": False,
                },
            )
            if d != self.default_dim:
                extra[str(d)] = name
        cfg = self.config
        marker = 1 if cfg.document_prefix else 0
        _write_json(folder / "modules.json", modules)
        _write_json(
            folder / "sentence_bert_config.json",
            {"max_seq_length": cfg.document_length - marker, "do_lower_case": cfg.lowercase},
        )
        st_config: dict[str, Any] = {
            "__version__": {
                "lateint_plugins": lateint_plugins.__version__,
                "transformers": _version("transformers"),
                "pytorch": torch.__version__,
            },
            "prompts": {"default": cfg.query_prompt} if cfg.query_prompt else {},
            "default_prompt_name": "default" if cfg.query_prompt else None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": cfg.query_prefix,
            "document_prefix": cfg.document_prefix,
            "query_length": cfg.query_length,
            "document_length": cfg.document_length,
            "attend_to_expansion_tokens": cfg.attend_to_expansion_tokens,
            "skiplist_words": list(cfg.skiplist_words),
            "do_query_expansion": cfg.do_query_expansion,
        }
        if extra:
            st_config["matryoshka_heads"] = extra
        _write_json(folder / "config_sentence_transformers.json", st_config)

    def __repr__(self) -> str:
        return f"TrainableColBERT({self.name_or_path!r}, heads={self.dims}, default_dim={self.default_dim})"


# ---------------------------------------------------------------------- helpers
def _check_width(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}.")
    return value


def _check_dims(dims: object) -> tuple[int, ...]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise InvalidInputError(f"matryoshka_dims must be a sequence of positive ints (e.g. (64, 32)), got {dims!r}.")
    checked = tuple(_check_width(d, f"matryoshka_dims[{i}]") for i, d in enumerate(dims))
    if len(set(checked)) != len(checked):
        raise InvalidInputError(f"matryoshka_dims has repeated widths: {list(dims)}; list each width once.")
    return checked


def _saved_heads(folder: Path, projection: nn.Module | None) -> dict[int, nn.Linear]:
    """The Matryoshka heads listed in a saved model's ``matryoshka_heads`` (none for other checkpoints)."""
    config_file = folder / "config_sentence_transformers.json"
    if projection is None or not config_file.is_file():
        return {}
    st_config = json.loads(config_file.read_text(encoding="utf-8"))
    denses = list(projection) if isinstance(projection, nn.Sequential) else [projection]
    if not all(isinstance(d, _Dense) for d in denses):
        return {}
    return {
        int(d): _as_linear(_matryoshka_head(folder, st_config, cast(list[_Dense], denses), int(d))[-1], str(folder))
        for d in _matryoshka_heads(st_config)
    }


def _as_linear(projection: nn.Module, where: str) -> nn.Linear:
    """The checkpoint's projection as one Linear (PyLate's identity Dense, or a Stanford ``linear``)."""
    if isinstance(projection, nn.Linear):
        return projection
    layers = list(projection) if isinstance(projection, nn.Sequential) else [projection]
    if len(layers) == 1 and isinstance(layers[0], _Dense):
        dense = layers[0]
        if isinstance(dense.activation, nn.Identity) and not dense.use_residual:
            return dense.linear
    raise InvalidInputError(
        f"{where}: its projection ({projection}) is not a single linear layer; training supports ColBERT "
        "checkpoints with one identity Dense head (PyLate, Stanford) or plain encoders."
    )


def _add_markers(backbone: nn.Module, tokenizer: Any, config: EncoderConfig) -> EncoderConfig:
    """ColBERT markers for a plain encoder: ``[unused0]``/``[unused1]`` where the vocabulary has them (BERT),
    else PyLate's ``[Q] ``/``[D] `` added as tokens (the embedding matrix grows by two rows)."""
    vocab = tokenizer.get_vocab()
    if "[unused0]" in vocab and "[unused1]" in vocab:
        return replace(config, query_prefix="[unused0]", document_prefix="[unused1]")
    tokenizer.add_tokens(["[Q] ", "[D] "])
    resize = getattr(backbone, "resize_token_embeddings", None)
    if resize is None:
        raise InvalidInputError("This encoder cannot grow its vocabulary for the [Q]/[D] markers.")
    resize(len(tokenizer))
    return replace(config, query_prefix="[Q] ", document_prefix="[D] ")


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _swap_folder(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` at ``target``: a crash leaves the old or the new folder, never a mix."""
    for root, _dirs, files in os.walk(tmp):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
