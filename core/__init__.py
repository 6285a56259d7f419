"""The lateint-plugins engine: encoder, MaxSim, indexes, store, evaluation.

Importing this package is cheap: names are resolved on first use (PEP 562), so
``import lateint_plugins.core`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .encoder import DEFAULT_MODEL, ColBERTEncoder, EncoderConfig
    from .errors import (
        CorruptIndexError,
        DimensionMismatchError,
        DuplicateIdError,
        IndexNotFoundError,
        InvalidInputError,
        LateInteractionError,
        MissingDependencyError,
        ModelLoadError,
        ModelMismatchError,
        UnknownIdError,
    )
    from .evaluation import BeirDataset, document_text, evaluate, load_beir
    from .index import ExactIndex, Index, SearchHit, load_index
    from .rerank import rerank
    from .scoring import maxsim
    from .store import LateInteractionStore, SearchResult

_EXPORTS: dict[str, str] = {
    "DEFAULT_MODEL": "encoder",
    "ColBERTEncoder": "encoder",
    "EncoderConfig": "encoder",
    "CorruptIndexError": "errors",
    "DimensionMismatchError": "errors",
    "DuplicateIdError": "errors",
    "IndexNotFoundError": "errors",
    "InvalidInputError": "errors",
    "LateInteractionError": "errors",
    "MissingDependencyError": "errors",
    "ModelLoadError": "errors",
    "ModelMismatchError": "errors",
    "UnknownIdError": "errors",
    "BeirDataset": "evaluation",
    "document_text": "evaluation",
    "evaluate": "evaluation",
    "load_beir": "evaluation",
    "ExactIndex": "index",
    "Index": "index",
    "SearchHit": "index",
    "load_index": "index",
    "rerank": "rerank",
    "maxsim": "scoring",
    "LateInteractionStore": "store",
    "SearchResult": "store",
}

__all__ = [
    "DEFAULT_MODEL",
    "BeirDataset",
    "ColBERTEncoder",
    "CorruptIndexError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EncoderConfig",
    "ExactIndex",
    "Index",
    "IndexNotFoundError",
    "InvalidInputError",
    "LateInteractionError",
    "LateInteractionStore",
    "MissingDependencyError",
    "ModelLoadError",
    "ModelMismatchError",
    "SearchHit",
    "SearchResult",
    "UnknownIdError",
    "document_text",
    "evaluate",
    "load_beir",
    "load_index",
    "maxsim",
    "rerank",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
