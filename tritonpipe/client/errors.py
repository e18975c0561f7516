"""Map tritonclient's exceptions (HTTP status codes, gRPC status names) onto tritonpipe's tree."""

from __future__ import annotations

from tritonclient.utils import InferenceServerException

from tritonpipe.errors import (
    ClientError,
    InvalidArgument,
    ModelNotFound,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)
from tritonpipe.server.options import TOKEN_HINT

_BY_STATUS: dict[str, type[ClientError]] = {
    "400": InvalidArgument,
    "StatusCode.INVALID_ARGUMENT": InvalidArgument,
    "404": ModelNotFound,
    "StatusCode.NOT_FOUND": ModelNotFound,
    "401": Unauthorized,
    "403": Unauthorized,
    "StatusCode.UNAUTHENTICATED": Unauthorized,
    "StatusCode.PERMISSION_DENIED": Unauthorized,
    "429": Unavailable,
    "502": Unavailable,
    "503": Unavailable,
    "StatusCode.UNAVAILABLE": Unavailable,
    "StatusCode.RESOURCE_EXHAUSTED": Unavailable,
    "504": RequestTimeout,
    "StatusCode.DEADLINE_EXCEEDED": RequestTimeout,
}


def map_error(exc: BaseException, context: str) -> ClientError:
    """A ClientError subclass for ``exc``, keeping the server's message after ``context``."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, InferenceServerException):
        message = exc.message() or str(exc)
        status = str(exc.status() or "")
        kind = _BY_STATUS.get(status, ClientError)
        lowered = message.lower()
        if "unknown model" in lowered or "is not found" in lowered:
            kind = ModelNotFound
        elif "not authorized" in lowered or "unauthorized" in lowered or "restricted" in lowered:
            kind = Unauthorized
        elif "deadline exceeded" in lowered or "timed out" in lowered or "timeout" in lowered:
            kind = RequestTimeout
        elif kind is ClientError and (
            "connection refused" in lowered
            or "failed to connect" in lowered
            or "unavailable" in lowered
            or "not ready" in lowered
        ):
            kind = Unavailable
        if kind is Unauthorized and "TRITONPIPE_TOKEN" not in message:
            message += f"; {TOKEN_HINT}"
        return kind(f"{context}: {message}")
    if isinstance(exc, TimeoutError):
        return RequestTimeout(f"{context}: no answer within the timeout")
    if isinstance(exc, ConnectionError | OSError):
        return Unavailable(f"{context}: {exc}")
    return ClientError(f"{context}: {type(exc).__name__}: {exc}")
