"""Incremental sync between a local store and a Qdrant collection, both ways."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar, cast

import torch

from lateint_plugins.core._checks import (
    check_k,
)
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import (
    InvalidInputError,
    require,
)
from lateint_plugins.core.index import ExactIndex
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig
from lateint_plugins.core.store import LateInteractionStore
from lateint_plugins.qdrant.codes import CodedTokens
from lateint_plugins.qdrant.errors import CollectionMismatchError, CollectionNotFoundError
from lateint_plugins.qdrant.layout import (
    _EXTRA,
    _SCROLL_PAGE,
    CollectionConfig,
    StoredDocument,
    content_hash,
    recorded_marker,
)
from lateint_plugins.qdrant.store import QdrantLateInteractionStore
from lateint_plugins.qdrant.writing import _progress

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_to_qdrant` did: ids added, updated (content changed), deleted, left unchanged."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0


def sync_to_qdrant(
    source: LateInteractionStore,
    client: QdrantClient,
    collection_name: str,
    *,
    config: CollectionConfig | None = None,
    delete_missing: bool = True,
    batch_size: int = 64,
    show_progress_bar: bool = False,
    allow_model_mismatch: bool = False,
) -> SyncReport:
    """Push a local store into a collection, incrementally: only new or changed documents are written.

    A document is unchanged when the ``content_hash`` (text + metadata) in the collection equals the
    local one; ids in the collection but not in ``source`` are deleted (``delete_missing``). Batches
    land one by one with their hashes, so re-running after an interruption writes only what is left:
    the sync is resumable. Nothing is re-encoded: token vectors come from an exact index as they
    are; a :class:`~lateint_plugins.core.plaid.PLAIDIndex`'s codes go as they are into a
    ``token_layout="plaid"`` collection (the default ``config`` for a PLAID source; the index's
    codec becomes the collection's, and a collection holding another codec is refused with
    :class:`CollectionMismatchError`). Into an fp16 collection a PLAID source's texts are
    re-encoded with the store's encoder. ``allow_model_mismatch`` as in :class:`QdrantLateInteractionStore`.
    """
    if not isinstance(source, LateInteractionStore):
        raise InvalidInputError(f"source must be a LateInteractionStore, got {type(source).__name__}.")
    batch_size = check_k(batch_size, "batch_size")
    plaid = source.index if isinstance(source.index, PLAIDIndex) and source.index.codec is not None else None
    if plaid is not None and config is None:
        quantizer: Literal["pq", "rq"] = "rq" if plaid.codec.stages > 1 else "pq"
        config = CollectionConfig(token_layout="plaid", nbits=plaid.config.nbits, quantizer=quantizer)
    store = QdrantLateInteractionStore(client, collection_name, source.encoder, config=config,
                                       write_batch_size=batch_size, codec=plaid.codec if plaid else None,
                                       allow_model_mismatch=allow_model_mismatch)  # fmt: skip
    codes = plaid is not None and store.config.token_layout == "plaid"
    remote = {d.id: d.content_hash for d in store.iter_documents(with_text=False)}
    local_ids = list(source.index.ids)
    docs = {r.id: r for r in source.get(local_ids)}
    todo = [i for i in local_ids if remote.get(i) != content_hash(docs[i].text, docs[i].metadata)]
    deleted = [i for i in remote if i not in docs] if delete_missing else []
    embeddings = source.index.embeddings() if isinstance(source.index, ExactIndex) else None
    position = {doc_id: p for p, doc_id in enumerate(local_ids)}
    progress = _progress(len(todo), show_progress_bar, f"Sync to {collection_name}")
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            texts = [docs[i].text for i in chunk]
            if codes:
                coded = plaid.document_codes(chunk)  # type: ignore[union-attr]
                store.add_codes(texts, [c for c, _ in coded], [r for _, r in coded], [docs[i].metadata for i in chunk],
                                chunk, codec=plaid.codec, replace=True)  # type: ignore[union-attr]  # fmt: skip
                progress.update(len(chunk))
                continue
            if embeddings is not None:
                vectors = [embeddings[position[i]] for i in chunk]
            else:
                vectors = source.encoder.encode_documents(texts, batch_size=batch_size)
            store.add_embeddings(texts, vectors, [docs[i].metadata for i in chunk], chunk, replace=True)
            progress.update(len(chunk))
    finally:
        progress.close()
    if deleted:
        store.delete(deleted)
    report = SyncReport(
        added=[i for i in todo if i not in remote],
        updated=[i for i in todo if i in remote],
        deleted=deleted,
        unchanged=len(local_ids) - len(todo),
    )
    logger.info("Synced %r: %d added, %d updated, %d deleted, %d unchanged", collection_name, len(report.added),
                len(report.updated), len(report.deleted), report.unchanged)  # fmt: skip
    return report


sync = sync_to_qdrant
"""Alias of :func:`sync_to_qdrant`, the name the issue uses."""


def sync_from_qdrant(
    client: QdrantClient,
    collection_name: str,
    encoder: ColBERTEncoder | None = None,
    *,
    index: Literal["exact", "plaid"] | None = None,
    search_config: SearchConfig | None = None,
    device: str | torch.device | None = None,
    show_progress_bar: bool = False,
    allow_model_mismatch: bool = False,
) -> LateInteractionStore:
    """Build a local :class:`LateInteractionStore` from a collection: vectors (or codes), texts, metadata.

    Args:
        encoder: the collection's model; by default the model recorded in the collection is loaded.
        index: ``"exact"`` (an :class:`ExactIndex` of the stored vectors; decompressed ones from a
            ``token_layout="plaid"`` collection) or ``"plaid"`` (a
            :class:`~lateint_plugins.core.plaid.PLAIDIndex`: the collection's codes and codec as
            they are, so it searches exactly as the index that was synced in; from fp16 vectors,
            one trained on them). Default: ``"plaid"`` for a collection with a codec, else ``"exact"``
            (an fp16 collection, or a ``"plaid"`` one still below ``codec_training_tokens``).
        search_config: the new PLAID index's search settings.
        device: device of a loaded encoder and of the new index.
        allow_model_mismatch: as in :class:`QdrantLateInteractionStore`.

    Only committed documents are copied (see the module docstring).
    """
    if index not in (None, "exact", "plaid"):
        raise InvalidInputError(f"index must be 'exact', 'plaid' or None, got {index!r}.")
    require("qdrant_client", _EXTRA)
    if encoder is None:
        if not client.collection_exists(collection_name):
            raise CollectionNotFoundError(f"Qdrant has no collection {collection_name!r}; check the name.")
        recorded = recorded_marker(client.get_collection(collection_name))
        if not recorded.get("model"):
            raise CollectionMismatchError(f"Collection {collection_name!r} records no model; pass encoder= explicitly.")
        encoder = ColBERTEncoder.from_pretrained(recorded["model"], device=device, **recorded.get("encoder_config", {}))
    remote = QdrantLateInteractionStore(
        client, collection_name, encoder, create=False, allow_model_mismatch=allow_model_mismatch
    )
    codec = remote.codec
    coded = codec is not None  # a "plaid" collection without a codec yet holds fp16 tokens
    kind = index or ("plaid" if coded else "exact")
    if kind == "plaid":
        if codec is not None:
            config = PLAIDConfig(nbits=codec.nbits, quantizer=codec.quantizer)
        else:
            config = PLAIDConfig(nbits=remote.config.nbits, quantizer=remote.config.quantizer or "pq")
        target = PLAIDIndex(encoder.dim, config=config, search_config=search_config, codec=codec, device=device)
        store = LateInteractionStore(encoder, target)
    else:
        store = LateInteractionStore(encoder, ExactIndex(encoder.dim, device=device))
    progress = _progress(len(remote), show_progress_bar, f"Sync from {collection_name}")
    try:
        if coded and kind == "plaid":
            for coded_page in _pages(remote.iter_codes(), _SCROLL_PAGE):
                _add_codes(store, coded_page)
                progress.update(len(coded_page))
        else:
            # A PLAID index built from an fp16 collection trains on the first page.
            for page in _pages(remote.iter_documents(with_vectors=True), _SCROLL_PAGE):
                _add_page(store, page)
                progress.update(len(page))
    finally:
        progress.close()
    return store


def _add_codes(store: LateInteractionStore, page: list[tuple[StoredDocument, CodedTokens]]) -> None:
    """Add codes as they are to ``store``'s PLAID index: its own insert path with codes for vectors."""
    with store._lock:
        docs = [d for d, _ in page]
        cast(PLAIDIndex, store.index).add_codes([d.id for d in docs], [c.codes for _, c in page],
                                                [c.residuals for _, c in page], [d.metadata for d in docs])  # fmt: skip
        store._texts.update((d.id, d.text) for d, _ in page)


def _pages(items: Iterator[T], size: int) -> Iterator[list[T]]:
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _add_page(store: LateInteractionStore, documents: list[StoredDocument]) -> None:
    store.add_embeddings(
        [d.text for d in documents],
        [d.embedding for d in documents if d.embedding is not None],
        [d.metadata for d in documents],
        [d.id for d in documents],
    )
