"""`LateInteractionStore`: an encoder, an index and the documents' texts, as one object.

Every framework adapter (LangChain, LlamaIndex, Qdrant) wraps this store, so encoding, scoring,
filtering and bookkeeping live here once.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _io
from ._checks import (
    check_encoder,
    check_filter,
    check_ids,
    check_k,
    check_matrices,
    check_metadatas,
    check_text,
    check_texts,
)
from .encoder import ColBERTEncoder
from .errors import CorruptIndexError, InvalidInputError, ModelLoadError, ModelMismatchError
from .fingerprint import ModelFingerprint, check_fingerprint
from .index import ExactIndex, Index, Metadata, create_index, load_index

logger = logging.getLogger(__name__)

__all__ = ["DocumentStore", "LateInteractionStore", "SearchResult", "check_documents", "check_search_options"]

_STORE_KIND = "store"
_STORE_VERSION = 1


@dataclass(frozen=True)
class SearchResult:
    """One retrieved document: id, MaxSim score, text and metadata."""

    id: str
    score: float
    text: str
    metadata: Metadata = field(default_factory=dict)


@runtime_checkable
class DocumentStore(Protocol):
    """What the framework adapters need from a store: texts in, ranked :class:`SearchResult` out.

    :class:`LateInteractionStore` (exact or PLAID index) and
    :class:`~lateint_plugins.qdrant.QdrantLateInteractionStore` satisfy it, so the LangChain and
    LlamaIndex adapters work over either. The contract, identical in every store and checked by
    the reusable suite :mod:`lateint_plugins.testing`:

    - **Ids** are non-empty str; ``add_texts`` / ``add_embeddings`` return them (new UUID4 hex
      strings when ``ids`` is None). Nothing is written unless every text, id and metadata dict is
      valid (:class:`~lateint_plugins.core.errors.InvalidInputError`).
    - **replace**: ``replace=False`` is the default everywhere; an id already stored then raises
      :class:`~lateint_plugins.core.errors.DuplicateIdError` and nothing of the call is written.
      ``replace=True`` upserts (the old document is replaced whole). Adapters pass it explicitly.
    - **add_embeddings(texts, embeddings, metadatas=None, ids=None, *, replace=False)**: one
      ``(n_tokens, dim)`` matrix per text, from this store's encoder; otherwise as ``add_texts``.
    - **Empty batches** are no-ops: ``add_texts([])`` and ``add_embeddings([], [])`` return ``[]``,
      ``delete([])`` does nothing, ``search_batch([])`` returns ``[]`` (after validating ``k``,
      ``filter`` and the options).
    - **delete(ids)** removes the documents; ids not stored are ignored (no error).
    - **get(ids)** returns stored documents (score 0.0) in the order asked, repeats included,
      skipping missing ids. ``id in store`` (``__contains__``) is False for anything not stored,
      non-str included. ``ids()`` lists every id (insertion order where the store has one: core
      stores; Qdrant's is its point order). ``len(store)`` counts documents.
    - **search(query, k=10, filter=None, **options)** / **search_batch(queries, ...)** return at most
      ``k`` hits per query, best first, and exactly ``k`` when at least ``k`` documents match the
      filter (filters apply before ranking, never after). ``filter`` is the one filter model of
      :mod:`lateint_plugins.core.filters` (the same documents match in every store; Qdrant refuses
      ``$itext``, which it cannot evaluate); malformed filters raise
      :class:`~lateint_plugins.core.errors.InvalidInputError` before any search.
    - **search_options**: the store-specific keyword options ``search`` / ``search_batch`` accept,
      name -> default (exact: none; PLAID: the :class:`~lateint_plugins.core.plaid.SearchConfig`
      fields; Qdrant: ``mode``, ``candidate_depth``). Unknown options raise
      :class:`~lateint_plugins.core.errors.InvalidInputError`. Adapters forward retriever keyword
      arguments found here and refuse the others.
    """

    encoder: ColBERTEncoder

    @property
    def search_options(self) -> Mapping[str, Any]: ...

    def __len__(self) -> int: ...

    def __contains__(self, doc_id: object) -> bool: ...

    def ids(self) -> list[str]: ...

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        replace: bool = False,
    ) -> list[str]: ...

    def add_embeddings(
        self,
        texts: Sequence[str],
        embeddings: Sequence[torch.Tensor | np.ndarray],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        replace: bool = False,
    ) -> list[str]: ...

    def search(
        self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[SearchResult]: ...

    def search_batch(
        self, queries: Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[list[SearchResult]]: ...

    def get(self, ids: Sequence[str]) -> list[SearchResult]: ...

    def delete(self, ids: Sequence[str]) -> None: ...


def check_search_options(options: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (a ``search`` call's keyword arguments) checked against a store's ``search_options``.

    Raises:
        InvalidInputError: an option the store does not declare; the message lists the valid ones.
    """
    unknown = sorted(set(options) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "none: this store takes only k and filter"
        raise InvalidInputError(f"Unknown search option(s) {unknown}; valid ones are {valid}.")
    return dict(options)


class LateInteractionStore:
    """Texts in, ranked texts out: encodes with a :class:`ColBERTEncoder`, scores with an :class:`Index`.

    Args:
        encoder: the ColBERT encoder for queries and documents.
        index: where token vectors live (default: a new :class:`ExactIndex`).

    Example:
        >>> store = LateInteractionStore(ColBERTEncoder.from_pretrained("answerdotai/answerai-colbert-small-v1"))
        >>> store.add_texts(["Paris is the capital of France."], metadatas=[{"topic": "geo"}])
        >>> store.search("capital of France", k=1)[0].text
        'Paris is the capital of France.'
    """

    def __init__(self, encoder: ColBERTEncoder, index: Index | None = None) -> None:
        self.encoder = check_encoder(encoder)
        self.index = index if index is not None else ExactIndex()
        if not isinstance(self.index, Index):
            raise InvalidInputError(f"index must be an Index (ExactIndex, PLAIDIndex), got {type(index).__name__}.")
        if self.index.dim is not None and self.index.dim != encoder.dim:
            raise InvalidInputError(
                f"index holds {self.index.dim}-d vectors but the encoder produces {encoder.dim}-d; "
                "use the model the index was built with."
            )
        self._texts: dict[str, str] = {}
        # One writer or searcher at a time: indexes consolidate added vectors lazily on search.
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | ColBERTEncoder,
        *,
        index: str | Index = "exact",
        device: str | torch.device | None = None,
        index_options: Mapping[str, Any] | None = None,
        **encoder_options: Any,
    ) -> LateInteractionStore:
        """An empty store for ``model``: the one store factory every adapter uses.

        Args:
            model: a Hub id or a local checkpoint folder (see :meth:`ColBERTEncoder.from_pretrained`), or
                an encoder already loaded (then ``encoder_options`` must be empty).
            index: ``"exact"``, ``"plaid"`` or an :class:`Index` instance.
            device: where the encoder (and a new index) run; default CUDA when available.
            index_options: passed to the new index's constructor (e.g. ``{"config": PLAIDConfig(nbits=4)}``).
            **encoder_options: encoder settings (e.g. ``query_length``).
        """
        if isinstance(model, ColBERTEncoder):
            if encoder_options:
                raise InvalidInputError(
                    f"Encoder options {sorted(encoder_options)} only apply when model is a checkpoint name or "
                    "folder; set them when loading the ColBERTEncoder you passed as model."
                )
            encoder = model
        elif isinstance(model, (str, Path)):
            encoder = ColBERTEncoder.from_pretrained(model, device=device, **encoder_options)
        else:
            raise InvalidInputError(
                f"model must be a Hub id, a local checkpoint folder or a ColBERTEncoder, got {type(model).__name__}."
            )
        if isinstance(index, str):
            options = dict(index_options or {})
            if device is not None:
                options.setdefault("device", device)
            index = create_index(index, **options)
        elif index_options:
            raise InvalidInputError("index_options only apply when index is a kind name ('exact' or 'plaid').")
        return cls(encoder, index)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and doc_id in self.index

    def ids(self) -> list[str]:
        """Every document id, in insertion order (a replaced document moves to the end)."""
        with self._lock:
            return list(self.index.ids)

    @property
    def search_options(self) -> Mapping[str, Any]:
        """The keyword options :meth:`search` accepts, name -> current default.

        An :class:`ExactIndex` has none; a PLAID index takes the fields of its
        :class:`~lateint_plugins.core.plaid.SearchConfig` (``n_ivf_probe``, ``n_full_scores``, ...).
        """
        config = getattr(self.index, "search_config", None)
        return MappingProxyType(asdict(config) if is_dataclass(config) and not isinstance(config, type) else {})

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        replace: bool = False,
        chunk_size: int = 2048,
    ) -> list[str]:
        """Encode and index ``texts``; returns their ids (new UUID4 hex strings when ``ids`` is None).

        Nothing is added unless every text, id and metadata entry is valid. Empty texts are legal
        (they encode to the document marker tokens). With ``replace=True`` ids already in the store
        are overwritten (an upsert); otherwise they raise :class:`DuplicateIdError`, checked again
        under the store lock in the same step as the insert, so of two threads adding the same new
        id exactly one succeeds.

        Texts are encoded ``chunk_size`` at a time, outside the lock, and each chunk is then swapped
        in under the lock in one step: its new documents appear and the ones it replaces disappear
        together, and if that step fails (an exception or Ctrl-C while compressing) the old
        documents stay exactly as they were. An index that still has to train (PLAID) first learns
        from a random sample of ``chunk_size`` texts. If a chunk fails, the ids this call added are
        removed again and the documents of the failed and later chunks keep their old version; with
        more than ``chunk_size`` texts, documents replaced by earlier chunks keep their new version
        (every document is whole either way, and an upsert is safe to repeat).

        Thread-safe: searches from other threads see each chunk whole or not at all.
        """
        chunk_size = check_k(chunk_size, "chunk_size")
        # Cheap checks first, so a bad id or metadata fails before minutes of encoding.
        texts, ids, metas = check_documents(texts, metadatas, ids, None if replace else self.index)
        if not texts:
            return []
        encoded: dict[int, torch.Tensor] = {}
        # One bar for the whole call, moved per encoded batch (the training sample's included).
        bar = tqdm(total=len(texts), desc="Indexing", unit="doc", disable=not show_progress_bar)
        if not self.index.is_trained and len(texts) > chunk_size:
            # The sample's vectors are kept (one chunk's worth) and indexed with their chunks.
            encoded = self._train_on_sample(texts, chunk_size, batch_size, bar)
        added: list[str] = []
        try:
            with bar:
                for start in range(0, len(texts), chunk_size):
                    stop = min(start + chunk_size, len(texts))
                    todo = [i for i in range(start, stop) if i not in encoded]
                    fresh = iter(_encode_documents(self.encoder, [texts[i] for i in todo], batch_size, bar))
                    vectors = [encoded.pop(i) if i in encoded else next(fresh) for i in range(start, stop)]
                    chunk_ids = ids[start:stop]
                    replaced = self._insert(chunk_ids, vectors, metas[start:stop], texts[start:stop], replace=replace)
                    added += [i for i in chunk_ids if i not in replaced]
        except BaseException:
            if added:
                logger.warning("Adding texts failed part-way; removing the %d documents this call added.", len(added))
                with self._lock:
                    self._remove_present(added)
            raise
        return ids

    def add_embeddings(
        self,
        texts: Sequence[str],
        embeddings: Sequence[torch.Tensor | np.ndarray],
        metadatas: Sequence[Metadata | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        replace: bool = False,
    ) -> list[str]:
        """Add documents encoded elsewhere (e.g. read back from Qdrant): one ``(n_tokens, dim)`` matrix per text.

        The vectors must come from this store's encoder (same model and settings); only their
        width, dtype and finiteness can be checked. Otherwise as :meth:`add_texts`, in one step.
        """
        texts, ids, metas = check_documents(texts, metadatas, ids, None if replace else self.index)
        embeddings = check_matrices(embeddings, "embeddings")
        if len(embeddings) != len(texts):
            raise InvalidInputError(f"Got {len(texts)} texts but {len(embeddings)} embeddings; pass one per text.")
        if texts:
            self._insert(ids, embeddings, metas, texts, replace=replace)
        return ids

    def _insert(
        self,
        ids: list[str],
        vectors: Sequence[torch.Tensor | np.ndarray],
        metas: Sequence[Metadata],
        texts: Sequence[str],
        *,
        replace: bool,
    ) -> list[str]:
        """Index validated documents in one step under the lock; returns the ids that were replaced.

        The index checks for duplicates (without ``replace``) and drops replaced documents only
        after the new vectors are in, so a failure here leaves every document as it was.
        """
        with self._lock:
            replaced = [i for i in ids if i in self._texts] if replace else []
            self.index.add(ids, vectors, metas, replace=replace)
            self._texts.update(zip(ids, texts, strict=True))
        return replaced

    def _remove_present(self, ids: Sequence[str]) -> None:
        """Remove those of ``ids`` that are still stored (undoes a failed add; the caller holds the lock)."""
        present = [i for i in ids if i in self._texts]
        if present:
            self.index.remove(present)
            for doc_id in present:
                del self._texts[doc_id]

    def _train_on_sample(self, texts: list[str], n_sample: int, batch_size: int, bar: Any) -> dict[int, torch.Tensor]:
        """Train the index on ``n_sample`` random texts; returns their vectors by position in ``texts``."""
        picked = sorted(random.Random(0).sample(range(len(texts)), n_sample))
        sample = _encode_documents(self.encoder, [texts[i] for i in picked], batch_size, bar)
        n_sampled = sum(v.shape[0] for v in sample)
        with self._lock:
            self.index.train(torch.cat(sample), n_tokens=round(n_sampled * len(texts) / n_sample))
        return dict(zip(picked, sample, strict=True))

    def search(
        self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[SearchResult]:
        """Top-``k`` documents for ``query``.

        Args:
            query: the query text.
            k: hits to return (fewer only when fewer documents match ``filter``).
            filter: a metadata filter (:mod:`lateint_plugins.core.filters`), e.g.
                ``{"year": {"$gte": 2020}, "lang": "en"}``, applied before scoring.
            **options: :attr:`search_options` for this call only (PLAID: ``n_ivf_probe=16``, ...).
        """
        check_text(query, "query")
        return self.search_batch([query], k=k, filter=filter, **options)[0]

    def search_batch(
        self, queries: Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[list[SearchResult]]:
        """:meth:`search` for many queries at once (one encoder pass, one scoring pass)."""
        if isinstance(queries, str):
            raise InvalidInputError("queries must be a list of str; use search() for a single query.")
        queries = check_texts(queries, "queries", allow_empty=False)
        k = check_k(k)
        tree = check_filter(filter)
        options = check_search_options(options, self.search_options)
        config = getattr(self.index, "search_config", None)
        if options and config is not None:
            config = dataclasses.replace(config, **options)  # validates the values
        if not queries:
            return []
        vectors = self.encoder.encode_queries(queries)
        with self._lock:
            saved = getattr(self.index, "search_config", None)
            if options:
                self.index.search_config = config  # type: ignore[attr-defined]
            try:
                hits = self.index.search(vectors, k=k, filter=tree)
            finally:
                if options:
                    self.index.search_config = saved  # type: ignore[attr-defined]
            return [[SearchResult(h.id, h.score, self._texts[h.id], h.metadata) for h in row] for row in hits]

    def get(self, ids: Sequence[str]) -> list[SearchResult]:
        """Stored documents by id (score 0.0), in the order asked; unknown ids are skipped."""
        ids = check_ids(ids, "ids", unique=False)
        with self._lock:
            return [SearchResult(i, 0.0, self._texts[i], self.index.metadata(i)) for i in ids if i in self._texts]

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents; ids not in the store (and repeats) are ignored."""
        ids = list(dict.fromkeys(check_ids(ids, "ids", unique=False)))
        with self._lock:
            self._remove_present(ids)

    def save(self, path: str | Path) -> None:
        """Write the store (index, texts, model reference and fingerprint) to the folder ``path`` atomically.

        A crash at any point leaves the previous save or this one, complete (see ``Guarantees`` in the README).
        """
        with self._lock, _io.atomic_directory(path) as tmp:
            self.index.save(tmp / "index")
            _io.write_jsonl(tmp / "texts.jsonl", ({"id": i, "text": self._texts[i]} for i in self.index.ids))
            _io.write_manifest(
                tmp,
                _STORE_KIND,
                _STORE_VERSION,
                model=_model_reference(self.encoder.name_or_path),
                encoder_config=asdict(self.encoder.config),
                dim=self.encoder.dim,
                n_documents=len(self),
                fingerprint=self.encoder.fingerprint.to_dict(),
            )

    @classmethod
    def load(
        cls,
        path: str | Path,
        encoder: ColBERTEncoder | None = None,
        *,
        model: str | Path | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        allow_model_mismatch: bool = False,
        **index_options: Any,
    ) -> LateInteractionStore:
        """Read a store written by :meth:`save`.

        The encoder's fingerprint (weights and document settings) must match the one recorded at save
        time, else :class:`ModelMismatchError`.

        Args:
            encoder: reuse an already loaded encoder; by default the recorded model is loaded with the
                recorded encoder settings.
            model: load this checkpoint (folder or Hub id) instead of the recorded one, e.g. when the
                model folder has moved; it must be the same model.
            device: device for the loaded encoder (unless ``encoder`` is given) and the index.
            precision: precision of the loaded encoder (see :meth:`ColBERTEncoder.from_pretrained`; the
                fingerprint does not depend on it).
            allow_model_mismatch: load even when the model differs (a warning instead of the error).
            **index_options: passed to the index constructor (e.g. ``device``).
        """
        if encoder is not None and (model is not None or precision is not None):
            raise InvalidInputError("pass either encoder or model / precision to LateInteractionStore.load, not both.")
        loaded: list[ColBERTEncoder] = [encoder] if encoder is not None else []

        def read(folder: Path) -> LateInteractionStore:
            sources = {"model": model, "device": device, "precision": precision}
            return cls._load_folder(folder, loaded, sources, allow_model_mismatch, dict(index_options))

        return _io.read_consistently(path, read)

    @classmethod
    def _load_folder(
        cls,
        folder: Path,
        loaded: list[ColBERTEncoder],
        sources: dict[str, Any],
        allow_model_mismatch: bool,
        index_options: dict[str, Any],
    ) -> LateInteractionStore:
        manifest = _io.read_manifest(folder, [_STORE_KIND], max_version=_STORE_VERSION)
        where = f"The store at {str(folder)!r}"
        if not loaded:  # loaded once, kept if the folder is replaced under us and read again
            loaded.append(load_recorded_encoder(manifest, where=where, **sources))
        encoder = loaded[0]
        if encoder.dim != manifest["dim"]:
            message = (
                f"{where} was built with {manifest['model']!r} ({manifest['dim']}-d) but the encoder gives "
                f"{encoder.dim}-d vectors; load it with the same model."
            )
            raise ModelMismatchError(message)
        recorded = manifest.get("fingerprint")
        try:
            ModelFingerprint.from_dict(recorded) if recorded is not None else None
        except (ValueError, TypeError, OverflowError) as exc:
            raise CorruptIndexError(f"{folder / _io.MANIFEST}: field 'fingerprint' is malformed ({exc}).") from exc
        check_fingerprint(recorded, encoder.fingerprint, where=where, allow_mismatch=allow_model_mismatch)
        if sources["device"] is not None:
            index_options.setdefault("device", sources["device"])
        store = cls(encoder, load_index(folder / "index", **index_options))
        store._texts = read_texts(folder, store.index, manifest)
        return store

    def __repr__(self) -> str:
        return f"LateInteractionStore({self.encoder!r}, {type(self.index).__name__}, n_documents={len(self)})"


def _encode_documents(encoder: ColBERTEncoder, texts: list[str], batch_size: int, bar: Any) -> list[torch.Tensor]:
    """``encoder.encode_documents(texts)``, moving ``bar`` (counted in documents) after every encoded batch."""
    if not texts:
        return []
    moved = 0

    def progress(encoded: int, total: int) -> None:  # counts model inputs: windows in window mode
        nonlocal moved
        step = len(texts) * encoded // total - moved
        bar.update(step)
        moved += step

    return encoder.encode_documents(texts, batch_size=batch_size, progress_callback=progress)


def check_documents(
    texts: Sequence[str],
    metadatas: Sequence[Metadata | None] | None,
    ids: Sequence[str] | None,
    index: Index | None = None,
) -> tuple[list[str], list[str], list[Metadata]]:
    """Validate documents before any work: returns ``(texts, ids, metadata dicts)``; ids default to new UUID4 hex.

    Checks that texts are a list of valid UTF-8 str (empty ones are legal: they encode to their
    marker tokens), one id (non-empty, unique, valid UTF-8 str) and one JSON-serialisable metadata
    dict with str keys (or None) per text, and, given ``index``, that no id is in it already.
    Messages name the argument: ``texts[i]``, ``ids[i]``, ``metadatas[i]``.
    """
    texts = check_texts(texts, "texts")
    ids = [uuid.uuid4().hex for _ in texts] if ids is None else check_ids(ids, "ids")
    if len(ids) != len(texts):
        raise InvalidInputError(f"Got {len(texts)} texts but {len(ids)} ids; pass one id per text.")
    metas = check_metadatas(metadatas, len(texts), "metadatas")
    if index is not None:
        index.check_new(ids)
    return texts, ids, metas


def read_texts(folder: Path, index: Index, manifest: Mapping[str, Any]) -> dict[str, str]:
    """The texts of a saved store, checked against its loaded ``index`` and manifest."""
    texts_path = folder / "texts.jsonl"
    rows = _io.read_jsonl(texts_path, {"id": "str", "text": "str"})
    texts = {r["id"]: r["text"] for r in rows}
    if len(texts) != len(rows) or set(texts) != set(index.ids):
        raise CorruptIndexError(f"{texts_path} and the index list different documents; the store is damaged.")
    if len(index) != manifest["n_documents"]:
        raise CorruptIndexError(
            f"{folder}: field 'n_documents' of the manifest says {manifest['n_documents']} but the index holds "
            f"{len(index)}; the store is damaged."
        )
    return texts


def load_recorded_encoder(
    manifest: Mapping[str, Any],
    *,
    model: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    where: str,
) -> ColBERTEncoder:
    """The encoder a saved store records (model and settings), or ``model`` with the recorded settings.

    A recorded local folder that no longer exists raises :class:`ModelLoadError` saying how to point
    the store at the model's new place.
    """
    recorded = manifest["model"]
    if model is None and Path(recorded).is_absolute() and not Path(recorded).exists():
        raise ModelLoadError(
            f"{where} was built with the model folder {recorded!r}, which no longer exists. If the model has "
            "moved, pass its new place: model=... (Python), --model or the LATEINT_MODEL environment variable "
            "(command line)."
        )
    try:
        options = _config(manifest)
    except (TypeError, ValueError) as exc:
        raise CorruptIndexError(f"{where}: field 'encoder_config' of the manifest is malformed ({exc}).") from exc
    try:
        if precision is not None:
            options["precision"] = precision
        return ColBERTEncoder.from_pretrained(model if model is not None else recorded, device=device, **options)
    except (InvalidInputError, TypeError) as exc:
        if isinstance(exc, ModelMismatchError):
            raise
        raise CorruptIndexError(f"{where}: field 'encoder_config' of the manifest is malformed ({exc}).") from exc


def _model_reference(name_or_path: str) -> str:
    """An absolute path for local folders (so the store loads from any directory), else the Hub id."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else name_or_path


def _config(manifest: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(manifest.get("encoder_config") or {})
    if "skiplist_words" in config:
        if not isinstance(config["skiplist_words"], list):
            raise TypeError("skiplist_words must be a list")
        config["skiplist_words"] = tuple(config["skiplist_words"])
    return config
