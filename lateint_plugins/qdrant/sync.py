"""Incremental sync between a local store and a Qdrant collection, both ways."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
from lateint_plugins.core.store import LateInteractionStore
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
    the sync is resumable. Token vectors come from an exact index without re-encoding; other
    indexes (compressed) re-encode the texts with the store's encoder. ``allow_model_mismatch``
    as in :class:`QdrantLateInteractionStore`.
    """
    if not isinstance(source, LateInteractionStore):
        raise InvalidInputError(f"source must be a LateInteractionStore, got {type(source).__name__}.")
    batch_size = check_k(batch_size, "batch_size")
    store = QdrantLateInteractionStore(client, collection_name, source.encoder, config=config,
                                       write_batch_size=batch_size,
                                       allow_model_mismatch=allow_model_mismatch)  # fmt: skip
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
    device: str | torch.device | None = None,
    show_progress_bar: bool = False,
    allow_model_mismatch: bool = False,
) -> LateInteractionStore:
    """Build a local :class:`LateInteractionStore` (exact index) from a collection: vectors, texts, metadata.

    Args:
        encoder: the collection's model; by default the model recorded in the collection is loaded.
        device: device of a loaded encoder and of the new index.
        allow_model_mismatch: as in :class:`QdrantLateInteractionStore`.

    Only committed documents are copied (see the module docstring).
    """
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
    store = LateInteractionStore(encoder, ExactIndex(encoder.dim, device=device))
    total = len(remote)
    progress = _progress(total, show_progress_bar, f"Sync from {collection_name}")
    try:
        page: list[StoredDocument] = []
        for document in remote.iter_documents(with_vectors=True):
            page.append(document)
            if len(page) >= _SCROLL_PAGE:
                _add_page(store, page)
                progress.update(len(page))
                page = []
        if page:
            _add_page(store, page)
            progress.update(len(page))
    finally:
        progress.close()
    return store


def _add_page(store: LateInteractionStore, documents: list[StoredDocument]) -> None:
    store.add_embeddings(
        [d.text for d in documents],
        [d.embedding for d in documents if d.embedding is not None],
        [d.metadata for d in documents],
        [d.id for d in documents],
    )
