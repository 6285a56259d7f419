"""The Qdrant store's exceptions, and which client errors mean "the server did not answer"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lateint_plugins.core.errors import (
    InvalidInputError,
    LateInteractionError,
)

if TYPE_CHECKING:
    pass


class CollectionNotFoundError(LateInteractionError, LookupError):
    """The named Qdrant collection does not exist (and the store was asked not to create it)."""


class CollectionMismatchError(InvalidInputError):
    """The collection was written with another model, layout or pooling than this store uses."""


class QdrantUnavailableError(LateInteractionError, ConnectionError):
    """The Qdrant server could not be reached or answered with an error."""


class PartialWriteError(LateInteractionError, RuntimeError):
    """Some batches of a write did not land after retries.

    Attributes:
        written_ids: ids whose points are fully written.
        failed_ids: ids that did not land (re-run the call with them; writes are idempotent).
    """

    def __init__(self, message: str, written_ids: Sequence[str], failed_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.written_ids = list(written_ids)
        self.failed_ids = list(failed_ids)


def _unavailable(exc: Exception, what: str) -> QdrantUnavailableError:
    return QdrantUnavailableError(
        f"Qdrant could not {what}: {exc}. Check that the server is running and the url/api_key are right."
    )


def _is_transport_error(exc: Exception) -> bool:
    """Errors that mean 'the server did not answer' (not 'the request was wrong')."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import grpc

        return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        return False


def _is_server_error(exc: Exception) -> bool:
    from qdrant_client.http.exceptions import UnexpectedResponse

    return isinstance(exc, UnexpectedResponse) and exc.status_code is not None and exc.status_code >= 500
