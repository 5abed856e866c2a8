"""The two kinds of failure, classified once and turned into status codes at the transports.

Permanent: the input is bad; resending it cannot help (HTTP 400 / gRPC INVALID_ARGUMENT).
Retryable: the bridge cannot take it now (database down, queue full, shutting down); the
sender must keep the data and resend (HTTP 503 + Retry-After / gRPC UNAVAILABLE).
"""

from __future__ import annotations


class PermanentError(Exception):
    """Bad input as a whole (malformed body, unsupported encoding)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RetryableError(Exception):
    """The bridge could not commit; nothing of the request was acknowledged."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
