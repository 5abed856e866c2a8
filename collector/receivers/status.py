"""Errors -> transport answers: the one table (``collector.errors.STATUS``) read for each
transport: the gRPC status and ``RetryInfo`` trailer, the HTTP status, ``Retry-After`` and
``google.rpc.Status`` body."""

from __future__ import annotations

import math
from collections.abc import Callable

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo

from collector.decode.wire import status_body
from collector.errors import STATUS, BridgeError, Kind, RetryableError, RpcCode
from collector.model import Encoding

RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
Retryable = Callable[[str], None]
"""Counts a retryable answer given, by transport (``grpc`` or ``http``): self-telemetry."""


def uncounted(_transport: str) -> None:
    """No self-telemetry."""


def grpc_status(code: RpcCode) -> grpc.StatusCode:
    """grpc's enum member of a ``google.rpc.Code`` (the same names)."""
    return grpc.StatusCode[code.name]


def grpc_code(error: BridgeError) -> grpc.StatusCode:
    return grpc_status(error.status.rpc)


def kind_status(kind: Kind) -> tuple[int, RpcCode]:
    """The HTTP status and ``google.rpc.Code`` of ``kind``, from the one table."""
    status = STATUS[kind]
    return int(status.http), status.rpc


def retry_after_header(error: RetryableError) -> str:
    return str(max(1, math.ceil(error.retry_after)))


def grpc_trailers(error: BridgeError) -> tuple[tuple[str, bytes], ...]:
    """gRPC's Retry-After: a ``RetryInfo`` trailer, which OTLP exporters (the OTel SDKs, the
    Collector) use as their next backoff instead of their own exponential one."""
    if not isinstance(error, RetryableError):
        return ()
    delay = Duration()
    delay.FromNanoseconds(int(max(0.0, error.retry_after) * 1e9))
    return ((RETRY_INFO_KEY, RetryInfo(retry_delay=delay).SerializeToString()),)


PROTOBUF_TYPES = frozenset({Encoding.PROTOBUF, "application/protobuf"})


def encoding_of(content_type: str) -> Encoding:
    """The encoding of an answer to a request of ``content_type``: protobuf when it was
    protobuf, JSON otherwise."""
    return Encoding.PROTOBUF if content_type in PROTOBUF_TYPES else Encoding.JSON


def error_response(encoding: Encoding, error: BridgeError) -> web.Response:
    """An OTLP/HTTP refusal: status and ``google.rpc.Status`` body from the one table, and
    ``Retry-After`` when the sender should resend."""
    response = otlp_error_response(encoding, int(error.status.http), error.status.rpc,
                                   error.message)  # fmt: skip
    if isinstance(error, RetryableError):
        response.headers["Retry-After"] = retry_after_header(error)
    return response


def otlp_error_response(encoding: Encoding, status: int, code: int, message: str) -> web.Response:
    """An OTLP/HTTP error: a ``google.rpc.Status`` in the request's encoding."""
    body = status_body(encoding, code, message)
    if encoding is Encoding.PROTOBUF:
        return web.Response(body=body, status=status, content_type=encoding)
    return web.Response(body=body, status=status, content_type=encoding, charset="utf-8")
