"""One exception family for everything lateint-plugins raises on purpose.

Every error names the argument (or file) at fault and says how to fix it. Catch
:class:`LateInteractionError` to handle them all; each subclass also derives from the
built-in exception a caller would naturally expect (``ValueError``, ``LookupError``,
``FileNotFoundError``, ``ImportError``), so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "CorruptIndexError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "IndexNotFoundError",
    "InvalidInputError",
    "LateInteractionError",
    "MissingDependencyError",
    "ModelLoadError",
    "ModelMismatchError",
    "UnknownIdError",
]


class LateInteractionError(Exception):
    """Base class of every error raised on purpose by lateint-plugins."""


class InvalidInputError(LateInteractionError, ValueError):
    """An argument has the wrong type, shape or value (empty text, non-str item, bad k, ...)."""


class DimensionMismatchError(InvalidInputError):
    """Embeddings do not have the dimension the index or model was built with."""


class DuplicateIdError(InvalidInputError):
    """A document id is repeated in one call, or is already in the index."""


class UnknownIdError(LateInteractionError, LookupError):
    """A document id that the index does not hold."""


class IndexNotFoundError(LateInteractionError, FileNotFoundError):
    """No saved index or store at the given path."""


class CorruptIndexError(LateInteractionError, ValueError):
    """A saved index or store exists but cannot be read (bad manifest, missing or mismatched files)."""


class ModelLoadError(LateInteractionError, OSError):
    """A checkpoint could not be found, downloaded or understood."""


class ModelMismatchError(InvalidInputError):
    """A saved index, store or collection was built with another model (or other document settings)."""


class MissingDependencyError(LateInteractionError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install 'lateint-plugins[extra]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is required for this feature but is not installed. "
            f"Install it with: pip install 'lateint-plugins[{extra}]'"
        ) from exc
