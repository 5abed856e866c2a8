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


from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from google.rpc.error_details_pb2 import RetryInfo
