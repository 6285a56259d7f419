"""ColBERT-style late-interaction retrieval for LangChain, LlamaIndex and Qdrant.

The engine lives in :mod:`lateint_plugins.core`; its main names are re-exported here lazily,
so ``import lateint_plugins`` imports neither torch nor any framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .core import (
        ColBERTEncoder,
        ExactIndex,
        LateInteractionError,
        LateInteractionStore,
        SearchResult,
        maxsim,
        rerank,
    )

__all__ = [
    "ColBERTEncoder",
    "ExactIndex",
    "LateInteractionError",
    "LateInteractionStore",
    "SearchResult",
    "__version__",
    "maxsim",
    "rerank",
]
_EXPORTS = frozenset(__all__) - {"__version__"}  # resolved lazily from .core


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".core", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
