"""ColBERT encoder: text in, one L2-normalised vector per token out.

The encoder reads three checkpoint layouts and reproduces each one's trained tokenisation:

* **PyLate / sentence-transformers** folders (``modules.json``, ``1_Dense/``,
  ``config_sentence_transformers.json``), both the PyLate (<= 3) keys and the
  sentence-transformers 6 ``MultiVectorEncoder`` keys;
* **Stanford ColBERT** ``HF_ColBERT`` checkpoints (BERT weights plus ``linear.weight`` in one
  state file, options in ``artifact.metadata``);
* a **plain Hugging Face** encoder (no projection; the dimension is the hidden size).

Queries and documents are framed as ``[CLS] <marker> tokens [SEP]``. Queries are padded with
``[MASK]`` to ``query_length`` (ColBERT's query augmentation) and every position is returned;
documents drop padding and punctuation (the skiplist). All outputs are L2-normalised float32
tensors on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import string
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_text, check_texts
from .errors import InvalidInputError, ModelLoadError
from .fingerprint import ModelFingerprint, hash_weights

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "ColBERTEncoder", "EncoderConfig", "resolve_device"]

DEFAULT_MODEL = "answerdotai/answerai-colbert-small-v1"
"""Hub id used when no model is given (``--model`` / ``LATEINT_MODEL`` override it)."""

LongDocuments = Literal["truncate", "window"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "identity": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


@dataclass(frozen=True)
class EncoderConfig:
    """How texts are framed, truncated and masked. Field names follow PyLate.

    Args:
        query_prefix: marker token inserted after ``[CLS]`` in queries (``[unused0]`` is ColBERT's ``[Q]``).
        document_prefix: marker token inserted after ``[CLS]`` in documents (``[unused1]`` is ``[D]``).
        query_length: total query length in tokens, markers included; queries are padded to it.
        document_length: total document length in tokens, markers included.
        do_query_expansion: pad queries with ``[MASK]`` to ``query_length`` and return those positions.
        attend_to_expansion_tokens: let the encoder attend to the ``[MASK]`` padding.
        skiplist_words: tokens dropped from document outputs (punctuation by default).
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
        object.__setattr__(self, "skiplist_words", tuple(self.skiplist_words))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA, then MPS, then CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class _Sequence:
    """One model input: token ids, how many positions attend, and which outputs to keep."""

    text_index: int
    input_ids: list[int]
    attended: int
    keep: list[bool]


class ColBERTEncoder:
    """Encodes queries and documents into per-token ColBERT vectors.

    Build it with :meth:`from_pretrained`. Outputs are float32 CPU tensors, one per text:
    queries are ``(query_length, dim)`` with expansion on; documents are ``(n_tokens, dim)``
    without padding or skiplisted tokens.
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
        name_or_path: str = "",
    ) -> None:
        self.config = config or EncoderConfig()
        self.device = resolve_device(device)
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.dtype = dtype
        self.name_or_path = name_or_path
        self.tokenizer = tokenizer
        # Fast tokenizers are not safe to call from two threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        projection = projection or nn.Identity()
        # Hashed before any dtype conversion, so the same checkpoint gives the same fingerprint on any device.
        self._weights_sha256 = hash_weights([backbone, projection])
        self.revision: str | None = None
        self.backbone = backbone.to(self.device, dtype).eval()
        self.projection = projection.to(self.device, dtype).eval()
        self._head, self._tail = _special_frame(tokenizer)
        self._query_prefix_ids = _marker_ids(tokenizer, self.config.query_prefix, "query_prefix")
        self._document_prefix_ids = _marker_ids(tokenizer, self.config.document_prefix, "document_prefix")
        self._skip_ids = _skiplist_ids(tokenizer, self.config.skiplist_words)
        mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
        if mask_id is None and self.config.do_query_expansion:
            raise ModelLoadError(
                f"The tokenizer of {name_or_path!r} has neither a mask nor a pad token, so queries cannot be "
                "expanded. Pass do_query_expansion=False."
            )
        self._mask_id: int = mask_id if mask_id is not None else 0
        self._pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self._mask_id
        self._dim = _output_dim(self.backbone, self.projection, self.config.truncate_dim)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        local_files_only: bool = False,
        **config_overrides: Any,
    ) -> ColBERTEncoder:
        """Load a PyLate/sentence-transformers, Stanford ColBERT or plain Hugging Face checkpoint.

        Args:
            name_or_path: a local checkpoint folder or a Hugging Face Hub id.
            device: ``"cuda"``, ``"cpu"``, ... (default: CUDA, then MPS, then CPU).
            dtype: weights and activations dtype (default float16 on CUDA, float32 elsewhere).
            local_files_only: never try the Hub.
            **config_overrides: any :class:`EncoderConfig` field, overriding the checkpoint's value.
        """
        folder = _local_folder(str(name_or_path), local_files_only=local_files_only)
        backbone, tokenizer, projection, settings = _load_checkpoint(folder)
        unknown = set(config_overrides) - set(EncoderConfig.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(
                f"Unknown encoder option(s) {sorted(unknown)}; valid ones are "
                f"{sorted(EncoderConfig.__dataclass_fields__)}."
            )
        config = replace(EncoderConfig(), **{**settings, **config_overrides})
        logger.info("Loaded %s on %s (%s)", folder, device or "auto", config)
        return cls(
            backbone,
            tokenizer,
            projection,
            config,
            device=device,
            dtype=dtype,
            name_or_path=str(name_or_path),
        )

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
        return ModelFingerprint(
            source=self.name_or_path,
            weights_sha256=self._weights_sha256,
            dim=self.dim,
            revision=self.revision,
            config=config,
        )

    @overload
    def encode_queries(self, texts: str, *, batch_size: int = ..., show_progress_bar: bool = ...) -> torch.Tensor: ...  # type: ignore[overload-overlap]
    @overload
    def encode_queries(
        self, texts: Sequence[str], *, batch_size: int = ..., show_progress_bar: bool = ...
    ) -> list[torch.Tensor]: ...
    def encode_queries(
        self, texts: str | Sequence[str], *, batch_size: int = 64, show_progress_bar: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Encode queries into ``(query_length, dim)`` tensors (``(n_tokens, dim)`` without expansion).

        A single string gives a single tensor; a sequence gives a list in the same order.
        """
        single, items = _check_texts(texts, allow_empty=False)
        sequences = [self._frame_query(i, ids) for i, ids in enumerate(self.tokenize(items))]
        out = self._run(sequences, len(items), batch_size, show_progress_bar, "queries")
        return out[0] if single else out

    @overload
    def encode_documents(  # type: ignore[overload-overlap]
        self,
        texts: str,
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        long_documents: LongDocuments | None = ...,
    ) -> torch.Tensor: ...
    @overload
    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = ...,
        show_progress_bar: bool = ...,
        long_documents: LongDocuments | None = ...,
    ) -> list[torch.Tensor]: ...
    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        long_documents: LongDocuments | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Encode documents into ``(n_tokens, dim)`` tensors, padding and skiplisted tokens removed.

        Args:
            long_documents: override the config's mode for this call. ``"window"`` encodes text past
                ``document_length`` in overlapping windows so no token is dropped.
        """
        single, items = _check_texts(texts, allow_empty=True)
        mode = long_documents or self.config.long_documents
        if mode not in ("truncate", "window"):
            raise InvalidInputError(f"long_documents must be 'truncate' or 'window', got {mode!r}.")
        sequences: list[_Sequence] = []
        for i, ids in enumerate(self.tokenize(items)):
            sequences.extend(self._frame_document(i, ids, window=mode == "window"))
        out = self._run(sequences, len(items), batch_size, show_progress_bar, "documents")
        return out[0] if single else out

    # ------------------------------------------------------------------ framing
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each text: no special tokens, no markers, no truncation (thread-safe)."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def _frame_query(self, index: int, content: list[int]) -> _Sequence:
        cfg = self.config
        room = cfg.query_length - len(self._head) - len(self._tail) - len(self._query_prefix_ids)
        ids = self._head + self._query_prefix_ids + content[: max(room, 0)] + self._tail
        attended = len(ids)
        if cfg.do_query_expansion:
            ids = ids + [self._mask_id] * (cfg.query_length - len(ids))
            if cfg.attend_to_expansion_tokens:
                attended = len(ids)
        return _Sequence(index, ids, attended, [True] * len(ids))

    def _frame_document(self, index: int, content: list[int], *, window: bool) -> Iterator[_Sequence]:
        cfg = self.config
        prefix = self._head + self._document_prefix_ids
        room = cfg.document_length - len(prefix) - len(self._tail)
        if room < 1:
            raise InvalidInputError(f"document_length={cfg.document_length} leaves no room for text.")
        if not window or len(content) <= room:
            ids = prefix + content[:room] + self._tail
            yield _Sequence(index, ids, len(ids), [t not in self._skip_ids for t in ids])
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
            keep = [k and t not in self._skip_ids for k, t in zip(keep, ids, strict=True)]
            yield _Sequence(index, ids, len(ids), keep)

    # ------------------------------------------------------------------ model
    def _run(
        self, sequences: list[_Sequence], n_texts: int, batch_size: int, show_progress_bar: bool, what: str
    ) -> list[torch.Tensor]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}.")
        from tqdm.auto import tqdm

        # Longest first: batches hold similar lengths (little padding), and a batch that does not fit
        # in memory fails at the start rather than after minutes of work.
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i].input_ids))
        pieces: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
        with (
            torch.inference_mode(),
            tqdm(total=len(sequences), desc=f"Encoding {what}", unit="seq", disable=not show_progress_bar) as bar,
        ):
            for start in range(0, len(order), batch_size):
                batch = [sequences[i] for i in order[start : start + batch_size]]
                for i, vectors in zip(order[start : start + batch_size], self._forward(batch), strict=True):
                    pieces[i] = vectors
                bar.update(len(batch))
        grouped: list[list[torch.Tensor]] = [[] for _ in range(n_texts)]
        for seq, piece in zip(sequences, pieces, strict=True):
            grouped[seq.text_index].append(piece)
        return [g[0] if len(g) == 1 else torch.cat(g) for g in grouped]

    def _forward(self, batch: list[_Sequence]) -> list[torch.Tensor]:
        width = max(len(s.input_ids) for s in batch)
        ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        keep = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, seq in enumerate(batch):
            n = len(seq.input_ids)
            ids[row, :n] = torch.tensor(seq.input_ids)
            attention[row, : seq.attended] = 1
            keep[row, :n] = torch.tensor(seq.keep)
        hidden = self.backbone(input_ids=ids.to(self.device), attention_mask=attention.to(self.device))
        vectors = self.projection(hidden.last_hidden_state)
        if self.config.truncate_dim is not None:
            vectors = vectors[..., : self.config.truncate_dim]
        vectors = F.normalize(vectors.float(), p=2, dim=-1).cpu()
        return [vectors[row][keep[row]] for row in range(len(batch))]

    def __repr__(self) -> str:
        return f"ColBERTEncoder({self.name_or_path!r}, dim={self.dim}, device={self.device}, dtype={self.dtype})"


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


def _special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Special tokens the tokenizer puts before and after a single sequence ([CLS] / [SEP])."""
    bare = list(tokenizer("hello", add_special_tokens=False)["input_ids"])
    framed = list(tokenizer("hello", add_special_tokens=True)["input_ids"])
    for at in range(len(framed) - len(bare) + 1):
        if framed[at : at + len(bare)] == bare:
            return framed[:at], framed[at + len(bare) :]
    raise ModelLoadError("Cannot tell which special tokens this tokenizer adds around a text.")


def _marker_ids(tokenizer: Any, marker: str, name: str) -> list[int]:
    if not marker:
        return []
    vocab = tokenizer.get_vocab()
    if marker in vocab:
        return [vocab[marker]]
    ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InvalidInputError(f"{name}={marker!r} tokenizes to nothing; pass a token from the vocabulary.")
    logger.warning("%s %r is not one vocabulary token; inserting its %d word pieces.", name, marker, len(ids))
    return list(ids)


def _skiplist_ids(tokenizer: Any, words: Sequence[str]) -> frozenset[int]:
    vocab = tokenizer.get_vocab()
    return frozenset(vocab[w] for w in words if w in vocab)


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
def _local_folder(name_or_path: str, *, local_files_only: bool) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"Model folder {name_or_path!r} does not exist; pass an existing checkpoint folder.")
    hint = (
        f"Could not load {name_or_path!r} from the Hugging Face Hub. If the Hub is unreachable, pass a local "
        "checkpoint folder instead (--model PATH or LATEINT_MODEL=PATH on the command line)."
    )
    if local_files_only:
        raise ModelLoadError(hint)
    try:
        from huggingface_hub import snapshot_download

        # Only what the loaders read: configs, tokenizer files, safetensors weights (top level and
        # module folders such as 1_Dense/). Legacy .bin weights only when there are no safetensors.
        patterns = ["*.json", "*.txt", "*.model", "artifact.metadata", "*.safetensors", "*/*.json", "*/*.safetensors"]
        folder = Path(snapshot_download(name_or_path, allow_patterns=patterns))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name_or_path, allow_patterns=[*patterns, "*.bin", "*/*.bin"]))
        return folder
    except Exception as exc:  # offline, DNS failure, unknown repo, gated repo, ...
        raise ModelLoadError(f"{hint} ({type(exc).__name__}: {exc})") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc


def _load_checkpoint(folder: Path) -> tuple[nn.Module, Any, nn.Module | None, dict[str, Any]]:
    """Return (backbone, tokenizer, projection, EncoderConfig overrides) for a checkpoint folder."""
    if (folder / "modules.json").is_file():
        return _load_sentence_transformers(folder)
    if (folder / "artifact.metadata").is_file() or "HF_ColBERT" in _read_json(folder / "config.json").get(
        "architectures", []
    ):
        return _load_stanford(folder)
    if (folder / "config.json").is_file():
        backbone, tokenizer = _load_backbone(folder)
        return backbone, tokenizer, None, {}
    raise ModelLoadError(
        f"{folder} is not a model folder: it has no modules.json (PyLate / sentence-transformers), "
        "artifact.metadata (Stanford ColBERT) or config.json (Hugging Face)."
    )


def _load_backbone(folder: Path) -> tuple[nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # Stanford checkpoints carry `linear.weight` next to the encoder; transformers reports it as an
        # unused weight, which is expected here (the projection is loaded separately).
        # Also silence transformers' own weight-loading bar: a library should not draw on stderr unasked.
        verbosity, bars_enabled = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            backbone = AutoModel.from_pretrained(folder, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars_enabled:
                hf_logging.enable_progress_bar()
    except Exception as exc:
        raise ModelLoadError(f"Could not load the transformer in {folder}: {exc}") from exc
    return backbone, tokenizer


def _load_state(path_without_suffix: Path) -> dict[str, torch.Tensor]:
    safetensors_file = path_without_suffix.with_suffix(".safetensors")
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(safetensors_file)
    bin_file = path_without_suffix.with_suffix(".bin")
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True)
    raise ModelLoadError(f"No weights at {safetensors_file} or {bin_file}.")


def _dense(config: dict[str, Any], state: dict[str, torch.Tensor], where: Path) -> nn.Module:
    try:
        linear = nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias")))
        linear.load_state_dict({k.removeprefix("linear."): v.float() for k, v in state.items()})
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"Projection weights in {where} do not match its config: {exc}") from exc
    name = str(config.get("activation_function", "identity")).rsplit(".", 1)[-1].lower()
    if name not in _ACTIVATIONS:
        raise ModelLoadError(f"Unsupported activation {config.get('activation_function')!r} in {where}.")
    activation = _ACTIVATIONS[name]()
    return linear if isinstance(activation, nn.Identity) else nn.Sequential(linear, activation)


def _load_sentence_transformers(folder: Path) -> tuple[nn.Module, Any, nn.Module | None, dict[str, Any]]:
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    transformer = next((m for m in modules if m["type"].endswith("Transformer")), None)
    if transformer is None:
        raise ModelLoadError(f"{folder / 'modules.json'} lists no Transformer module.")
    backbone_dir = folder / transformer.get("path", "")
    backbone, tokenizer = _load_backbone(backbone_dir)

    dense_layers = []
    skiplist: list[str] | None = None
    for module in modules:
        module_dir = folder / module.get("path", "")
        if module["type"].endswith("Dense"):
            dense_layers.append(
                _dense(_read_json(module_dir / "config.json"), _load_state(module_dir / "model"), module_dir)
            )
        elif module["type"].endswith("MultiVectorMask"):
            mask_config = _read_json(module_dir / "config.json")
            applies = "document" in mask_config.get("skiplist_tasks", ["document"])
            skiplist = (mask_config.get("skiplist_words") or []) if applies else []
    projection = nn.Sequential(*dense_layers) if dense_layers else None

    st_config = _read_json(folder / "config_sentence_transformers.json")
    transformer_config = _read_json(backbone_dir / "sentence_bert_config.json")
    settings: dict[str, Any] = {}
    prompts = st_config.get("prompts") or {}
    # PyLate <= 3 keys, then sentence-transformers 6 keys (which win when both are present).
    for ours, pylate, st6 in (
        ("query_prefix", "query_prefix", "query"),
        ("document_prefix", "document_prefix", "document"),
    ):
        if pylate in st_config:
            settings[ours] = st_config[pylate] or ""
        if st6 in prompts:
            settings[ours] = prompts[st6] or ""
    for key in ("query_length", "document_length", "attend_to_expansion_tokens", "do_query_expansion"):
        if st_config.get(key) is not None:
            settings[key] = st_config[key]
    if st_config.get("skiplist_words") is not None:
        skiplist = st_config["skiplist_words"]
    if transformer_config.get("document_length") is not None:
        settings["document_length"] = transformer_config["document_length"]
    if transformer_config.get("query_length") is not None:
        settings["query_length"] = transformer_config["query_length"]
    if "query_expansion" in transformer_config:
        expansion = transformer_config["query_expansion"]
        settings["do_query_expansion"] = expansion is not None
        if expansion:
            settings["attend_to_expansion_tokens"] = bool(expansion.get("attend", False))
            settings["query_length"] = int(expansion.get("length") or settings.get("query_length", 32))
    if "document_length" not in settings and transformer_config.get("max_seq_length"):
        settings["document_length"] = int(transformer_config["max_seq_length"])
    if skiplist is None and st_config.get("model_type") == "MultiVectorEncoder":
        skiplist = []  # sentence-transformers 6 skips tokens only through a MultiVectorMask module
    if skiplist is not None:  # otherwise PyLate's default, the punctuation list
        settings["skiplist_words"] = tuple(skiplist)
    return backbone, tokenizer, projection, settings


def _load_stanford(folder: Path) -> tuple[nn.Module, Any, nn.Module | None, dict[str, Any]]:
    backbone, tokenizer = _load_backbone(folder)
    state_file = folder / "model"
    if not state_file.with_suffix(".safetensors").is_file():
        state_file = folder / "pytorch_model"
    state = _load_state(state_file)
    if "linear.weight" not in state:
        raise ModelLoadError(f"{folder} looks like a Stanford ColBERT checkpoint but has no 'linear.weight'.")
    weight = state["linear.weight"].float()
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    linear.weight.data.copy_(weight)
    meta = _read_json(folder / "artifact.metadata")
    settings: dict[str, Any] = {}
    for ours, theirs in (
        ("query_prefix", "query_token_id"),
        ("document_prefix", "doc_token_id"),
        ("query_length", "query_maxlen"),
        ("document_length", "doc_maxlen"),
        ("attend_to_expansion_tokens", "attend_to_mask_tokens"),
    ):
        if meta.get(theirs) is not None:
            settings[ours] = meta[theirs]
    if meta.get("mask_punctuation") is False:
        settings["skiplist_words"] = ()
    return backbone, tokenizer, linear, settings
