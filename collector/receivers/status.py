"""Errors -> transport status codes, in one place."""

from __future__ import annotations

import math

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from google.rpc.error_details_pb2 import RetryInfo

from collector.errors import PermanentError, RetryableError
from collector.telemetry import retryable_answered

HTTP_RETRYABLE = 503
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


def grpc_code(error: PermanentError | RetryableError) -> grpc.StatusCode:
    if isinstance(error, RetryableError):
        retryable_answered("grpc")
        return grpc.StatusCode.UNAVAILABLE
    if error.status == 413:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if error.status == 401:
        return grpc.StatusCode.UNAUTHENTICATED
    return grpc.StatusCode.INVALID_ARGUMENT


def http_status(error: PermanentError | RetryableError) -> int:
    if isinstance(error, RetryableError):
        retryable_answered("http")
        return HTTP_RETRYABLE
    return error.status


def retry_after_header(error: RetryableError) -> str:
    return str(max(1, math.ceil(error.retry_after)))


def grpc_trailers(error: PermanentError | RetryableError) -> tuple[tuple[str, bytes], ...]:
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
