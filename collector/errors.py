"""The two kinds of failure, classified once, and the one table that turns them into codes.

Permanent: the input is bad; resending it cannot help (HTTP 4xx / a gRPC code the OTLP
exporters do not retry). Retryable: the bridge cannot take it now (database down, queue full,
shutting down); the sender must keep the data and resend (HTTP 503 + Retry-After / gRPC
UNAVAILABLE + RetryInfo).

An error carries a ``Kind``, never a status number; ``STATUS`` is the only place a kind
becomes an HTTP status and a gRPC code, so both transports answer the same thing. Worked
example: a request over ``limits.max_items`` raises ``PermanentError(..., Kind.TOO_LARGE)``;
over HTTP it is ``413`` with a ``google.rpc.Status`` body of code 8, over gRPC
``RESOURCE_EXHAUSTED`` (8): the same code both ways.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from http import HTTPStatus


class RpcCode(enum.IntEnum):
    """The ``google.rpc.Code`` values the bridge answers with (same names as
    ``grpc.StatusCode``; an OTLP/HTTP error body carries the number)."""

    OK = 0
    INVALID_ARGUMENT = 3
    RESOURCE_EXHAUSTED = 8
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class Kind(enum.Enum):
    INVALID = "invalid"
    """Malformed body or request: resending the same bytes cannot help."""
    TOO_LARGE = "too large"
    """Body over the size cap, or more items than one request may hold."""
    UNSUPPORTED_MEDIA = "unsupported media"
    """A content type or content encoding the bridge does not read."""
    UNAUTHENTICATED = "unauthenticated"
    """Missing or invalid credentials."""
    UNAVAILABLE = "unavailable"
    """Retryable: database down, queue full, shutting down."""


@dataclass(frozen=True, slots=True)
class Status:
    http: HTTPStatus
    rpc: RpcCode


STATUS: dict[Kind, Status] = {
    Kind.INVALID: Status(HTTPStatus.BAD_REQUEST, RpcCode.INVALID_ARGUMENT),
    Kind.TOO_LARGE: Status(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, RpcCode.RESOURCE_EXHAUSTED),
    Kind.UNSUPPORTED_MEDIA: Status(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, RpcCode.INVALID_ARGUMENT),
    Kind.UNAUTHENTICATED: Status(HTTPStatus.UNAUTHORIZED, RpcCode.UNAUTHENTICATED),
    Kind.UNAVAILABLE: Status(HTTPStatus.SERVICE_UNAVAILABLE, RpcCode.UNAVAILABLE),
}
"""Kind -> HTTP status and gRPC code: the one table."""


class BridgeError(Exception):
    """A refusal of a whole request, with the kind that decides its status."""

    kind: Kind

    def __init__(self, message: str, kind: Kind) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind

    @property
    def status(self) -> Status:
        return STATUS[self.kind]


class PermanentError(BridgeError):
    """Bad input as a whole (malformed body, unsupported encoding, too large)."""

    def __init__(self, message: str, kind: Kind = Kind.INVALID) -> None:
        super().__init__(message, kind)


class RetryableError(BridgeError):
    """The bridge could not commit; nothing of the request was acknowledged."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, Kind.UNAVAILABLE)
        self.retry_after = retry_after
