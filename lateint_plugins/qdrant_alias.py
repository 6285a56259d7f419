"""Re-embed a Qdrant collection into a new one and switch readers over with one atomic alias swap.

Readers open the store through an alias (``QdrantLateInteractionStore(client, "docs", encoder)``
where ``docs`` is an alias, not a collection): Qdrant resolves an alias wherever a collection name is
accepted, so search, ``get`` and writes work through it. To move to another model (or another
:class:`~lateint_plugins.qdrant.CollectionConfig`), :func:`reembed_collection` copies every document
(id, text, metadata) of the collection behind the alias into a new collection, encoded with the new
encoder, checks that the copy holds exactly the source's ids, and only then points the alias at it:
deleting the old alias and creating the new one are one ``update_collection_aliases`` request, so a
reader sees either the old collection or the complete new one, never a half-built one. The old
collection is kept (roll back by pointing the alias at it again) unless ``drop_old=True``.

Example:
    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(":memory:")
    >>> QdrantLateInteractionStore(client, "docs_v1", old_encoder).add_texts(["Paris is in France."], ids=["p"])
    ['p']
    >>> reembed_collection(client, "docs", new_encoder, source="docs_v1", new_collection="docs_v2")
    'docs_v2'
    >>> QdrantLateInteractionStore(client, "docs", new_encoder).search("France", k=1)[0].id
    'p'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lateint_plugins.core._checks import check_encoder, check_k, check_text
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import InvalidInputError, LateInteractionError, require
from lateint_plugins.qdrant import (
    CollectionConfig,
    CollectionMismatchError,
    CollectionNotFoundError,
    PayloadKeys,
    QdrantLateInteractionStore,
)
from lateint_plugins.qdrant.layout import recorded_config, recorded_marker

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = ["SourceChangedError", "collection_behind", "reembed_collection"]

logger = logging.getLogger(__name__)

# The documented layout of a lateint-plugins collection (see lateint_plugins.qdrant): window 0 of each
# document is its commit point and carries the id, the text and the metadata.


class SourceChangedError(LateInteractionError, RuntimeError):
    """Documents were added to or deleted from the source while it was copied; the alias was not moved."""


def collection_behind(client: QdrantClient, alias: str) -> str | None:
    """The collection ``alias`` points to, or ``None`` when no alias has that name."""
    alias = check_text(alias, "alias")
    for description in client.get_aliases().aliases:
        if description.alias_name == alias:
            return str(description.collection_name)
    return None


def reembed_collection(
    client: QdrantClient,
    alias: str,
    encoder: ColBERTEncoder,
    *,
    source: str | None = None,
    new_collection: str | None = None,
    config: CollectionConfig | None = None,
    batch_size: int = 32,
    read_batch_size: int = 256,
    show_progress_bar: bool = False,
    drop_old: bool = False,
) -> str:
    """Copy the documents behind ``alias`` into a new collection encoded by ``encoder``, then swap the alias.

    Args:
        client: the ``QdrantClient`` holding the collections (``":memory:"``, ``path=`` or ``url=``).
        alias: the alias readers use. When it exists, the collection it points to is the source. The
            first time (no such alias yet) pass ``source``: the alias is created at the end. Qdrant does
            not let an alias take the name of an existing collection, so a collection read by name must
            be given a new alias name (readers then switch to the alias once).
        encoder: the encoder of the new collection (recorded in it, like any
            :class:`~lateint_plugins.qdrant.QdrantLateInteractionStore`).
        source: the collection to read; default the one behind ``alias``. When ``alias`` exists,
            ``source`` must be that collection or ``None``.
        new_collection: the new collection's name; default ``"<alias>-<UTC timestamp>"``. When it
            already exists (an earlier run was interrupted) the run resumes: it must hold the same model,
            documents are re-written (upserts) and ids no longer in the source are deleted.
        config: layout of the new collection (:class:`~lateint_plugins.qdrant.CollectionConfig`);
            default the source's recorded layout (pooled vectors, lexical, payload keys and indexes).
        batch_size: texts encoded and written per step (memory stays flat).
        read_batch_size: points read from the source per scroll request.
        show_progress_bar: draw a tqdm bar over the documents copied.
        drop_old: delete the source collection after the swap (default: keep it, to roll back).

    Returns:
        The name of the new collection, which ``alias`` now points to.

    Raises:
        InvalidInputError: bad arguments, ``alias`` names a collection, or ``source`` contradicts it.
        CollectionNotFoundError: no source collection (``alias`` does not exist and ``source`` is None,
            or ``source`` does not exist).
        CollectionMismatchError: the source was not written by lateint-plugins.
        ModelMismatchError, DimensionMismatchError: ``new_collection`` exists and holds another
            model's vectors (from :class:`~lateint_plugins.qdrant.QdrantLateInteractionStore`).
        SourceChangedError: documents were added to or deleted from the source while it was copied
            (the alias is left untouched; run again with the same ``new_collection`` to catch up).

    Writes made to the source while it is copied are not carried over by the copy: stop writers, or
    run again with ``new_collection`` set to the returned name to copy what changed. Encoding dominates
    the run time (one ``encode_documents`` pass over every text).
    """
    require("qdrant_client", "qdrant")
    from qdrant_client import models

    alias = check_text(alias, "alias")
    encoder = check_encoder(encoder)
    batch_size = check_k(batch_size, "batch_size")
    read_batch_size = check_k(read_batch_size, "read_batch_size")
    if config is not None and not isinstance(config, CollectionConfig):
        raise InvalidInputError(f"config must be a CollectionConfig or None, got {type(config).__name__}.")
    source = _source(client, alias, None if source is None else check_text(source, "source"))
    target = _target_name(client, alias, source, new_collection)

    layout = recorded_config(recorded_marker(client.get_collection(source)))
    if layout.token_layout == "plaid" and not layout.codec_training_tokens:  # recorded before layout 5
        # A new collection: its codec is trained once enough documents are copied, not on the first batch.
        layout = replace(layout, codec_training_tokens=CollectionConfig().codec_training_tokens)
    store = QdrantLateInteractionStore(client, target, encoder, config=config or layout)
    n_source = int(client.count(source, count_filter=_first_windows(), exact=True).count)
    logger.info("Re-embedding %d documents of %r into %r", n_source, source, target)
    copied: set[str] = set()
    bar = _progress(n_source, show_progress_bar)
    try:
        for ids, texts, metadatas in _read(client, source, read_batch_size, layout.payload_keys):
            store.add_texts(texts, metadatas, ids, batch_size=batch_size, replace=True)  # a rerun resumes
            copied.update(ids)
            bar.update(len(ids))
    finally:
        bar.close()

    stale = sorted(set(store.ids()) - copied)
    if stale:  # a resumed run: documents deleted from the source since the first attempt
        store.delete(stale)
    n_now = int(client.count(source, count_filter=_first_windows(), exact=True).count)
    if len(store) != len(copied) or n_now != len(copied):
        raise SourceChangedError(
            f"Collection {source!r} changed while it was copied ({len(copied)} documents copied, it now holds "
            f"{n_now}); the alias {alias!r} is unchanged. Stop writers and call again with "
            f"new_collection={target!r} to copy what changed."
        )

    operations: list[Any] = []
    if collection_behind(client, alias) is not None:
        operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    operations.append(
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=target, alias_name=alias))
    )
    client.update_collection_aliases(change_aliases_operations=operations)  # one request: atomic swap
    logger.info("Alias %r now points to %r (was %r)", alias, target, source)
    if drop_old:
        client.delete_collection(source)
        logger.info("Deleted the old collection %r", source)
    return target


def _source(client: QdrantClient, alias: str, source: str | None) -> str:
    """The collection to copy: the one behind ``alias``, else ``source``; checked to be ours."""
    behind = collection_behind(client, alias)
    if behind is not None:
        if source is not None and source != behind:
            raise InvalidInputError(
                f"source={source!r} but the alias {alias!r} points to {behind!r}; pass source=None (or {behind!r})."
            )
        source = behind
    elif client.collection_exists(alias):
        raise InvalidInputError(
            f"alias={alias!r} is a collection, not an alias, and Qdrant cannot give an alias the name of an "
            f"existing collection; pass source={alias!r} and a new alias name (e.g. alias={alias + '-live'!r}), "
            "then point readers at that alias."
        )
    elif source is None:
        raise CollectionNotFoundError(
            f"Qdrant has no alias or collection {alias!r}; pass source= (the collection to re-embed) to create "
            "the alias."
        )
    if not client.collection_exists(source):
        raise CollectionNotFoundError(f"Qdrant has no collection {source!r} (source=); check the name.")
    if not recorded_marker(client.get_collection(source)):
        raise CollectionMismatchError(
            f"Collection {source!r} was not written by lateint-plugins (no lateint entry in its metadata); "
            "only its documents' layout can be re-embedded."
        )
    return source


def _target_name(client: QdrantClient, alias: str, source: str, new_collection: str | None) -> str:
    if new_collection is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        new_collection, n = f"{alias}-{stamp}", 1
        while client.collection_exists(new_collection):
            n += 1
            new_collection = f"{alias}-{stamp}-{n}"
        return new_collection
    new_collection = check_text(new_collection, "new_collection")
    if new_collection in (source, alias):
        raise InvalidInputError(
            f"new_collection={new_collection!r} is the source collection or the alias; pick a new name."
        )
    if collection_behind(client, new_collection) is not None:
        raise InvalidInputError(f"new_collection={new_collection!r} is an alias; pick a collection name.")
    return new_collection


def _first_windows() -> Any:
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="window", match=models.MatchValue(value=0))])


def _read(
    client: QdrantClient, source: str, page: int, keys: PayloadKeys
) -> Iterator[tuple[list[str], list[str], list[dict]]]:
    """``(ids, texts, metadatas)`` of the source's committed documents, ``page`` at a time.

    Read from the payload (not through a store, which would need the source's model to open it).
    """
    offset = None
    while True:
        points, offset = client.scroll(
            source,
            scroll_filter=_first_windows(),
            limit=page,
            offset=offset,
            with_payload=["doc_id", keys.text, keys.metadata],
            with_vectors=False,
        )
        if points:
            payloads = [p.payload or {} for p in points]
            yield (
                [str(p["doc_id"]) for p in payloads],
                [str(p.get(keys.text) or "") for p in payloads],
                [dict(p.get(keys.metadata) or {}) for p in payloads],
            )
        if offset is None:
            return


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="re-embedding", unit="doc")
