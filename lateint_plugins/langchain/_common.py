"""Helpers shared by the LangChain classes: store construction, ids, documents, search options."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch
from langchain_core.documents import Document
from pydantic import ValidationError

from ..core._checks import check_ids, check_sequence
from ..core.encoder import ColBERTEncoder
from ..core.errors import InvalidInputError, LateInteractionError
from ..core.store import DocumentStore, LateInteractionStore, SearchResult
from ..core.store import check_search_options as store_check_search_options

Model: TypeAlias = str | Path | ColBERTEncoder
"""A Hugging Face Hub id, a local checkpoint folder, or an already loaded :class:`ColBERTEncoder`."""

STORE_TYPE_MESSAGE = "store must implement DocumentStore (add_texts, search, get, delete), got {}."


def new_store(
    model: Model,
    *,
    index: str = "exact",
    device: str | torch.device | None = None,
    index_options: Mapping[str, Any] | None = None,
    encoder_options: Mapping[str, Any] | None = None,
) -> LateInteractionStore:
    """An empty :class:`LateInteractionStore` for ``model`` with a new index of kind ``index``."""
    return LateInteractionStore.from_pretrained(
        model, index=index, device=device, index_options=index_options, **dict(encoder_options or {})
    )


def fill_ids(ids: Sequence[str | None] | None, n: int) -> list[str] | None:
    """LangChain passes ``None`` for documents without an id (``Document.id``); give those a new UUID."""
    if ids is None:
        return None
    ids = check_sequence(ids, "ids", "str ids", "id")
    if len(ids) != n:
        raise InvalidInputError(f"Got {n} texts but {len(ids)} ids; pass one id (or None) per text.")
    return [uuid.uuid4().hex if i is None else i for i in ids]


def plain_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None) -> list[Any] | None:
    """The metadatas as a list (the store checks each one and names it ``metadatas[i]``)."""
    return None if metadatas is None else check_sequence(metadatas, "metadatas", "dicts", "dict")


def as_documents(documents: object, name: str = "documents") -> list[Document]:
    """``documents`` as a list of ``Document`` (anything else raises, naming ``name[i]``)."""
    items = check_sequence(documents, name, "Documents", "Document")
    for i, d in enumerate(items):
        if not isinstance(d, Document):
            raise InvalidInputError(f"{name}[{i}] must be a langchain_core Document, got {type(d).__name__}.")
    return items


def existing_ids(store: DocumentStore, ids: Sequence[str]) -> list[str]:
    """The ids of ``ids`` that ``store`` holds (each once, in order)."""
    ids = check_ids(ids, "ids", unique=False)
    present = {r.id for r in store.get(list(dict.fromkeys(ids)))}
    return [i for i in dict.fromkeys(ids) if i in present]


def all_ids(store: DocumentStore) -> list[str]:
    """Every id ``store`` holds: its ``ids()`` (the store contract), else its index's ``ids``."""
    ids = getattr(store, "ids", None)
    if callable(ids):
        return list(ids())
    if isinstance(ids, Sequence) and not isinstance(ids, str):
        return list(ids)
    index_ids = getattr(getattr(store, "index", None), "ids", None)
    if isinstance(index_ids, Sequence) and not isinstance(index_ids, str):
        return list(index_ids)
    raise InvalidInputError(
        f"{type(store).__name__} does not list its ids (no ids() method), so delete(ids=None) cannot delete "
        "everything; pass the ids to delete."
    )


def to_document(result: SearchResult, score_key: str | None = None) -> Document:
    """A LangChain ``Document`` for a stored result; ``score_key`` (when set) receives its MaxSim score."""
    metadata = dict(result.metadata)
    if score_key is not None:
        metadata[score_key] = result.score
    return Document(page_content=result.text, metadata=metadata, id=result.id)


def check_search_options(store: DocumentStore, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``options`` if ``store`` declares every one of them in ``store.search_options``; else a typed error."""
    try:
        return store_check_search_options(options, store.search_options)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{type(store).__name__}: {exc} (from {where})") from None


def save_store(store: DocumentStore, path: str | Path, holder: str, reopen: str) -> None:
    """``store.save(path)`` (atomic) for a :class:`LateInteractionStore`; other stores keep their data themselves."""
    if not isinstance(store, LateInteractionStore):
        raise InvalidInputError(
            f"save needs a LateInteractionStore, this {holder} holds a {type(store).__name__} "
            f"(Qdrant keeps its collection itself{reopen})."
        )
    store.save(path)


def init_model(parent: Any, data: dict[str, Any]) -> None:
    """``parent.__init__(**data)`` (pydantic), with its ValidationError turned into the typed error behind it."""
    try:
        parent.__init__(**data)
    except ValidationError as exc:
        for error in exc.errors():
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, LateInteractionError):
                raise cause from None
        raise InvalidInputError(str(exc)) from None
