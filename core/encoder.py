"""ColBERT encoder: text in, one L2-normalised vector per token out.

The encoder reads four checkpoint formats and encodes each the way its own library does
(``encoder.checkpoint_format`` records which one a folder was detected as):

* ``"pylate"``: folders saved by PyLate (<= 1.6): ``modules.json``, ``1_Dense/``, and the
  ``query_prefix`` / ``query_length`` / ... keys of ``config_sentence_transformers.json``. Markers
  are single added tokens inserted after the first special token, texts are stripped, the skiplist
  is ``convert_tokens_to_ids`` of each word (a word missing from the vocabulary skips ``<unk>``).
* ``"sentence-transformers"``: sentence-transformers 6 ``MultiVectorEncoder`` folders
  (``model_type: MultiVectorEncoder``): prompts are text prepended before tokenisation, lengths and
  ``query_expansion`` come from the Transformer module, the skiplist from ``MultiVectorMask``
  (words that are not one vocabulary token are dropped).
* ``"stanford"``: Stanford colbert-ai ``HF_ColBERT`` checkpoints (backbone plus ``linear.weight``
  in one state file, options in ``artifact.metadata``): a marker missing from the vocabulary maps to
  ``<unk>`` (``convert_tokens_to_ids``), the skiplist is the first piece of each punctuation mark.
* ``"plain"``: a Hugging Face encoder or a single-vector sentence-transformers folder (ColBERT
  defaults; no projection unless the folder has Dense modules).

Queries and documents are framed as ``<first special> <marker> tokens <last special>`` (``[CLS]`` /
``[SEP]`` for BERT, ``<s>`` / ``</s>`` for RoBERTa-style vocabularies). Queries are padded with the
mask token (ColBERT's query augmentation) to ``query_length`` and every position is returned; longer
queries are truncated to ``query_length`` (logged once per encoder; pass ``query_length=`` to raise
it). Documents drop padding and skiplisted tokens. All outputs are L2-normalised float32 tensors on
the CPU.

Precision (``precision=``) sets how the model computes, never the output dtype: ``"auto"`` (the
default) is bf16 on CPUs with native BF16 arithmetic (AVX512-BF16 or AMX), bf16 on CUDA devices that
support it (fp16 on older ones) and fp32 elsewhere; ``"int8"`` is torch dynamic quantisation of every
``nn.Linear`` (CPU only). The model fingerprint is hashed from the checkpoint's float32 weights before
any conversion, so a store built at one precision opens with an encoder at another.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import queue
import re
import string
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, Literal, cast, overload

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_device, check_text, check_texts
from .errors import InvalidInputError, LateInteractionError, MissingDependencyError, ModelLoadError
from .fingerprint import ModelFingerprint, hash_weights

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMATS",
    "DEFAULT_MODEL",
    "PRECISIONS",
    "ColBERTEncoder",
    "EncodePool",
    "EncoderConfig",
    "cpu_has_native_bf16",
    "resolve_device",
    "resolve_precision",
]

DEFAULT_MODEL = "answerdotai/answerai-colbert-small-v1"
"""Hub id used when no model is given (``--model`` / ``LATEINT_MODEL`` override it)."""

LongDocuments = Literal["truncate", "window"]
CheckpointFormat = Literal["pylate", "sentence-transformers", "stanford", "plain"]
CHECKPOINT_FORMATS: tuple[str, ...] = ("pylate", "sentence-transformers", "stanford", "plain")
"""Values of :attr:`ColBERTEncoder.checkpoint_format`: which library's rules the encoder follows."""

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
"""Values of ``precision=``: ``"auto"`` chooses for the device (see :func:`resolve_precision`)."""

_PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.float32,  # dynamic quantisation: int8 Linear weights, float32 activations elsewhere
}

DEFAULT_MAX_TOKENS_PER_BATCH = 8192
"""Default bound on padded tokens (rows x longest row) per forward pass."""

ProgressCallback = Callable[[int, int], None]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "identity": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leakyrelu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


@dataclass(frozen=True)
class EncoderConfig:
    """How texts are framed, truncated and masked. Field names follow PyLate.

    Args:
        query_prefix: marker token inserted after the first special token of queries (``[unused0]`` is
            ColBERT's ``[Q]``; PyLate saves use ``"[Q] "``, Jina-ColBERT v2 ``[QueryMarker]``). It must be
            one token of the vocabulary (Stanford checkpoints: a missing one maps to ``<unk>``, as
            colbert-ai does); ``""`` inserts none.
        document_prefix: the same for documents (``[unused1]`` is ``[D]``).
        query_prompt: text prepended to each query before tokenisation (sentence-transformers
            ``prompts``), e.g. ``"query: "``; ``""`` for none.
        document_prompt: text prepended to each document before tokenisation.
        query_length: total query length in tokens, special tokens and marker included; queries are
            padded to it and longer ones truncated (with a warning, once). Raise it to keep long queries.
        document_length: total document length in tokens, special tokens and marker included.
        do_query_expansion: pad queries with the mask token to ``query_length`` and return those positions.
        attend_to_expansion_tokens: let the encoder attend to the mask-token padding.
        skiplist_words: tokens dropped from document outputs (punctuation by default).
        lowercase: lowercase texts before tokenising (sentence-transformers ``do_lower_case``).
        truncate_dim: keep only the first ``truncate_dim`` output dimensions (before normalising).
        long_documents: ``"truncate"`` cuts documents at ``document_length``; ``"window"`` encodes
            the rest in overlapping windows and keeps every token.
        window_overlap: tokens shared by neighbouring windows in ``"window"`` mode.
    """

    query_prefix: str = "[unused0]"
    document_prefix: str = "[unused1]"
    query_length: int = 32
    document_length: int = 180
    do_query_expansion: bool = True
    attend_to_expansion_tokens: bool = False
    skiplist_words: tuple[str, ...] = field(default=tuple(string.punctuation))
    truncate_dim: int | None = None
    long_documents: LongDocuments = "truncate"
    window_overlap: int = 64
    query_prompt: str = ""
    document_prompt: str = ""
    lowercase: bool = False

    def __post_init__(self) -> None:
        for name in ("query_length", "document_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 4:
                raise InvalidInputError(f"{name} must be an int >= 4, got {value!r}.")
        if self.truncate_dim is not None and (not isinstance(self.truncate_dim, int) or self.truncate_dim < 1):
            raise InvalidInputError(f"truncate_dim must be a positive int or None, got {self.truncate_dim!r}.")
        if self.long_documents not in ("truncate", "window"):
            raise InvalidInputError(f"long_documents must be 'truncate' or 'window', got {self.long_documents!r}.")
        if not isinstance(self.window_overlap, int) or self.window_overlap < 0:
            raise InvalidInputError(f"window_overlap must be an int >= 0, got {self.window_overlap!r}.")
        for name in ("query_prefix", "document_prefix", "query_prompt", "document_prompt"):
            if not isinstance(getattr(self, name), str):
                raise InvalidInputError(f"{name} must be a str ('' for none), got {getattr(self, name)!r}.")
        object.__setattr__(self, "skiplist_words", tuple(self.skiplist_words))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA, then MPS, then CPU."""
    if device is not None:
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes BF16 natively (x86 ``avx512_bf16`` or ``amx_bf16`` among the flags of
    ``cpuinfo``).

    Without those instructions torch emulates bf16 matmuls and they are slower than fp32, so ``"auto"``
    stays at fp32. Where the file is unreadable (macOS, Windows) the answer is False.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.partition(":")[2].split()))
    except OSError:
        pass
    return False


def resolve_precision(
    precision: str | None, dtype: torch.dtype | None, device: torch.device
) -> tuple[str, torch.dtype]:
    """``(precision, dtype)`` the encoder runs at, from the caller's ``precision=`` and ``dtype=``.

    ``precision`` is the user-facing knob and ``dtype`` the low-level one. Neither given: the
    ``LATEINT_PRECISION`` environment variable if set (e.g. ``fp32`` for reproducible test runs), else
    ``"auto"``.
    Only ``dtype``: it is used as is (the precision is named after it, e.g. ``"bf16"``). Only
    ``precision``: its dtype (``"int8"`` computes in float32 around int8 Linear layers). Both: they
    must agree (``"int8"`` with ``torch.float32``), and ``"auto"`` with a dtype is a conflict.
    ``"auto"`` is bf16 on CPUs with native BF16 (:func:`cpu_has_native_bf16`), bf16 on CUDA devices
    that support it and fp16 on older ones, fp32 on anything else (MPS included).

    Raises:
        InvalidInputError: an unknown precision, a non-dtype ``dtype``, a conflict between the two,
            or ``"int8"`` on a device other than the CPU.
    """
    if precision is not None and precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise InvalidInputError(f"dtype must be a torch.dtype such as torch.bfloat16 or None, got {dtype!r}.")
    if precision is None:
        if dtype is not None:
            named = {v: k for k, v in _PRECISION_DTYPES.items() if k != "int8"}
            return named.get(dtype, str(dtype).removeprefix("torch.")), dtype
        precision = os.environ.get("LATEINT_PRECISION") or "auto"
        if precision not in PRECISIONS:
            raise InvalidInputError(
                f"The environment variable LATEINT_PRECISION={precision!r} is not one of {PRECISIONS}; "
                "set it to one of them or unset it."
            )
    if precision == "auto":
        if dtype is not None:
            raise InvalidInputError(
                f"precision='auto' and dtype={dtype} were both given; pass one of them: precision= "
                "('fp32', 'bf16', 'fp16', 'int8') or dtype=, not both."
            )
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_native_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    wanted = _PRECISION_DTYPES[precision]
    if dtype is not None and dtype != wanted:
        raise InvalidInputError(
            f"precision={precision!r} computes in {wanted} but dtype={dtype} was given; drop dtype= "
            f"(precision decides it) or pass the matching one."
        )
    if precision == "int8" and device.type != "cpu":
        raise InvalidInputError(
            f"precision='int8' (torch dynamic quantisation) runs on the CPU only, got device={device}; "
            "pass precision='fp16' or 'bf16' on a GPU, or device='cpu'."
        )
    return precision, wanted


def _quantize_int8(module: nn.Module) -> nn.Module:
    """Every ``nn.Linear`` of ``module`` as a dynamically quantised int8 Linear (weights int8 per
    tensor, activations quantised per batch), the rest unchanged in float32."""
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        return module
    with warnings.catch_warnings():
        # torch >= 2.10 announces that torch.ao.quantization moves to torchao; the eager path still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as exc:
            raise MissingDependencyError(
                f"precision='int8' needs torch.ao.quantization, which this torch {torch.__version__} lacks; "
                "pass precision='bf16' or 'fp32'."
            ) from exc
        return cast(nn.Module, quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8))


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the process's setting afterwards (None: leave it)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Sequence:
    """One model input: token ids, how many positions attend, and which outputs to keep
    (``None``: every position, before the skiplist)."""

    text_index: int
    input_ids: list[int]
    attended: int
    keep: list[bool] | None = None


class ColBERTEncoder:
    """Encodes queries and documents into per-token ColBERT vectors.

    Build it with :meth:`from_pretrained`. Outputs are float32 CPU tensors, one per text:
    queries are ``(query_length, dim)`` with expansion on; documents are ``(n_tokens, dim)``
    without padding or skiplisted tokens.

    Attributes:
        checkpoint_format: the rules followed (``"pylate"``, ``"sentence-transformers"``,
            ``"stanford"`` or ``"plain"``), as detected from the folder by :meth:`from_pretrained`.
        revision: the Hub commit the model came from, when it was loaded from the Hub cache.

    A query longer than ``query_length`` is cut to it (logged once per encoder); load with
    ``from_pretrained(..., query_length=64)`` to keep longer queries, for any format.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        projection: nn.Module | None = None,
        config: EncoderConfig | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        precision: Precision | None = None,
        max_tokens_per_batch: int | None = DEFAULT_MAX_TOKENS_PER_BATCH,
        num_threads: int | None = None,
        name_or_path: str = "",
        checkpoint_format: CheckpointFormat = "plain",
    ) -> None:
        if checkpoint_format not in CHECKPOINT_FORMATS:
            raise InvalidInputError(
                f"checkpoint_format must be one of {CHECKPOINT_FORMATS}, got {checkpoint_format!r}."
            )
        self.config = config or EncoderConfig()
        self.checkpoint_format: CheckpointFormat = checkpoint_format
        self.device = resolve_device(device)
        self.precision, self.dtype = resolve_precision(precision, dtype, self.device)
        """``precision``: what the model computes in (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"int8"``; ``"auto"``
        resolved); ``dtype``: the float dtype its matrix products run in (float32 for int8)."""
        # bf16 on a CPU: float32 weights under autocast, so matrix products run in bf16 while the
        # residual stream and LayerNorm stay float32. On SciFact this ranks exactly as fp32 does (nDCG@10
        # 0.7371 both) at bf16 speed; weights cast to bf16 drifted to 0.7407. dtype= keeps the cast.
        self._autocast = self.precision == "bf16" and self.device.type == "cpu" and dtype is None
        self.max_tokens_per_batch = _check_optional_positive(max_tokens_per_batch, "max_tokens_per_batch")
        """Bound on padded tokens per forward pass (rows x longest row); None: ``batch_size`` alone."""
        self.num_threads = _check_optional_positive(num_threads, "num_threads")
        """torch intra-op threads while encoding (restored afterwards); None: the process's setting."""
        self.name_or_path = name_or_path
        self.tokenizer = tokenizer
        # Fast tokenizers are not safe to call from two threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        _check_lengths_fit(self.config, backbone)
        projection = projection or nn.Identity()
        # Hashed before any dtype conversion, so the same checkpoint gives the same fingerprint on any device.
        self._weights_sha256 = hash_weights([backbone, projection])
        self.revision: str | None = None
        """The Hub commit the model was loaded from (None for a folder outside the Hub cache)."""
        weights = torch.float32 if self._autocast else self.dtype
        self.backbone = backbone.to(self.device, weights).eval()
        self.projection = projection.to(self.device, weights).eval()
        self._head, self._tail = _special_frame(tokenizer)
        self._query_prefix_ids = _marker_ids(tokenizer, self.config.query_prefix, "query_prefix", checkpoint_format)
        self._document_prefix_ids = _marker_ids(
            tokenizer, self.config.document_prefix, "document_prefix", checkpoint_format
        )
        self._skip_ids = _skiplist_ids(tokenizer, self.config.skiplist_words, checkpoint_format)
        if checkpoint_format == "stanford" and tokenizer.pad_token_id is not None:
            # colbert-ai masks every document position holding the pad id, whatever the skiplist.
            self._skip_ids = self._skip_ids | {int(tokenizer.pad_token_id)}
        # The expansion token: the mask token, else EOS for decoder vocabularies (PyLate and
        # sentence-transformers' fallback), else the pad token.
        mask_id = next(
            (
                i
                for i in (tokenizer.mask_token_id, getattr(tokenizer, "eos_token_id", None), tokenizer.pad_token_id)
                if i is not None
            ),
            None,
        )
        if mask_id is None and self.config.do_query_expansion:
            raise ModelLoadError(
                f"The tokenizer of {name_or_path!r} has no mask, EOS or pad token, so queries cannot be "
                "expanded. Pass do_query_expansion=False."
            )
        self._mask_id: int = int(mask_id) if mask_id is not None else 0
        self._pad_id: int = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self._mask_id
        # token_type_ids (all zeros for one sequence) only where the tokenizer produces them and the model
        # takes them: BERT yes; XLM-R, ModernBERT and most custom models no.
        self._token_type_ids = "token_type_ids" in (getattr(tokenizer, "model_input_names", None) or []) and (
            _accepts(self.backbone, "token_type_ids")
        )
        # PyLate tokenises through sentence-transformers 5's Transformer.tokenize, which strips each text.
        self._strip = checkpoint_format == "pylate"
        self._warned_truncated_query = False
        self._dim = _output_dim(self.backbone, self.projection, self.config.truncate_dim)
        self._source: _Source | None = None  # set by from_pretrained: what pool workers reload
        self.pool: EncodePool | None = None
        """A started :class:`EncodePool` that encode calls without ``pool=`` run through (None: this process)."""
        if self.precision == "int8":  # after _output_dim, which reads the float Linear layers
            self.backbone = _quantize_int8(self.backbone)
            self.projection = _quantize_int8(self.projection)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        precision: Precision | None = None,
        max_tokens_per_batch: int | None = DEFAULT_MAX_TOKENS_PER_BATCH,
        num_threads: int | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        trust_remote_code: bool = False,
        dim: int | None = None,
        **config_overrides: Any,
    ) -> ColBERTEncoder:
        """Load a PyLate, sentence-transformers 6, Stanford ColBERT or plain Hugging Face checkpoint.

        The folder's format decides how markers, lengths, expansion and the skiplist are read and
        applied (see the module docstring); :attr:`checkpoint_format` records it.

        Args:
            name_or_path: a local checkpoint folder or a Hugging Face Hub id.
            device: ``"cuda"``, ``"cpu"``, ... (default: CUDA, then MPS, then CPU).
            dtype: weights and activations dtype, the low-level alternative to ``precision``.
            precision: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"`` (CPU, torch dynamic
                quantisation of the Linear layers). ``"auto"`` (the default; the ``LATEINT_PRECISION``
                environment variable replaces that default) is bf16 on CPUs with native BF16 and on CUDA
                (fp16 where bf16 is unsupported), fp32 elsewhere. Outputs stay float32 and the fingerprint
                is the float32 checkpoint's, whatever the precision. Passing both ``precision`` and a
                different ``dtype`` raises :class:`InvalidInputError`.
            max_tokens_per_batch: bound on padded tokens (rows x longest row) per forward pass; texts
                are length-sorted, so short ones go in large batches and long ones in small batches.
                ``batch_size`` of the encode calls stays an upper bound on rows. None: rows only.
            num_threads: torch intra-op threads while encoding (the process's setting is restored
                afterwards); None keeps the current setting.
            local_files_only: never try the Hub (a Hub id then loads only from the local cache).
            revision: Hub branch, tag or commit; :attr:`revision` records the resolved commit.
            token: Hub token for private or gated models (``True``: the saved login).
            cache_dir: Hub cache folder (default: the Hugging Face cache).
            trust_remote_code: run the model's own modelling code (Jina-ColBERT v1 / v2 and other
                models whose ``config.json`` has an ``auto_map``). Read that code first.
            dim: output width, for checkpoints that ship several projection heads (Matryoshka
                heads, e.g. Jina-ColBERT v2: 128, 96 or 64). Default: the main head.
            **config_overrides: any :class:`EncoderConfig` field, overriding the checkpoint's value
                (e.g. ``query_length=64`` to keep longer queries).
        """
        unknown = set(config_overrides) - set(EncoderConfig.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(
                f"Unknown encoder option(s) {sorted(unknown)}; valid ones are "
                f"{sorted(EncoderConfig.__dataclass_fields__)}."
            )
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
            raise InvalidInputError(f"dim must be a positive int or None, got {dim!r}.")
        # Checked before the (slow) load; the constructor resolves them again.
        resolve_precision(precision, dtype, resolve_device(device))
        _check_optional_positive(max_tokens_per_batch, "max_tokens_per_batch")
        _check_optional_positive(num_threads, "num_threads")
        options = _LoadOptions(
            revision=revision,
            token=token,
            cache_dir=None if cache_dir is None else str(cache_dir),
            trust_remote_code=trust_remote_code,
            local_files_only=local_files_only,
            dim=dim,
        )
        folder = _local_folder(str(name_or_path), options)
        loaded = _load_checkpoint(folder, options)
        config = replace(EncoderConfig(), **{**loaded.settings, **config_overrides})
        logger.info(
            "Loaded %s as a %s checkpoint on %s (%s)", folder, loaded.checkpoint_format, device or "auto", config
        )
        encoder = cls(
            loaded.backbone,
            loaded.tokenizer,
            loaded.projection,
            config,
            device=device,
            dtype=dtype,
            precision=precision,
            max_tokens_per_batch=max_tokens_per_batch,
            num_threads=num_threads,
            name_or_path=str(name_or_path),
            checkpoint_format=loaded.checkpoint_format,
        )
        encoder.revision = _hub_commit(folder)
        encoder._source = _Source(
            folder=str(folder.resolve()),
            dim=dim,
            trust_remote_code=trust_remote_code,
            precision=precision,
            dtype=dtype,
        )
        return encoder

    # ------------------------------------------------------------------ public API
    @property
    def dim(self) -> int:
        """Dimension of the output token vectors."""
        return self._dim

    @property
    def fingerprint(self) -> ModelFingerprint:
        """What identifies this model and its document settings (recorded by stores, checked on load)."""
        config = asdict(self.config)
        config["skiplist_words"] = list(config["skiplist_words"])
        config["checkpoint_format"] = self.checkpoint_format
        return ModelFingerprint(
            source=self.name_or_path,
            weights_sha256=self._weights_sha256,
            dim=self.dim,
            revision=self.revision,
            config=config,
        )

    @overload
    def encode_queries(  # type: ignore[overload-overlap]
        self,
        texts: str,
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        progress_callback: ProgressCallback | None = ...,
        pool: EncodePool | None = ...,
    ) -> torch.Tensor: ...
    @overload
    def encode_queries(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        progress_callback: ProgressCallback | None = ...,
        pool: EncodePool | None = ...,
    ) -> list[torch.Tensor]: ...
    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 64,
        show_progress_bar: bool = False,
        progress_callback: ProgressCallback | None = None,
        pool: EncodePool | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Encode queries into ``(query_length, dim)`` tensors (``(n_tokens, dim)`` without expansion).

        A single string gives a single tensor; a sequence gives a list in the same order.

        Args:
            batch_size: most queries per forward pass (``max_tokens_per_batch`` may make batches smaller).
            show_progress_bar: a tqdm bar advanced per batch (queries/s).
            progress_callback: called after every batch with ``(encoded, total)`` model inputs.
            pool: a :class:`EncodePool` from :meth:`start_multi_process_pool` to run the batches in
                (default: :attr:`pool`, else this process). Outputs are the same either way.
        """
        single, items = _check_texts(texts, allow_empty=False)
        content = self._tokenize(items, self.config.query_prompt)
        sequences = [self._frame_query(i, ids) for i, ids in enumerate(content)]
        out = self._run(
            sequences, len(items), batch_size, show_progress_bar, "queries", progress_callback, skip=False, pool=pool
        )
        return out[0] if single else out

    @overload
    def encode_documents(  # type: ignore[overload-overlap]
        self,
        texts: str,
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        long_documents: LongDocuments | None = ...,
        progress_callback: ProgressCallback | None = ...,
        pool: EncodePool | None = ...,
    ) -> torch.Tensor: ...
    @overload
    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        long_documents: LongDocuments | None = ...,
        progress_callback: ProgressCallback | None = ...,
        pool: EncodePool | None = ...,
    ) -> list[torch.Tensor]: ...
    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        long_documents: LongDocuments | None = None,
        progress_callback: ProgressCallback | None = None,
        pool: EncodePool | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Encode documents into ``(n_tokens, dim)`` tensors, padding and skiplisted tokens removed.

        Args:
            batch_size: most model inputs per forward pass (``max_tokens_per_batch`` may make batches
                smaller).
            show_progress_bar: a tqdm bar advanced per batch (documents/s).
            long_documents: override the config's mode for this call. ``"window"`` encodes text past
                ``document_length`` in overlapping windows so no token is dropped.
            progress_callback: called after every batch with ``(encoded, total)`` model inputs (one per
                document, or one per window in ``"window"`` mode).
            pool: a :class:`EncodePool` from :meth:`start_multi_process_pool` to run the batches in
                (default: :attr:`pool`, else this process). Outputs are the same either way.
        """
        single, items = _check_texts(texts, allow_empty=True)
        mode = long_documents or self.config.long_documents
        if mode not in ("truncate", "window"):
            raise InvalidInputError(f"long_documents must be 'truncate' or 'window', got {mode!r}.")
        sequences: list[_Sequence] = []
        for i, ids in enumerate(self._tokenize(items, self.config.document_prompt)):
            sequences.extend(self._frame_document(i, ids, window=mode == "window"))
        out = self._run(
            sequences, len(items), batch_size, show_progress_bar, "documents", progress_callback, skip=True, pool=pool
        )
        return out[0] if single else out

    # ------------------------------------------------------------------ several processes
    def start_multi_process_pool(
        self,
        target_devices: Sequence[str | torch.device] | None = None,
        *,
        processes: int | None = None,
        threads_per_process: int | None = None,
        start_timeout: float = 300.0,
    ) -> EncodePool:
        """Start worker processes that encode batches for this encoder, one per entry of ``target_devices``.

        Pass the pool to ``encode_documents(..., pool=pool)`` / ``encode_queries(..., pool=pool)`` (or set
        :attr:`pool`); close it with :meth:`EncodePool.close`, :meth:`stop_multi_process_pool` or a ``with``
        block. Texts are tokenised, framed and length-sorted here exactly as without a pool; the workers run
        the forward passes of whole batches, taking the next batch as they finish one, and the vectors come
        back in input order, equal to a single process's (the same batches, the same model).

        When it pays: one worker per GPU on a multi-GPU machine, or several CPU workers on a many-core CPU,
        where one process's intra-op threads stop scaling (small BERT batches rarely use more than ~8 cores
        well). On a small CPU it does not: on 2 cores, 2 workers x 1 thread encoded SciFact documents at the
        speed of 1 process x 2 threads (ratio 1.05 in an interleaved fp32 repeat on a loaded machine;
        ``benchmarks/bench_encoder.py --processes 2``), and each worker holds its own copy of the model and
        takes seconds to start. Encode thousands of texts per call, not a few.

        Workers are ``torch.multiprocessing`` processes started with ``spawn``: each reloads the model from
        the folder :meth:`from_pretrained` read (Hub models from the local cache, never the network), with
        this encoder's settings and precision, and checks that its weights hash to this encoder's. Scripts
        that start a pool must guard their entry point with ``if __name__ == "__main__":`` (spawn imports
        the main module again in every worker).

        Args:
            target_devices: e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``. Default: ``processes``
                workers, on the CUDA devices in turn when this encoder runs on CUDA, else on the CPU.
            processes: number of workers when ``target_devices`` is None (default: one per CUDA device, or
                2 on the CPU).
            threads_per_process: torch threads of each CPU worker (default: this process's threads, or
                ``num_threads``, divided among the CPU workers, at least 1).
            start_timeout: seconds to wait for the workers to load the model.

        Raises:
            InvalidInputError: the encoder was built in memory (not by :meth:`from_pretrained`), or a bad
                argument.
            ModelLoadError: a worker could not load the model, or loaded different weights.
        """
        if self._source is None:
            raise InvalidInputError(
                "start_multi_process_pool needs an encoder made by ColBERTEncoder.from_pretrained (workers reload "
                "the model from its folder); this one was built in memory. Save its backbone and tokenizer with "
                "save_pretrained (and any projection in a PyLate / sentence-transformers layout) and load that "
                "folder with from_pretrained."
            )
        processes = _check_optional_positive(processes, "processes")
        threads_per_process = _check_optional_positive(threads_per_process, "threads_per_process")
        if target_devices is None:
            if self.device.type == "cuda":
                count = torch.cuda.device_count()
                devices = [torch.device("cuda", i % count) for i in range(processes or count)]
            else:
                devices = [torch.device("cpu")] * (processes or 2)
        else:
            if processes is not None:
                raise InvalidInputError(
                    f"processes={processes} and target_devices={list(target_devices)!r} were both given; pass "
                    "target_devices (one worker per entry) or processes (CPU workers), not both."
                )
            if isinstance(target_devices, str | torch.device) or not len(target_devices):
                raise InvalidInputError(
                    f"target_devices must be a non-empty list of devices such as ['cuda:0', 'cuda:1'] or "
                    f"['cpu', 'cpu'], got {target_devices!r}."
                )
            devices = [check_device(d) for d in target_devices]
        n_cpu = sum(d.type == "cpu" for d in devices)
        threads = threads_per_process or max(1, (self.num_threads or torch.get_num_threads()) // max(n_cpu, 1))
        return EncodePool(self, devices, threads, start_timeout)

    @staticmethod
    def stop_multi_process_pool(pool: EncodePool) -> None:
        """Stop the workers of ``pool`` (the same as ``pool.close()``)."""
        pool.close()

    # ------------------------------------------------------------------ framing
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text: no special tokens, markers, prompts or truncation (thread-safe)."""
        return self._tokenize(texts, "")

    def _tokenize(self, texts: Sequence[str], prompt: str) -> list[list[int]]:
        items = [prompt + text for text in texts]
        if self._strip:
            items = [text.strip() for text in items]
        if self.config.lowercase:
            items = [text.lower() for text in items]
        with self._tokenizer_lock:
            encoded = self.tokenizer(items, add_special_tokens=False, truncation=False, verbose=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def _frame_query(self, index: int, content: list[int]) -> _Sequence:
        cfg = self.config
        room = max(cfg.query_length - len(self._head) - len(self._tail) - len(self._query_prefix_ids), 0)
        if len(content) > room and not self._warned_truncated_query:
            self._warned_truncated_query = True
            logger.warning(
                "A query of %d tokens was cut to query_length=%d (%d text tokens fit). Pass query_length= "
                "(e.g. ColBERTEncoder.from_pretrained(..., query_length=%d)) to keep longer queries. "
                "Logged once per encoder.",
                len(content),
                cfg.query_length,
                room,
                len(content) + cfg.query_length - room,
            )
        ids = self._head + self._query_prefix_ids + content[:room] + self._tail
        attended = len(ids)
        if cfg.do_query_expansion:
            ids = ids + [self._mask_id] * (cfg.query_length - len(ids))
            if cfg.attend_to_expansion_tokens:
                attended = len(ids)
        return _Sequence(index, ids, attended)

    def _frame_document(self, index: int, content: list[int], *, window: bool) -> Iterator[_Sequence]:
        cfg = self.config
        prefix = self._head + self._document_prefix_ids
        room = cfg.document_length - len(prefix) - len(self._tail)
        if room < 1:
            raise InvalidInputError(f"document_length={cfg.document_length} leaves no room for text.")
        if not window or len(content) <= room:
            ids = prefix + content[:room] + self._tail
            yield _Sequence(index, ids, len(ids))
            return
        # Windows of `room` tokens, `overlap` shared with the neighbour. Each token is kept from the
        # window where it sits furthest from an edge (the most context on both sides), so every
        # token appears exactly once; [CLS]/marker come from the first window, [SEP] from the last.
        overlap = min(cfg.window_overlap, room - 1)
        stride = room - overlap
        starts = list(range(0, len(content) - overlap, stride))
        for w, start in enumerate(starts):
            chunk = content[start : start + room]
            lo = 0 if w == 0 else overlap // 2
            hi = len(chunk) if w == len(starts) - 1 else len(chunk) - (overlap - overlap // 2)
            ids = prefix + chunk + self._tail
            keep = [w == 0] * len(prefix) + [lo <= j < hi for j in range(len(chunk))]
            keep += [w == len(starts) - 1] * len(self._tail)
            yield _Sequence(index, ids, len(ids), keep)

    # ------------------------------------------------------------------ model
    def _batches(self, lengths: list[int], batch_size: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of consecutive rows of length-sorted (longest first) inputs, each batch at most
        ``batch_size`` rows and ``max_tokens_per_batch`` padded tokens (a longer single row runs alone)."""
        budget = self.max_tokens_per_batch
        start = 0
        while start < len(lengths):
            rows = batch_size if budget is None else max(1, min(batch_size, budget // max(lengths[start], 1)))
            stop = min(start + rows, len(lengths))
            yield start, stop
            start = stop

    def _run(
        self,
        sequences: list[_Sequence],
        n_texts: int,
        batch_size: int,
        show_progress_bar: bool,
        what: str,
        progress_callback: ProgressCallback | None,
        *,
        skip: bool,
        pool: EncodePool | None = None,
    ) -> list[torch.Tensor]:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}.")
        if progress_callback is not None and not callable(progress_callback):
            raise InvalidInputError(
                f"progress_callback must be a callable (encoded, total) -> None or None, got {progress_callback!r}."
            )
        pool = pool if pool is not None else self.pool
        if pool is not None:
            pool._check_owner(self)
        from tqdm.auto import tqdm

        # Longest first: batches hold similar lengths (little padding), and a batch that does not fit
        # in memory fails at the start rather than after minutes of work. Every input is laid out once
        # as flat tensors in that order; each batch is then filled by masked assignment, not row by row.
        lengths = torch.tensor([len(s.input_ids) for s in sequences], dtype=torch.long)
        order = torch.argsort(lengths, descending=True, stable=True)
        ordered = [sequences[i] for i in order.tolist()]
        lengths = lengths[order]
        offsets = [0, *torch.cumsum(lengths, 0).tolist()]
        flat_ids = torch.tensor(list(chain.from_iterable(s.input_ids for s in ordered)), dtype=torch.long)
        attended = torch.tensor([s.attended for s in ordered], dtype=torch.long)
        flat_keep = torch.ones(len(flat_ids), dtype=torch.bool)
        if any(s.keep is not None for s in ordered):
            flat_keep = torch.tensor(
                list(chain.from_iterable(s.keep if s.keep is not None else [True] * len(s.input_ids) for s in ordered)),
                dtype=torch.bool,
            )
        if skip and self._skip_ids:
            flat_keep &= ~torch.isin(flat_ids, torch.tensor(sorted(self._skip_ids), dtype=torch.long))

        def batch(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """``(ids, attention, keep)`` of sorted rows ``start:stop``, each ``(rows, width)``."""
            width = int(lengths[start])
            positions = torch.arange(width)
            filled = positions < lengths[start:stop, None]
            ids = torch.full((stop - start, width), self._pad_id, dtype=torch.long)
            ids[filled] = flat_ids[offsets[start] : offsets[stop]]
            keep = torch.zeros((stop - start, width), dtype=torch.bool)
            keep[filled] = flat_keep[offsets[start] : offsets[stop]]
            attention = (positions < attended[start:stop, None]).long()
            return ids, attention, keep

        pieces: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
        total = len(sequences)
        unit = "doc" if what == "documents" else "query"
        spans = list(self._batches(lengths.tolist(), batch_size))
        with tqdm(total=total, desc=f"Encoding {what}", unit=unit, disable=not show_progress_bar) as bar:
            if pool is None:
                with _torch_threads(self.num_threads), torch.inference_mode():
                    done = self._place(self._local(spans, batch), order, pieces, bar, progress_callback, total)
            else:
                done = self._place(pool._map(spans, batch), order, pieces, bar, progress_callback, total)
        if done != total:  # defensive: a lost batch would leave empty placeholders
            raise LateInteractionError(f"Encoded {done} of {total} inputs; a batch was lost. Encode again.")
        grouped: list[list[torch.Tensor]] = [[] for _ in range(n_texts)]
        for seq, piece in zip(sequences, pieces, strict=True):
            grouped[seq.text_index].append(piece)
        return [g[0] if len(g) == 1 else torch.cat(g) for g in grouped]

    def _local(
        self, spans: list[tuple[int, int]], batch: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> Iterator[tuple[int, int, list[int], torch.Tensor]]:
        """``(start, stop, kept per row, kept vectors)`` of each span, encoded in this process."""
        for start, stop in spans:
            ids, attention, keep = batch(start, stop)
            yield start, stop, keep.sum(1).tolist(), self._forward(ids, attention, keep)

    @staticmethod
    def _place(
        results: Iterator[tuple[int, int, list[int], torch.Tensor]],
        order: torch.Tensor,
        pieces: list[torch.Tensor],
        bar: Any,
        progress_callback: ProgressCallback | None,
        total: int,
    ) -> int:
        """Put each batch's kept vectors ``(start, stop, counts, (sum(counts), dim))`` at its inputs' places in
        ``pieces`` (rows ``start:stop`` of the sorted order), in any order; returns how many inputs were placed."""
        done = 0
        for start, stop, counts, kept in results:
            for i, vectors in zip(order[start:stop].tolist(), kept.split(counts), strict=True):
                pieces[i] = vectors
            done += stop - start
            bar.update(stop - start)
            if progress_callback is not None:
                progress_callback(done, total)
        return done

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Kept token vectors of one padded batch, rows concatenated: ``(keep.sum(), dim)`` float32 on the CPU.

        ``ids``, ``attention``: ``(rows, width)`` long; ``keep``: ``(rows, width)`` bool, on the CPU.
        """
        if self.device.type == "cuda":
            # Page-locked host memory lets the copies run asynchronously with the host's next steps.
            ids, attention, keep = (t.pin_memory().to(self.device, non_blocking=True) for t in (ids, attention, keep))
        else:
            ids, attention, keep = ids.to(self.device), attention.to(self.device), keep.to(self.device)
        inputs = {"input_ids": ids, "attention_mask": attention}
        if self._token_type_ids:  # only for models whose tokenizer produces them (BERT-style)
            inputs["token_type_ids"] = torch.zeros_like(ids)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self._autocast):
            hidden = self.backbone(**inputs)
            vectors = self.projection(hidden.last_hidden_state[keep])
        if self.config.truncate_dim is not None:
            vectors = vectors[..., : self.config.truncate_dim]
        return F.normalize(vectors.float(), p=2, dim=-1).cpu()

    def __repr__(self) -> str:
        return (
            f"ColBERTEncoder({self.name_or_path!r}, dim={self.dim}, device={self.device}, "
            f"precision={self.precision!r}, dtype={self.dtype})"
        )


# ---------------------------------------------------------------------- worker processes
@dataclass(frozen=True)
class _Source:
    """What :meth:`ColBERTEncoder.from_pretrained` was given, for workers that load the same model."""

    folder: str
    dim: int | None
    trust_remote_code: bool
    precision: str | None
    dtype: torch.dtype | None


@dataclass(frozen=True)
class _WorkerSpec:
    """Everything a worker needs to rebuild the parent's encoder (sent once, at start)."""

    folder: str
    dim: int | None
    trust_remote_code: bool
    precision: str | None
    dtype: torch.dtype | None
    config: dict[str, Any]
    weights_sha256: str
    threads: int


_POLL_SECONDS = 0.5


def _pool_worker(rank: int, device: str, spec: _WorkerSpec, inbox: Any, outbox: Any) -> None:
    """One worker: load the model, then run ``(job, span, ids, attention, keep)`` batches until ``None``."""
    try:
        if device == "cpu" or device.startswith("cpu:"):
            torch.set_num_threads(spec.threads)
        encoder = ColBERTEncoder.from_pretrained(
            spec.folder,
            device=device,
            precision=cast(Precision | None, spec.precision),
            dtype=spec.dtype,
            max_tokens_per_batch=None,
            local_files_only=True,
            trust_remote_code=spec.trust_remote_code,
            dim=spec.dim,
            **spec.config,
        )
        if encoder._weights_sha256 != spec.weights_sha256:
            raise ModelLoadError(
                f"{spec.folder} now holds other weights than the encoder that started the pool (was the folder "
                "changed?); load the encoder again and start a new pool."
            )
    except BaseException as exc:
        outbox.put(("error", rank, None, f"{type(exc).__name__}: {exc}"))
        return
    outbox.put(("ready", rank, None, None))
    with torch.inference_mode():
        while True:
            task = inbox.get()
            if task is None:
                # Flush what this worker sent, then leave without the interpreter's teardown of torch and
                # transformers, which takes seconds on a loaded machine and does nothing a worker needs.
                outbox.close()
                outbox.join_thread()
                os._exit(0)
            job, span, ids, attention, keep = task
            try:
                kept = encoder._forward(torch.from_numpy(ids), torch.from_numpy(attention), torch.from_numpy(keep))
                outbox.put(("done", job, span, kept.numpy()))
            except BaseException as exc:
                outbox.put(("error", rank, job, f"{type(exc).__name__}: {exc}"))


class EncodePool:
    """Worker processes encoding batches for one :class:`ColBERTEncoder`; made by
    :meth:`ColBERTEncoder.start_multi_process_pool`.

    A context manager (``with encoder.start_multi_process_pool() as pool:``); :meth:`close` stops the
    workers, and so does garbage collection or interpreter exit if it was never called. One encode call
    at a time runs through a pool (others wait).

    Attributes:
        devices: the device of each worker.
        threads_per_process: torch intra-op threads of each CPU worker.
    """

    def __init__(
        self, encoder: ColBERTEncoder, devices: list[torch.device], threads: int, start_timeout: float
    ) -> None:
        import torch.multiprocessing as mp

        source = encoder._source
        if source is None:  # start_multi_process_pool checks first; kept for direct construction
            raise InvalidInputError("EncodePool needs an encoder made by ColBERTEncoder.from_pretrained.")
        self.devices = list(devices)
        self.threads_per_process = threads
        config = asdict(encoder.config)
        config["skiplist_words"] = tuple(config["skiplist_words"])
        spec = _WorkerSpec(
            folder=source.folder,
            dim=source.dim,
            trust_remote_code=source.trust_remote_code,
            # The parent's resolved precision on its own kind of device; elsewhere what the caller asked for.
            precision=encoder.precision if source.dtype is None else None,
            dtype=source.dtype,
            config=config,
            weights_sha256=encoder._weights_sha256,
            threads=threads,
        )
        if any(d.type != encoder.device.type for d in devices):
            spec = replace(spec, precision=source.precision)
        self._owner = weakref.ref(encoder)
        self._lock = threading.Lock()
        self._job = 0
        context = mp.get_context("spawn")
        self._inbox = context.Queue()
        self._outbox = context.Queue()
        self._processes = [
            context.Process(target=_pool_worker, args=(rank, str(device), spec, self._inbox, self._outbox), daemon=True)
            for rank, device in enumerate(devices)
        ]
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_workers, self._processes, self._inbox, self._outbox)
        for process in self._processes:
            process.start()
        try:
            waiting = set(range(len(devices)))
            deadline = _monotonic() + start_timeout
            while waiting:
                kind, rank, _, message = self._receive(deadline, "start")
                if kind == "error":
                    raise ModelLoadError(
                        f"Encoding worker {rank} ({devices[rank]}) could not load the model: {message}"
                    )
                waiting.discard(rank)
        except BaseException:
            self.close()
            raise
        logger.info("Started %d encoding workers on %s (%d CPU threads each)", len(devices), devices, threads)

    def _receive(self, deadline: float | None, what: str) -> tuple[str, int, Any, Any]:
        """The next message from the workers; raises if one died or ``deadline`` passed."""
        while True:
            try:
                return cast(tuple[str, int, Any, Any], self._outbox.get(timeout=_POLL_SECONDS))
            except queue.Empty:
                dead = [(i, p.exitcode) for i, p in enumerate(self._processes) if not p.is_alive()]
                if dead:
                    raise LateInteractionError(
                        f"Encoding worker(s) {dead} (rank, exit code) stopped during {what} (out of memory or "
                        "killed?); close this pool and start a new one, with fewer processes if memory is short."
                    ) from None
                if deadline is not None and _monotonic() > deadline:
                    raise LateInteractionError(
                        f"The encoding workers did not finish loading the model in time ({what}); pass a larger "
                        "start_timeout= to start_multi_process_pool."
                    ) from None

    def _check_owner(self, encoder: ColBERTEncoder) -> None:
        if self._closed:
            raise InvalidInputError("This EncodePool is closed; start a new one with start_multi_process_pool().")
        if self._owner() is not encoder:
            raise InvalidInputError(
                "This EncodePool was started by another encoder; pass the pool of this encoder "
                "(encoder.start_multi_process_pool())."
            )

    def _map(
        self,
        spans: list[tuple[int, int]],
        batch: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ) -> Iterator[tuple[int, int, list[int], torch.Tensor]]:
        """Send every span's batch to the workers; yield ``(start, stop, kept per row, vectors)`` as they finish."""
        with self._lock:
            self._job += 1
            job = self._job
            counts: dict[tuple[int, int], list[int]] = {}
            for start, stop in spans:
                ids, attention, keep = batch(start, stop)
                counts[(start, stop)] = keep.sum(1).tolist()
                self._inbox.put((job, (start, stop), ids.numpy(), attention.numpy(), keep.numpy()))
            while counts:
                kind, tag, span, payload = self._receive(None, "encoding")
                if kind == "error":
                    if span == job:
                        raise LateInteractionError(f"Encoding worker {tag} failed on a batch: {payload}")
                    continue  # a failure left over from an interrupted earlier call
                if tag != job:
                    continue  # a batch of an interrupted earlier call
                start, stop = span
                yield start, stop, counts.pop((start, stop)), torch.from_numpy(payload)

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> EncodePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"EncodePool({[str(d) for d in self.devices]}, threads_per_process={self.threads_per_process}, {state})"


def _monotonic() -> float:
    import time

    return time.monotonic()


def _stop_workers(processes: list[Any], inbox: Any, outbox: Any) -> None:
    """Ask every worker to stop, wait a little, then terminate the ones still running."""
    for process in processes:
        if process.is_alive():
            with suppress(OSError, ValueError):  # the queue may already be closed
                inbox.put(None)
    for process in processes:
        if process.pid is not None:
            process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
    for q in (inbox, outbox):
        q.cancel_join_thread()
        q.close()


# ---------------------------------------------------------------------- helpers
def _check_texts(texts: str | Sequence[str], *, allow_empty: bool) -> tuple[bool, list[str]]:
    """``(single, items)``: a str or a non-empty sequence of valid UTF-8 str, named ``texts`` / ``texts[i]``.

    Documents may be empty (``allow_empty``: they encode to their marker tokens); queries may not.
    """
    if isinstance(texts, str):
        return True, [check_text(texts, "texts", allow_empty=allow_empty)]
    items = check_texts(texts, "texts", allow_empty=allow_empty)
    if not items:
        raise InvalidInputError("texts is empty: pass at least one string.")
    return False, items


def _check_optional_positive(value: Any, name: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InvalidInputError(f"{name} must be a positive int or None, got {value!r}.")
    return value


def _special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Special tokens the tokenizer puts before and after a single sequence ([CLS] / [SEP])."""
    bare = list(tokenizer("hello", add_special_tokens=False)["input_ids"])
    framed = list(tokenizer("hello", add_special_tokens=True)["input_ids"])
    for at in range(len(framed) - len(bare) + 1):
        if framed[at : at + len(bare)] == bare:
            return framed[:at], framed[at + len(bare) :]
    raise ModelLoadError("Cannot tell which special tokens this tokenizer adds around a text.")


def _marker_ids(tokenizer: Any, marker: str, name: str, checkpoint_format: str) -> list[int]:
    """The id of a query/document marker, resolved the way the checkpoint's own library does."""
    if not marker:
        return []
    if checkpoint_format == "stanford":
        # colbert-ai: tokenizer.convert_tokens_to_ids(marker); a marker the vocabulary lacks becomes <unk>.
        token_id = tokenizer.convert_tokens_to_ids(marker)
        if token_id is None:
            raise ModelLoadError(
                f"{name}={marker!r} is not in the vocabulary and the tokenizer has no unknown token to map it "
                "to; pass a token of the vocabulary."
            )
        if token_id == tokenizer.unk_token_id and marker != tokenizer.unk_token:
            logger.warning(
                "%s %r is not in the vocabulary; it maps to the unknown token %r, as in colbert-ai.",
                name,
                marker,
                tokenizer.unk_token,
            )
        return [int(token_id)]
    vocab = tokenizer.get_vocab()  # includes added tokens, e.g. PyLate's "[Q] "
    if marker in vocab:
        return [int(vocab[marker])]
    if checkpoint_format == "pylate":
        raise ModelLoadError(
            f"{name}={marker!r} is not a token of this tokenizer. PyLate would add it as a new token with an "
            "untrained, randomly initialised embedding, so this model was not trained with it: pass the marker "
            f"the model was trained with (a token of its vocabulary) or {name}=''."
        )
    raise ModelLoadError(
        f"{name}={marker!r} is not a token of this tokenizer's vocabulary. Pass a vocabulary token as {name}=, "
        f"{name}='' for no marker, or put text before each input with "
        f"{'query' if name.startswith('query') else 'document'}_prompt=."
    )


def _skiplist_ids(tokenizer: Any, words: Sequence[str], checkpoint_format: str) -> frozenset[int]:
    """Token ids dropped from documents, built by the checkpoint's own library's rule."""
    ids: set[int] = set()
    if checkpoint_format == "stanford":
        # colbert-ai: the first piece of each word as tokenised on its own. On "▁"-style vocabularies
        # that is often "▁" itself (e.g. "$" -> ["▁", "$"]), which colbert-ai then drops everywhere.
        for word in words:
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            if pieces:
                ids.add(int(pieces[0]))
        return frozenset(ids)
    unk_id, unk = getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "unk_token", None)
    dropped = []
    for word in words:
        token_id = tokenizer.convert_tokens_to_ids(word)
        if token_id is None:
            continue
        if checkpoint_format != "pylate" and token_id == unk_id and word != unk:
            # sentence-transformers 6 drops words that are not one token (they would skip every <unk>);
            # PyLate keeps convert_tokens_to_ids' answer, so <unk> tokens are skipped in its documents.
            dropped.append(word)
            continue
        ids.add(int(token_id))
    if dropped:
        logger.debug("Skiplist words %s are not vocabulary tokens; they are not skipped.", dropped)
    return frozenset(ids)


def _accepts(module: nn.Module, argument: str) -> bool:
    try:
        parameters = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return argument in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _output_dim(backbone: nn.Module, projection: nn.Module, truncate_dim: int | None) -> int:
    dim = int(getattr(backbone, "config").hidden_size)  # noqa: B009 (nn.Module has no typed .config)
    for module in projection.modules():
        if isinstance(module, nn.Linear):
            dim = module.out_features
    if truncate_dim is not None:
        if truncate_dim > dim:
            raise InvalidInputError(f"truncate_dim={truncate_dim} exceeds the model's output dimension {dim}.")
        dim = truncate_dim
    return dim


# ---------------------------------------------------------------------- checkpoint formats
@dataclass(frozen=True)
class _LoadOptions:
    """Hub and transformers options of one ``from_pretrained`` call."""

    revision: str | None = None
    token: str | bool | None = None
    cache_dir: str | None = None
    trust_remote_code: bool = False
    local_files_only: bool = False
    dim: int | None = None


@dataclass
class _Loaded:
    backbone: nn.Module
    tokenizer: Any
    projection: nn.Module | None
    settings: dict[str, Any]
    checkpoint_format: CheckpointFormat


class _Dense(nn.Module):
    """A PyLate / sentence-transformers ``Dense``: ``activation(linear(x))``, plus ``x`` (or
    ``residual(x)``, a bias-free projection, when the sizes differ) with ``use_residual``."""

    def __init__(
        self, in_features: int, out_features: int, *, bias: bool, activation: nn.Module, use_residual: bool
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = activation
        self.use_residual = use_residual
        self.residual = (
            nn.Linear(in_features, out_features, bias=False) if use_residual and in_features != out_features else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (x if self.residual is None else self.residual(x))
        return out


_HUB_COMMIT = re.compile(r"[0-9a-f]{40}")


def _hub_commit(folder: Path) -> str | None:
    """The commit of a folder in the Hugging Face cache (``.../snapshots/<sha>``), else None."""
    resolved = folder.resolve() if folder.exists() else folder
    for path in (folder, resolved):
        if path.parent.name == "snapshots" and _HUB_COMMIT.fullmatch(path.name):
            return path.name
    return None


def _local_folder(name_or_path: str, options: _LoadOptions) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"Model folder {name_or_path!r} does not exist; pass an existing checkpoint folder.")
    hint = (
        f"Could not load {name_or_path!r} from the Hugging Face Hub. If the Hub is unreachable, pass a local "
        "checkpoint folder instead (--model PATH or LATEINT_MODEL=PATH on the command line)."
    )
    try:
        from huggingface_hub import snapshot_download

        # Only what the loaders read: configs, tokenizer files, safetensors weights (top level and
        # module folders such as 1_Dense/), and modelling code when it is trusted. Legacy .bin
        # weights only when there are no safetensors.
        patterns = ["*.json", "*.txt", "*.model", "artifact.metadata", "*.safetensors", "*/*.json", "*/*.safetensors"]
        if options.trust_remote_code:
            patterns.append("*.py")
        kwargs: dict[str, Any] = {
            "revision": options.revision,
            "token": options.token,
            "cache_dir": options.cache_dir,
            "local_files_only": options.local_files_only,
        }
        folder = Path(snapshot_download(name_or_path, allow_patterns=patterns, **kwargs))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name_or_path, allow_patterns=[*patterns, "*.bin", "*/*.bin"], **kwargs))
        return folder
    except Exception as exc:  # offline, DNS failure, unknown repo or revision, gated repo, not cached, ...
        raise ModelLoadError(f"{hint} ({type(exc).__name__}: {exc})") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    return value if isinstance(value, dict) else {}


_PYLATE_KEYS = (
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "do_query_expansion",
    "attend_to_expansion_tokens",
    "skiplist_words",
)


def _load_checkpoint(folder: Path, options: _LoadOptions) -> _Loaded:
    """Detect the folder's format and load it by that format's rules."""
    if (folder / "modules.json").is_file():
        st_config = _read_json(folder / "config_sentence_transformers.json")
        model_type = st_config.get("model_type")
        if model_type == "MultiVectorEncoder":
            return _load_sentence_transformers(folder, st_config, options)
        if model_type == "ColBERT" or (model_type is None and any(k in st_config for k in _PYLATE_KEYS)):
            return _load_pylate(folder, st_config, options)
        return _load_plain_sentence_transformers(folder, options)
    if (folder / "artifact.metadata").is_file() or "HF_ColBERT" in (
        _read_json(folder / "config.json").get("architectures") or []
    ):
        return _load_stanford(folder, options)
    if (folder / "config.json").is_file():
        backbone, tokenizer = _load_backbone(folder, options)
        return _Loaded(backbone, tokenizer, None, _plain_markers(tokenizer), "plain")
    raise ModelLoadError(
        f"{folder} is not a model folder: it has no modules.json (PyLate / sentence-transformers), "
        "artifact.metadata (Stanford ColBERT) or config.json (Hugging Face)."
    )


def _plain_markers(tokenizer: Any) -> dict[str, Any]:
    """ColBERT's [unused0]/[unused1] markers when the vocabulary has them (BERT), else none."""
    vocab = tokenizer.get_vocab()
    settings: dict[str, Any] = {}
    for name, marker in (("query_prefix", "[unused0]"), ("document_prefix", "[unused1]")):
        if marker not in vocab:
            logger.warning("This vocabulary has no %s token, so %s is empty; pass %s= to set one.", marker, name, name)
            settings[name] = ""
    return settings


def _check_tokenizer_dependencies(folder: Path) -> None:
    """Name the extra to install for tokenizers that need word splitting from another package."""
    config = _read_json(folder / "tokenizer_config.json")
    if config.get("tokenizer_class") != "BertJapaneseTokenizer":
        return
    needed = []
    if config.get("word_tokenizer_type", "basic") == "mecab" or config.get("subword_tokenizer_type") == "mecab":
        needed.append("fugashi")
        dic = (config.get("mecab_kwargs") or {}).get("mecab_dic", "ipadic")
        if dic is not None:
            needed.append({"unidic_lite": "unidic_lite", "unidic": "unidic", "ipadic": "ipadic"}.get(dic, dic))
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        others = [m for m in missing if m not in ("fugashi", "unidic_lite")]
        extra = f" (and pip install {' '.join(others)} for the dictionary it names)" if others else ""
        raise MissingDependencyError(
            f"The tokenizer of {folder} (BertJapaneseTokenizer, MeCab word splitting) needs {missing}, which "
            f"are not installed. Install them with: pip install 'lateint-plugins[ja]'{extra}"
        )


def _remote_code_error(folder: Path, auto_map: dict[str, Any], exc: Exception | None) -> ModelLoadError:
    reference = str(auto_map.get("AutoModel", next(iter(auto_map.values()), "")))
    if "--" in reference:
        repo, module = reference.split("--", 1)
        where = (
            f"the Hub repository {repo!r} (file {module.rsplit('.', 1)[0]}.py). Load it once with network access "
            "and trust_remote_code=True (transformers caches it under HF_MODULES_CACHE, "
            "~/.cache/huggingface/modules), or download that repository's .py files into the model folder "
            f"and set auto_map to local names (e.g. {module!r})"
        )
    else:
        where = f"the file {reference.rsplit('.', 1)[0]}.py, which must sit in {folder}"
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ModelLoadError(
        f"{folder} needs its own modelling code ({reference}), which could not be loaded{detail}. The code lives "
        f"in {where}."
    )


def _load_backbone(folder: Path, options: _LoadOptions) -> tuple[nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    config = _read_json(folder / "config.json")
    auto_map = config.get("auto_map") or {}
    if auto_map.get("AutoModel") and not options.trust_remote_code:
        # Loading such a model without its code would silently build a different architecture
        # (e.g. JinaBERT's ALiBi attention read as a plain BERT).
        raise ModelLoadError(
            f"{folder} uses its own modelling code (config.json auto_map AutoModel = {auto_map['AutoModel']!r}). "
            "Read that code, then pass trust_remote_code=True to load it."
        )
    _check_tokenizer_dependencies(folder)
    # The folder is local; these reach the Hub only for modelling code kept in another repository
    # (auto_map "org/repo--module.Class"), which transformers fetches and caches itself.
    remote = {
        "trust_remote_code": options.trust_remote_code,
        "token": options.token,
        "cache_dir": options.cache_dir,
        "local_files_only": options.local_files_only,
    }
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **remote)
    except ImportError as exc:
        raise MissingDependencyError(
            f"The tokenizer of {folder} needs a package that is not installed: {exc}. "
            "For Japanese (BertJapaneseTokenizer) models: pip install 'lateint-plugins[ja]'"
        ) from exc
    except Exception as exc:
        if auto_map and options.trust_remote_code:
            raise _remote_code_error(folder, auto_map, exc) from exc
        raise ModelLoadError(f"Could not load the tokenizer in {folder}: {exc}") from exc
    # Stanford checkpoints carry `linear.weight` next to the encoder; transformers reports it as an
    # unused weight, which is expected here (the projection is loaded separately).
    # Also silence transformers' own weight-loading bar: a library should not draw on stderr unasked.
    verbosity, bars_enabled = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        backbone = _load_model(AutoModel, folder, remote)
    except Exception as exc:
        if auto_map and options.trust_remote_code:
            raise _remote_code_error(folder, auto_map, exc) from exc
        raise ModelLoadError(f"Could not load the transformer in {folder}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_enabled:
            hf_logging.enable_progress_bar()
    return backbone, tokenizer


def _load_model(auto_model: Any, folder: Path, remote: dict[str, Any]) -> nn.Module:
    """The transformer in float32 with PyTorch's fused attention (SDPA) where its architecture has it;
    architectures without it (some remote code) load with their default attention."""
    try:
        return cast(
            nn.Module, auto_model.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa", **remote)
        )
    except (ValueError, ImportError, TypeError) as exc:
        logger.debug("%s: no SDPA attention (%s); loading with the default attention.", folder, exc)
        return cast(nn.Module, auto_model.from_pretrained(folder, dtype=torch.float32, **remote))


def _load_state(path_without_suffix: Path) -> dict[str, torch.Tensor]:
    safetensors_file = path_without_suffix.with_suffix(".safetensors")
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(safetensors_file)
    bin_file = path_without_suffix.with_suffix(".bin")
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True)
    raise ModelLoadError(f"No weights at {safetensors_file} or {bin_file}.")


def _activation(config: dict[str, Any], default: str, where: Path) -> nn.Module:
    reference = config.get("activation_function") or default
    name = str(reference).rsplit(".", 1)[-1].lower()
    if name not in _ACTIVATIONS:
        raise ModelLoadError(f"Unsupported activation {reference!r} in {where}; supported: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]()


def _dense(config: dict[str, Any], state: dict[str, torch.Tensor], where: Path, default_activation: str) -> _Dense:
    try:
        module = _Dense(
            int(config["in_features"]),
            int(config["out_features"]),
            bias=bool(config.get("bias", True)),
            activation=_activation(config, default_activation, where),
            use_residual=bool(config.get("use_residual", False)),
        )
        module.load_state_dict({k: v.float() for k, v in state.items()})
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"Projection weights in {where} do not match its config: {exc}") from exc
    return module


def _module_kind(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _read_modules(folder: Path) -> list[dict[str, Any]]:
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    if not isinstance(modules, list) or not any(_module_kind(m) == "Transformer" for m in modules):
        raise ModelLoadError(f"{folder / 'modules.json'} lists no Transformer module.")
    return modules


def _projection(
    denses: list[_Dense], dim: int | None, where: Path, st_config: dict[str, Any] | None = None
) -> nn.Module | None:
    if dim is not None:
        width = denses[-1].out_features if denses else None
        if width != dim:
            heads = sorted(int(d) for d in _matryoshka_heads(st_config or {}))
            others = f"its other heads are {heads}" if heads else "it has no other heads"
            raise InvalidInputError(
                f"dim={dim} does not match this checkpoint's projection ({width or 'none'}) in {where}, and "
                f"{others}. Pass truncate_dim= to keep the first dimensions of its vectors instead."
            )
    return nn.Sequential(*denses) if denses else None


def _matryoshka_heads(st_config: dict[str, Any]) -> dict[str, str]:
    """``matryoshka_heads`` of a PyLate config (written by ``lateint train``): width -> Dense folder."""
    heads = st_config.get("matryoshka_heads")
    return {str(k): str(v) for k, v in heads.items()} if isinstance(heads, dict) else {}


def _matryoshka_head(folder: Path, st_config: dict[str, Any], denses: list[_Dense], dim: int | None) -> list[_Dense]:
    """The Dense layers with the last one swapped for the extra head of width ``dim``, when the folder has one
    (``matryoshka_heads``: separately trained projections, Jina-ColBERT-v2 style; PyLate loads only the main one)."""
    path = _matryoshka_heads(st_config).get(str(dim))
    if dim is None or path is None or not denses or denses[-1].out_features == dim:
        return denses
    module_dir = (folder / path).resolve()
    if folder.resolve() not in module_dir.parents:
        raise ModelLoadError(f"{folder}: matryoshka_heads[{dim!r}] = {path!r} points outside the model folder.")
    config, state = _read_json(module_dir / "config.json"), _load_state(module_dir / "model")
    head = _dense(config, state, module_dir, "torch.nn.modules.linear.Identity")
    if head.out_features != dim or head.in_features != denses[-1].in_features:
        raise ModelLoadError(
            f"{module_dir}: the head listed for dim={dim} maps {head.in_features} -> {head.out_features} features."
        )
    return [*denses[:-1], head]


def _transformer_and_denses(
    folder: Path, options: _LoadOptions, default_activation: str
) -> tuple[Path, nn.Module, Any, list[_Dense]]:
    """``(backbone folder, backbone, tokenizer, Dense layers in order)`` of a sentence-transformers-style folder.

    ``default_activation`` is what a Dense config without ``activation_function`` means to the
    library that wrote it (PyLate: identity; sentence-transformers: tanh).
    """
    modules = _read_modules(folder)
    transformer = next(m for m in modules if _module_kind(m) == "Transformer")
    backbone_dir = folder / transformer.get("path", "")
    backbone, tokenizer = _load_backbone(backbone_dir, options)
    denses = [
        _dense(
            _read_json(folder / m.get("path", "") / "config.json"),
            _load_state(folder / m.get("path", "") / "model"),
            folder / m.get("path", ""),
            default_activation,
        )
        for m in modules
        if _module_kind(m) == "Dense"
    ]
    return backbone_dir, backbone, tokenizer, denses


def _load_pylate(folder: Path, st_config: dict[str, Any], options: _LoadOptions) -> _Loaded:
    """PyLate (<= 1.6) ``ColBERT.__init__`` and ``_load_sbert_model``, key by key."""
    # PyLate keeps only the Transformer and Dense modules (Pooling / Normalize of a converted
    # sentence-transformers model are dropped) and runs the Dense ones in order.
    backbone_dir, backbone, tokenizer, denses = _transformer_and_denses(
        folder, options, "torch.nn.modules.linear.Identity"
    )

    def value(key: str, default: Any) -> Any:
        # A key set to null falls back to PyLate's default, exactly as ColBERT.__init__ does.
        found = st_config.get(key)
        return default if found is None else found

    # `prompts` (sentence-transformers 5 writes {"query": "", "document": ""}) are not markers: PyLate
    # prepends a prompt only through default_prompt_name, to queries and documents alike.
    prompts = st_config.get("prompts") or {}
    prompt = prompts.get(st_config.get("default_prompt_name")) or ""
    expansion = bool(value("do_query_expansion", True))
    settings: dict[str, Any] = {
        "query_prefix": value("query_prefix", "[Q] "),
        "document_prefix": value("document_prefix", "[D] "),
        "query_length": int(value("query_length", 32)),
        "document_length": int(value("document_length", 180)),
        "do_query_expansion": expansion,
        # "If we do not do query expansion, we do not attend to the expansion tokens."
        "attend_to_expansion_tokens": bool(value("attend_to_expansion_tokens", False)) and expansion,
        "skiplist_words": tuple(value("skiplist_words", list(string.punctuation))),
        "query_prompt": prompt,
        "document_prompt": prompt,
        "lowercase": bool(_read_json(backbone_dir / "sentence_bert_config.json").get("do_lower_case", False)),
    }
    denses = _matryoshka_head(folder, st_config, denses, options.dim)
    return _Loaded(backbone, tokenizer, _projection(denses, options.dim, folder, st_config), settings, "pylate")


def _load_sentence_transformers(folder: Path, st_config: dict[str, Any], options: _LoadOptions) -> _Loaded:
    """sentence-transformers 6 ``MultiVectorEncoder``: prompts as text, knobs on the Transformer module."""
    modules = _read_modules(folder)
    denses: list[_Dense] = []
    skiplist: list[str] = []
    normalized = False
    for module in modules:
        kind, module_dir = _module_kind(module), folder / module.get("path", "")
        if kind == "Normalize":
            normalized = (
                normalized or _read_json(module_dir / "config.json").get("module_input_name") == "token_embeddings"
            )
        if kind == "Dense":
            denses.append(
                _dense(
                    _read_json(module_dir / "config.json"),
                    _load_state(module_dir / "model"),
                    module_dir,
                    "torch.nn.modules.activation.Tanh",
                )
            )
        elif kind == "MultiVectorMask":
            mask_config = _read_json(module_dir / "config.json")
            tasks = mask_config.get("skiplist_tasks") or ["document"]
            tasks = [tasks] if isinstance(tasks, str) else list(tasks)
            if "query" in tasks:
                raise ModelLoadError(
                    f"{module_dir}: a skiplist applied to queries (skiplist_tasks={tasks}) is not supported."
                )
            if mask_config.get("keep_only_token_ids"):
                raise ModelLoadError(f"{module_dir}: keep_only_token_ids (image-patch models) is not supported.")
            skiplist = list(mask_config.get("skiplist_words") or []) if "document" in tasks else []
        elif kind not in ("Transformer", "Normalize"):
            raise ModelLoadError(
                f"{folder / 'modules.json'} has a {module.get('type')!r} module, which this encoder does not "
                "implement; loading without it would give other vectors than sentence-transformers."
            )

    transformer = next(m for m in modules if _module_kind(m) == "Transformer")
    backbone_dir = folder / transformer.get("path", "")
    backbone, tokenizer = _load_backbone(backbone_dir, options)
    if not normalized:
        logger.warning(
            "%s has no token-level Normalize module: sentence-transformers returns unnormalised token vectors for "
            "it, while this encoder always L2-normalises them (MaxSim scores differ in scale).",
            folder,
        )
    # MultiVectorEncoder._parse_model_config: legacy top-level prefixes compose onto the saved prompts.
    prompts = dict(st_config.get("prompts") or {})
    legacy_prefixes: list[str] = []
    for prefix_key, role in (("query_prefix", "query"), ("document_prefix", "document")):
        if prefix_key in st_config:
            prefix = st_config[prefix_key] or ""
            legacy_prefixes.append(prefix)
            prompts[role] = prefix + (prompts.get(role) or "").removeprefix(prefix)
    if legacy_prefixes:
        _register_prefix_tokens(tokenizer, legacy_prefixes)
    default_prompt = prompts.get(st_config.get("default_prompt_name")) or ""
    query_prompt = prompts.get("query") if "query" in prompts else default_prompt
    document_role = next((r for r in ("document", "passage", "corpus") if r in prompts), None)
    document_prompt = prompts.get(document_role) if document_role else default_prompt

    # Transformer.__init__ kwargs: the saved sentence_bert_config.json wins over legacy top-level knobs.
    module_config = _read_json(backbone_dir / "sentence_bert_config.json")
    legacy: dict[str, Any] = {
        k: st_config[k] for k in ("query_length", "document_length") if st_config.get(k) is not None
    }
    if "query_expansion" in st_config:
        legacy["query_expansion"] = st_config["query_expansion"]
    elif any(k in st_config for k in (*_PYLATE_KEYS, "attend_to_mask_tokens", "query_expansion")):
        if st_config.get("do_query_expansion") is False:
            legacy["query_expansion"] = None
        else:
            attend = st_config.get("attend_to_expansion_tokens", st_config.get("attend_to_mask_tokens"))
            length = legacy.pop("query_length", None) or 32
            legacy["query_expansion"] = {"strategy": "fixed", "attend": bool(attend), "length": length}
    knobs: dict[str, Any] = {
        **legacy,
        **{k: module_config[k] for k in ("query_length", "document_length", "query_expansion") if k in module_config},
    }
    ceiling = module_config.get("max_seq_length") or _model_max_length(tokenizer, backbone)
    expansion = knobs.get("query_expansion")
    settings: dict[str, Any] = {
        "query_prefix": "",
        "document_prefix": "",
        "query_prompt": query_prompt or "",
        "document_prompt": document_prompt or "",
        "document_length": int(knobs.get("document_length") or ceiling),
        "skiplist_words": tuple(skiplist),
    }
    if module_config.get("do_lower_case"):
        _lowercase_tokenizer(tokenizer)
    if expansion:
        if expansion.get("strategy", "fixed") != "fixed":
            logger.warning(
                "%s: query_expansion strategy %r is read as 'fixed': queries longer than %s tokens are cut.",
                folder,
                expansion.get("strategy"),
                expansion.get("length"),
            )
        if expansion.get("token") not in (None, tokenizer.mask_token):
            raise ModelLoadError(f"{folder}: a query expansion token other than the mask token is not supported.")
        settings.update(
            do_query_expansion=True,
            attend_to_expansion_tokens=bool(expansion.get("attend", False)),
            query_length=int(expansion.get("length") or 32),
        )
    else:
        settings.update(
            do_query_expansion=False,
            attend_to_expansion_tokens=False,
            query_length=int(knobs.get("query_length") or ceiling),
        )
    return _Loaded(backbone, tokenizer, _projection(denses, options.dim, folder), settings, "sentence-transformers")


def _register_prefix_tokens(tokenizer: Any, prefixes: list[str]) -> None:
    """sentence-transformers 6 ``_register_prefix_tokens``: a legacy marker the vocabulary knows becomes a
    non-normalised special token, so that prepending it as text yields that one token."""
    from tokenizers import AddedToken

    added = set(getattr(tokenizer, "added_tokens_encoder", None) or {})
    vocab = tokenizer.get_vocab()
    to_register = []
    for value in prefixes:
        if not value or not value.split():
            continue
        for prefix in (value, value.split(None, 1)[0]):
            if prefix not in added and prefix not in vocab:
                continue
            if tokenizer.tokenize(prefix) != [prefix]:
                to_register.append(AddedToken(prefix, normalized=False, special=True))
            break
    if to_register:
        tokenizer.add_special_tokens({"additional_special_tokens": to_register})


def _lowercase_tokenizer(tokenizer: Any) -> None:
    """sentence-transformers 6 ``do_lower_case``: a Lowercase normaliser in front of the tokenizer's own, so
    special tokens (registered markers) keep their case while the text, prompts included, is lowercased."""
    if getattr(tokenizer, "is_fast", False):
        from tokenizers.normalizers import Lowercase
        from tokenizers.normalizers import Sequence as NormalizerSequence

        normalizer = tokenizer.backend_tokenizer.normalizer
        parts: list[Any] = []
        if isinstance(normalizer, NormalizerSequence):
            parts = list(cast(Any, normalizer))  # iterable at runtime; the stubs do not say so
        elif normalizer is not None:
            parts = [normalizer]
        if not any(isinstance(n, Lowercase) for n in parts):
            tokenizer.backend_tokenizer.normalizer = NormalizerSequence([Lowercase(), *parts])
        return
    try:
        tokenizer.do_lower_case = True
    except AttributeError:
        tokenizer.basic_tokenizer.do_lower_case = True


def _check_lengths_fit(config: EncoderConfig, backbone: nn.Module) -> None:
    """Raise when expanded queries (always padded to ``query_length``) cannot fit the model's positions.

    Without that check a huge ``query_length`` pads every query to a huge tensor (``MemoryError``).
    """
    positions = getattr(getattr(backbone, "config", None), "max_position_embeddings", None)
    if not config.do_query_expansion or not isinstance(positions, int) or positions <= 0:
        return
    if config.query_length > positions:
        raise InvalidInputError(
            f"query_length={config.query_length} exceeds the {positions} positions of this model; "
            f"pass query_length <= {positions}."
        )


def _model_max_length(tokenizer: Any, backbone: nn.Module) -> int:
    """The tokenizer's length limit, capped by the model's positions (as sentence-transformers does)."""
    length = getattr(tokenizer, "model_max_length", None)
    positions = getattr(getattr(backbone, "config", None), "max_position_embeddings", None)
    limits = [n for n in (length, positions) if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else 512


def _load_plain_sentence_transformers(folder: Path, options: _LoadOptions) -> _Loaded:
    """A single-vector sentence-transformers folder: its Transformer and Dense modules, ColBERT defaults."""
    backbone_dir, backbone, tokenizer, denses = _transformer_and_denses(
        folder, options, "torch.nn.modules.activation.Tanh"
    )
    module_config = _read_json(backbone_dir / "sentence_bert_config.json")
    settings = _plain_markers(tokenizer)
    if module_config.get("max_seq_length"):
        settings["document_length"] = int(module_config["max_seq_length"])
    settings["lowercase"] = bool(module_config.get("do_lower_case", False))
    return _Loaded(backbone, tokenizer, _projection(denses, options.dim, folder), settings, "plain")


def _stanford_heads(state: dict[str, torch.Tensor], hidden: int, backbone_prefix: str) -> dict[str, torch.Tensor]:
    """Projection matrices stored next to the backbone: ``linear.weight`` and any other ``*linear*.weight``
    of shape ``(dim, hidden)`` outside the backbone's ``<prefix>.`` keys (Matryoshka heads)."""
    return {
        key: tensor
        for key, tensor in state.items()
        if not (backbone_prefix and key.startswith(backbone_prefix + "."))
        and key.endswith(".weight")
        and "linear" in key.rsplit(".", 1)[0].split(".")[0]
        and tensor.ndim == 2
        and tensor.shape[1] == hidden
    }


def _load_stanford(folder: Path, options: _LoadOptions) -> _Loaded:
    """colbert-ai 0.2.22 ``HF_ColBERT`` + ``ColBERTConfig`` defaults (doc_maxlen 220, query_maxlen 32)."""
    backbone, tokenizer = _load_backbone(folder, options)
    state_file = folder / "model"
    if not state_file.with_suffix(".safetensors").is_file():
        state_file = folder / "pytorch_model"
    state = _load_state(state_file)
    meta = _read_json(folder / "artifact.metadata")
    hidden = int(getattr(backbone, "config").hidden_size)  # noqa: B009
    heads = _stanford_heads(state, hidden, str(getattr(backbone, "base_model_prefix", "") or ""))
    if "linear.weight" not in heads:
        raise ModelLoadError(f"{folder} looks like a Stanford ColBERT checkpoint but has no 'linear.weight'.")
    if options.dim is None:
        weight = heads["linear.weight"]
    else:
        matching = sorted(k for k, t in heads.items() if t.shape[0] == options.dim)
        if not matching:
            widths = sorted({int(t.shape[0]) for t in heads.values()}, reverse=True)
            raise InvalidInputError(
                f"dim={options.dim} matches no projection head of {folder} (heads: {widths}). Pass one of "
                f"those, or truncate_dim= to keep the first dimensions of the default head."
            )
        weight = heads["linear.weight"] if "linear.weight" in matching else heads[matching[0]]
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    linear.weight.data.copy_(weight.float())
    settings: dict[str, Any] = {
        "query_prefix": meta.get("query_token_id") or "[unused0]",
        "document_prefix": meta.get("doc_token_id") or "[unused1]",
        "query_length": int(meta.get("query_maxlen") or 32),
        "document_length": int(meta.get("doc_maxlen") or 220),
        "attend_to_expansion_tokens": bool(meta.get("attend_to_mask_tokens", False)),
        "do_query_expansion": True,
        "skiplist_words": tuple(string.punctuation) if meta.get("mask_punctuation", True) else (),
    }
    return _Loaded(backbone, tokenizer, linear, settings, "stanford")
