"""What the two OTLP transports share: parsing protobuf requests and building responses."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.errors import PermanentError
from collector.model import IngestResult

M = TypeVar("M", bound=Message)


def parse(message: M, data: bytes) -> M:
    """``message`` filled from ``data``; a body protobuf cannot read is a permanent error
    with the reason (HTTP 400 / gRPC INVALID_ARGUMENT)."""
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise PermanentError(f"malformed protobuf: {exc}") from None
    return message


def traces_response(result: IngestResult) -> tpb.ExportTraceServiceResponse:
    response = tpb.ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = result.message
    return response


def metrics_response(result: IngestResult) -> mpb.ExportMetricsServiceResponse:
    response = mpb.ExportMetricsServiceResponse()
    if result.rejected:
        response.partial_success.rejected_data_points = result.rejected
        response.partial_success.error_message = result.message
    return response


def as_json(response: Message) -> dict[str, Any]:
    """OTLP/JSON of a response (lowerCamelCase, 64-bit counts as strings); responses are
    small, so the protobuf JSON printer is fine here, unlike on the ingest path."""
    return json_format.MessageToDict(response)
