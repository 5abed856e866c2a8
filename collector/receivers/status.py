"""Errors -> transport status codes, in one place."""

from __future__ import annotations

import math

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from google.rpc.error_details_pb2 import RetryInfo

from collector.errors import STATUS, BridgeError, Kind, RetryableError, RpcCode
from collector.telemetry import retryable_answered

RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


def grpc_status(code: RpcCode) -> grpc.StatusCode:
    """grpc's enum member of a ``google.rpc.Code`` (the same names)."""
    return grpc.StatusCode[code.name]


def grpc_code(error: BridgeError) -> grpc.StatusCode:
    if isinstance(error, RetryableError):
        retryable_answered("grpc")
    return grpc_status(error.status.rpc)


def http_status(error: BridgeError) -> int:
    if isinstance(error, RetryableError):
        retryable_answered("http")
    return int(error.status.http)


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


PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})


def otlp_error_response(content_type: str, status: int, code: int, message: str) -> web.Response:
    """An OTLP/HTTP error: a ``google.rpc.Status`` in the request's encoding (JSON otherwise)."""
    if content_type in PROTOBUF_TYPES:
        body = status_pb2.Status(code=code, message=message).SerializeToString()
        return web.Response(body=body, status=status, content_type="application/x-protobuf")
    return web.json_response({"code": code, "message": message}, status=status)
