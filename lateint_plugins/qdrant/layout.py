"""The collection layout: its configuration, point ids, pooled and lexical vectors, the metadata marker.

Pure functions of a document or of the configuration; nothing here talks to Qdrant. The layout itself
is described in :mod:`lateint_plugins.qdrant`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lateint_plugins.core._checks import (
    check_k,
    check_metadata,
    check_non_negative,
    check_sequence,
    check_text,
)
from lateint_plugins.core.codec import RQ_NBITS, check_quantizer
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import (
    InvalidInputError,
)

if TYPE_CHECKING:
    from qdrant_client import models

LAYOUT_VERSION = 5
"""Newest collection layout this version reads (recorded in the collection metadata; newer ones are refused).

1: windows 1.. at ``uuid5(doc_id, window)`` (read, never written any more); 2: windows 1.. under fresh
point ids per write, window 0 the commit point; 3: ``token_layout="plaid"`` (PLAID codes in the
payload, the codec in codec points); 4: a two-stage codec (``quantizer="rq"``), its residuals split
into ``residuals`` (first stage) and ``residuals_2`` (second); 5: a PLAID collection that keeps its
first documents' tokens uncompressed (``tokens_fp16``) until it trains its codec
(``codec_training_tokens``). Each collection records the oldest version that reads it (fp16: 2, a
PLAID one that trained on its first write: 3 or 4), so older readers still open those.
"""
MAX_MULTIVECTOR_FLOATS = 1_048_576
"""Qdrant's cap on the floats of one multivector (tokens x dim) in one point."""

TOKENS = "tokens"
CENTROID_IDS = "centroid_ids"
CENTROID_SET = "centroid_set"
RESIDUALS = "residuals"
REFINEMENT = "residuals_2"
TOKENS_FP16 = "tokens_fp16"
POOLED = "pooled"
LEXICAL = "lexical"
BM25_K1, BM25_B, BM25_AVG_LEN = 1.2, 0.75, 256.0
_MARKER = "lateint"
_POINT_NAMESPACE = uuid.UUID("6f1c1b8e-7a0c-5d4e-9b7e-2f6c3a1d9e42")
_SCROLL_PAGE = 256
_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_BAD_NAME_CHARS = ("<", ">", ":", '"', "/", "\\", "|", "?", "*", "\x00", "\x1f")  # as Qdrant's own check
_EXTRA = "qdrant"
_PAYLOAD_SCHEMAS = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid", "geo")
# Payload of a window-0 point that readers need to find its committed windows.
_HEAD = ["doc_id", "window", "n_windows", "n_tokens", "write_id", "layout"]

CODEC_TRAINING_TOKENS = 131_072
"""Tokens a new ``token_layout="plaid"`` collection keeps uncompressed before it trains its codec on them."""

_FLOAT16_MAX = 65504.0
"""Largest finite float16: token vectors are stored at float16 precision."""

Mode = Literal["local", "native"]


@dataclass(frozen=True)
class StoredDocument:
    """One committed document of a collection, as :meth:`QdrantLateInteractionStore.iter_documents` yields it.

    ``embedding`` is the ``(n_tokens, dim)`` float32 token matrix (windows re-assembled) when asked
    for, else None; ``text`` is ``""`` when the text was not asked for; ``content_hash`` is what
    :func:`content_hash` gave when it was written (None in collections that lack it).
    """

    id: str
    text: str
    metadata: dict[str, Any]
    content_hash: str | None = None
    embedding: torch.Tensor | None = None


def recorded_config(recorded: Mapping[str, Any]) -> CollectionConfig:
    """The layout options recorded in a collection's marker (what readers need); older markers give the defaults."""
    plaid = recorded.get("token_layout") == "plaid"
    # fp16 collections record no codec settings; PLAID ones before layout 4 only nbits (a product quantiser).
    # Before layout 5 a PLAID collection trained its codec on its first write.
    codec: dict[str, Any] = {
        "nbits": int(recorded.get("nbits") or 2),
        "quantizer": recorded.get("quantizer") or "pq",
        "codec_training_tokens": int(recorded.get("codec_training_tokens") or 0),
    }
    return CollectionConfig(
        pooled_vectors=int(recorded.get("pooled_vectors", 1)),
        lexical=bool(recorded.get("lexical")),
        payload_indexes=dict(recorded.get("payload_indexes") or {}),
        payload_keys=PayloadKeys(**dict(recorded.get("payload_keys") or {})),
        # Collections written before token_layout existed hold fp16 multivectors.
        token_layout=recorded.get("token_layout", "fp16"),
        **(codec if plaid else {}),
    )


def marker_version(config: CollectionConfig) -> int:
    """The layout version a collection in ``config`` records: the oldest that reads it."""
    if config.token_layout == "fp16":
        oldest = 2
    else:
        oldest = 5 if config.codec_training_tokens else 4 if config.quantizer == "rq" else 3
    return min(LAYOUT_VERSION, oldest)


def recorded_marker(info: Any) -> dict[str, Any]:
    """Our entry in a collection's metadata (``client.get_collection(name)``), ``{}`` when there is none."""
    return dict((info.config.metadata or {}).get(_MARKER) or {})


# Payload fields of the layout's own bookkeeping (the commit protocol and sync); not renameable.
_RESERVED_KEYS = frozenset(
    {
        "doc_id",
        "window",
        "n_windows",
        "n_tokens",
        "write_id",
        "layout",
        "content_hash",
        CENTROID_IDS,
        CENTROID_SET,
        RESIDUALS,
        REFINEMENT,
        TOKENS_FP16,
    }
)
TokenLayout = Literal["fp16", "plaid"]


@dataclass(frozen=True)
class PayloadKeys:
    """The payload keys a collection stores each document's text and metadata under.

    The defaults are langchain-qdrant's (``page_content``, ``metadata``), so its ``QdrantVectorStore``
    reads the texts of a collection written here; map them to your own schema (e.g.
    ``PayloadKeys(text="text", metadata="meta")``) when other readers expect other names. Recorded
    in the collection's metadata on creation and read back on open, so a store always reads a
    collection with the keys it was written with. Filters address ``<metadata>.<key>``. The
    bookkeeping fields (``doc_id``, ``window``, ``n_windows``, ``n_tokens``, ``write_id``,
    ``layout``, ``content_hash``) keep their names.

    Args:
        text: payload key of the document text (on window 0).
        metadata: payload key of the user metadata (on every window: the filter target).
    """

    text: str = "page_content"
    metadata: str = "metadata"

    def __post_init__(self) -> None:
        for name in ("text", "metadata"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _KEY.match(value) or value in _RESERVED_KEYS:
                raise InvalidInputError(
                    f"PayloadKeys.{name} = {value!r}: use a non-empty key of letters, digits, '_' or '-' that is not "
                    f"one of the layout's own fields {sorted(_RESERVED_KEYS)}."
                )
        if self.text == self.metadata:
            raise InvalidInputError(f"PayloadKeys.text and .metadata are both {self.text!r}; give them distinct keys.")


@dataclass(frozen=True)
class CollectionConfig:
    """How a new collection is created (ignored when the collection exists).

    Args:
        pooled_vectors: 1 for one mean-pooled dense vector per point; ``K > 1`` for a ``MAX_SIM``
            multivector of at most ``K`` k-means means (more memory).
        lexical: also index each document's WordPiece tokens (the encoder's tokenizer) as a BM25
            sparse vector (Qdrant's IDF modifier) and prefetch from it too: mean pooling alone
            misses documents that match on rare terms (see the benchmark).
        shard_number: Qdrant shards (spread over the cluster's nodes).
        replication_factor: copies of each shard.
        write_consistency_factor: replicas that must acknowledge a write.
        on_disk_payload: keep payloads (texts) on disk.
        tokens_on_disk: keep the token multivectors on disk (memory-mapped); they are read only for
            the candidates.
        pooled_on_disk: keep the pooled vectors on disk too.
        tokens_quantization: a ``qdrant_client.models`` quantisation config for the token
            multivector (e.g. ``ScalarQuantization``); speeds native rescoring; local MaxSim always
            reads the float16 originals.
        pooled_quantization: quantisation for the pooled vector.
        hnsw_m: HNSW degree of the pooled vector's graph.
        hnsw_ef_construct: HNSW build beam of the pooled vector's graph.
        payload_indexes: metadata key (dotted for nested keys) -> Qdrant payload schema type
            (``"keyword"``, ``"integer"``, ``"float"``, ``"bool"``, ``"text"``, ``"datetime"``,
            ``"uuid"``, ``"geo"``): a payload index on ``metadata.<key>`` is created with the
            collection, so filters on those keys stay fast on a server (local mode ignores them).
            Pick the type of every value the key holds: an ``"integer"`` index does not see floats,
            so use ``"float"`` for numbers that may be either (numeric equality is a range).
            Recorded in the collection's metadata and read back on open.
        payload_keys: where each point's text and metadata live in the payload (:class:`PayloadKeys`);
            recorded in the collection's metadata and read back on open.
        token_layout: how token vectors are stored. ``"plaid"`` (the default): PLAID codes in the
            payload, a centroid id (int16) and ``dim * nbits / 8`` residual bytes per token, the
            codec in the collection (:mod:`lateint_plugins.qdrant.codes`); a query reads the
            candidates' distinct centroids, then the codes of the best few dozen only
            (``n_full_scores``, ``n_refine``): 1/27 of the bytes on SciFact (``mode="local"``
            only). Until the codec is trained (``codec_training_tokens``) documents are stored
            as fp16 tokens in the payload and scored exactly. ``"fp16"``: a float16 ``MAX_SIM``
            multivector per point (exact local MaxSim of every candidate; ``mode="native"``
            works). Recorded in the collection's metadata and read back on open.
        nbits: residual bits per dimension of the ``"plaid"`` layout: 1, 2 or 4, or with
            ``quantizer="rq"`` 4, 6 (the default) or 8.
        quantizer: the residual quantiser of a codec the collection trains: ``"pq"``, or
            ``"rq"``: stages of 2 bits (``nbits / 2`` of them), stored in two payload fields, so a
            query reads the first stage's bytes for the best ``n_full_scores`` candidates and the
            other stages' for the best ``n_refine`` only: about the bytes of 2 bits with the
            accuracy of ``nbits``. Default: ``"rq"`` where ``nbits`` allows it (4, 6, 8), else
            ``"pq"``. Recorded and read back on open.
        n_centroids: centroids of a codec the collection trains (default from the number of
            tokens it is trained on, as :class:`~lateint_plugins.core.plaid.PLAIDIndex` does).
        codec_training_tokens: a ``"plaid"`` collection without a codec (none passed as
            ``codec=``) stores its documents as fp16 tokens until it holds this many tokens; the
            write that reaches it trains the codec on all of them (a sample of at most 131,072)
            and compresses the earlier documents too, each in one step (a kill part-way leaves
            the rest fp16: readers compress them on the fly, the next write or ``repair()``
            finishes). So a collection started with a handful of documents never compresses
            everything after with a codec fitted to those. 0: train on the first write (its
            documents only; under 16,384 tokens with a warning). Recorded and read back on open.
    """

    pooled_vectors: int = 1
    lexical: bool = True
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool = True
    tokens_on_disk: bool = True
    pooled_on_disk: bool = False
    tokens_quantization: Any = None
    pooled_quantization: Any = None
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    payload_indexes: Mapping[str, str] = field(default_factory=dict)
    payload_keys: PayloadKeys = field(default_factory=PayloadKeys)
    token_layout: TokenLayout = "plaid"
    nbits: int = 6
    quantizer: Literal["pq", "rq"] | None = None
    n_centroids: int | None = None
    codec_training_tokens: int = CODEC_TRAINING_TOKENS

    def __post_init__(self) -> None:
        if self.token_layout not in ("fp16", "plaid"):
            raise InvalidInputError(f"token_layout must be 'fp16' or 'plaid', got {self.token_layout!r}.")
        if self.quantizer is None:
            object.__setattr__(self, "quantizer", "rq" if self.nbits in RQ_NBITS else "pq")
        if self.quantizer not in ("pq", "rq"):
            raise InvalidInputError(f"quantizer must be 'pq' or 'rq', got {self.quantizer!r}.")
        check_quantizer(self.nbits, self.quantizer)
        object.__setattr__(
            self, "codec_training_tokens", check_non_negative(self.codec_training_tokens, "codec_training_tokens")
        )
        if self.n_centroids is not None and not 1 <= check_k(self.n_centroids, "n_centroids") <= 32768:
            raise InvalidInputError(f"n_centroids must be in [1, 32768] or None, got {self.n_centroids!r}.")
        if not isinstance(self.payload_keys, PayloadKeys):
            raise InvalidInputError(
                "payload_keys must be a PayloadKeys (e.g. PayloadKeys(text='text')), got "
                f"{type(self.payload_keys).__name__}."
            )
        for name in ("pooled_vectors", "hnsw_m", "hnsw_ef_construct"):
            check_k(getattr(self, name), name)
        if not isinstance(self.payload_indexes, Mapping):
            raise InvalidInputError(
                f"payload_indexes must be a dict of metadata key -> schema type (e.g. {{'year': 'integer'}}), "
                f"got {type(self.payload_indexes).__name__}."
            )
        for key, schema in self.payload_indexes.items():
            if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
                raise InvalidInputError(
                    f"payload_indexes has the key {key!r}; keys must be metadata keys ('a', 'a.b')."
                )
            if schema not in _PAYLOAD_SCHEMAS:
                raise InvalidInputError(
                    f"payload_indexes[{key!r}] = {schema!r}: use one of {list(_PAYLOAD_SCHEMAS)} (Qdrant's "
                    "PayloadSchemaType values)."
                )
        object.__setattr__(self, "payload_indexes", MappingProxyType(dict(self.payload_indexes)))
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            if getattr(self, name) is not None:
                check_k(getattr(self, name), name)


def content_hash(text: str, metadata: Mapping[str, Any] | None) -> str:
    """SHA-256 of a document's text and metadata (canonical JSON): what sync compares."""
    text = check_text(text, "text", allow_empty=True)
    metadata = check_metadata(metadata, "metadata")
    blob = json.dumps([text, dict(metadata or {})], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def point_id(doc_id: str, window: int = 0) -> str:
    """The Qdrant point id (a UUID string) of window ``window`` of document ``doc_id``."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{window}:{doc_id}"))


def pool(tokens: torch.Tensor, n_vectors: int) -> torch.Tensor:
    """The pooled representation of one ``(n_tokens, dim)`` matrix: ``(1, dim)`` mean or ``(<=n_vectors, dim)``.

    With ``n_vectors == 1`` the re-normalised mean; otherwise k-means means of the tokens (the first,
    ``[CLS]``, kept as is), at most ``n_vectors`` of them.
    """
    x = tokens.float()
    if n_vectors == 1 or x.shape[0] <= n_vectors:
        return F.normalize(x.mean(0, keepdim=True), dim=-1) if n_vectors == 1 else x
    from lateint_plugins.core.codec import pool_tokens

    factor = math.ceil((x.shape[0] - 1) / (n_vectors - 1))
    return pool_tokens(x, factor)


def bm25_vector(token_ids: Sequence[int]) -> models.SparseVector:
    """A document's BM25 term weights ``tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len))`` as a sparse vector.

    The IDF factor is applied by Qdrant (``Modifier.IDF``) over the whole collection.
    """
    from collections import Counter

    from qdrant_client import models

    token_ids = check_sequence(token_ids, "token_ids", "int token ids", "token id")
    if any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0 for t in token_ids):
        raise InvalidInputError("token_ids must be non-negative int token ids (the encoder's tokenizer ids).")
    counts = Counter(int(t) for t in token_ids)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(token_ids) / BM25_AVG_LEN)
    indices = sorted(counts)
    return models.SparseVector(
        indices=indices, values=[counts[t] * (BM25_K1 + 1) / (counts[t] + norm) for t in indices]
    )


def _windows(tokens: torch.Tensor, max_tokens: int) -> list[torch.Tensor]:
    return list(tokens.split(max_tokens)) if tokens.shape[0] > max_tokens else [tokens]


def _as_list(x: torch.Tensor) -> list[list[float]]:
    return x.detach().to("cpu", torch.float32).numpy().tolist()


def _marker(encoder: ColBERTEncoder, config: CollectionConfig) -> dict[str, Any]:
    from dataclasses import asdict

    path = Path(str(encoder.name_or_path)).expanduser()
    encoder_config = asdict(encoder.config)
    encoder_config["skiplist_words"] = list(encoder_config.get("skiplist_words") or [])
    return {
        "layout_version": marker_version(config),
        "model": str(path.resolve()) if path.is_dir() else str(encoder.name_or_path),
        "model_name": path.name if path.is_dir() else str(encoder.name_or_path),
        "dim": encoder.dim,
        "pooled_vectors": config.pooled_vectors,
        "lexical": {"tokenizer": "encoder", "k1": BM25_K1, "b": BM25_B, "avg_len": BM25_AVG_LEN}
        if config.lexical
        else None,
        "token_dtype": "float16" if config.token_layout == "fp16" else None,
        "token_layout": config.token_layout,
        "nbits": config.nbits if config.token_layout == "plaid" else None,
        "quantizer": config.quantizer if config.token_layout == "plaid" else None,
        "codec_training_tokens": config.codec_training_tokens if config.token_layout == "plaid" else None,
        "payload_keys": asdict(config.payload_keys),
        "payload_indexes": dict(config.payload_indexes),
        "encoder_config": encoder_config,
        "fingerprint": encoder.fingerprint.to_dict(),
    }


def _check_collection_name(name: object) -> str:
    """A name Qdrant accepts: a non-empty str of at most 255 characters, valid UTF-8, without the characters
    Qdrant refuses in new collection names (``< > : " / \\ | ? *``, NUL, ``\\x1f``)."""
    text = check_text(name, "collection_name")
    bad = [c for c in _BAD_NAME_CHARS if c in text]
    if len(text) > 255 or bad or text in (".", ".."):
        raise InvalidInputError(
            f"collection_name must have at most 255 characters, none of {''.join(_BAD_NAME_CHARS[:9])}, NUL or "
            f"\\x1f, and not be '.' or '..'; got {text[:60]!r}."
        )
    return text


def _check_mode(mode: str) -> Mode:
    if mode not in ("local", "native"):
        raise InvalidInputError(f"mode must be 'local' or 'native', got {mode!r}.")
    return mode  # type: ignore[return-value]


# Commit bookkeeping: window 0 of a document names the write whose windows are visible.
def _window_of(payload: Mapping[str, Any]) -> int:
    try:
        return int(payload.get("window", 0))
    except (TypeError, ValueError):
        return -1


def _n_windows(payload: Mapping[str, Any]) -> int:
    try:
        return max(1, int(payload.get("n_windows", 1)))
    except (TypeError, ValueError):
        return 1


def _window_point_id(doc_id: str, window: int, head: Mapping[str, Any]) -> str:
    """The point id of window ``window`` of the write that ``head`` (a window-0 payload) commits."""
    if window == 0 or int(head.get("layout", 1) or 1) < 2:
        return point_id(doc_id, window)  # layout 1 wrote every window at a fixed id
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{window}:{doc_id}:{head.get('write_id')}"))


def _in_commit(pid: str, doc_id: str, payload: Mapping[str, Any], head: Mapping[str, Any] | None) -> bool:
    """Whether the point ``pid`` (payload ``payload``) is a window of the write that ``head`` commits."""
    if head is None or payload.get("write_id") != head.get("write_id"):
        return False
    window = _window_of(payload)
    return 0 < window < _n_windows(head) and pid == _window_point_id(doc_id, window, head)
