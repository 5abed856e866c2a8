"""Bytes in, items out; result in, bytes out: the wire side of every signal and encoding.

``spans``, ``points`` and ``gateway`` turn a request body (protobuf or JSON) into the neutral
items of ``collector.decode.items``; ``answer`` and ``status_body`` build the response body in
the request's encoding. Transports only read bytes and write these back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.decode import json as otlp_json
from collector.decode import protobuf as pb
from collector.decode.items import PointItem, SpanItem, Unread
from collector.errors import PermanentError
from collector.model import Encoding, IngestResult, Signal

M = TypeVar("M", bound=Message)


def parse(message: M, data: bytes) -> M:
    """``message`` filled from ``data``; a body protobuf cannot read is a permanent error
    with the reason (HTTP 400 / gRPC INVALID_ARGUMENT)."""
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise PermanentError(f"malformed protobuf: {exc}") from None
    return message


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None


def spans(encoding: Encoding, body: bytes, wanted: frozenset[str]) -> Iterator[SpanItem]:
    """The spans of an OTLP trace export; ``PermanentError`` (also while iterating, for a
    structural error of a JSON body) when the body is not one."""
    if encoding is Encoding.PROTOBUF:
        return pb.spans(parse(tpb.ExportTraceServiceRequest(), body), wanted)
    return otlp_json.spans(load_json(body), wanted)


def points(
    encoding: Encoding, body: bytes, names: frozenset[str]
) -> Iterator[PointItem | Unread]:
    """The points of the metrics named ``names`` in an OTLP metrics export; the points of
    the others only counted (``Unread``)."""
    if encoding is Encoding.PROTOBUF:
        return pb.points(parse(mpb.ExportMetricsServiceRequest(), body), names)
    return otlp_json.points(load_json(body), names)


def logs(encoding: Encoding, body: bytes) -> Iterator[Unread]:
    """The log records of an OTLP logs export, counted, never read."""
    if encoding is Encoding.PROTOBUF:
        return pb.log_records(parse(lpb.ExportLogsServiceRequest(), body))
    return otlp_json.log_records(load_json(body))


def gateway(body: bytes) -> list[dict[str, Any]]:
    """GPUStack's gateway push: one object or a list of them; anything else (a string, a
    number, a list holding one) is a bad request."""
    doc = load_json(body)
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if not isinstance(item, dict):
            kind = type(item).__name__
            raise PermanentError(f"expected a JSON object or a list of objects, got {kind}")
    return items


def answer(signal: Signal, encoding: Encoding, result: IngestResult) -> bytes:
    """The response body of a committed request, in the request's encoding."""
    if signal is Signal.GATEWAY:
        doc = {"accepted": result.accepted, "rejected": result.rejected,
               "ignored": result.ignored, "message": result.message}  # fmt: skip
        return json.dumps(doc).encode()
    response = otlp_response(signal, result)
    if encoding is Encoding.PROTOBUF:
        return response.SerializeToString()
    # Responses are small: the protobuf JSON printer (lowerCamelCase, 64-bit counts as
    # strings) is fine here, unlike on the ingest path.
    return json.dumps(json_format.MessageToDict(response)).encode()


_RESPONSES: dict[Signal, tuple[type[Message], str]] = {
    Signal.TRACES: (tpb.ExportTraceServiceResponse, "rejected_spans"),
    Signal.METRICS: (mpb.ExportMetricsServiceResponse, "rejected_data_points"),
    Signal.LOGS: (lpb.ExportLogsServiceResponse, "rejected_log_records"),  # records: ignored
}
"""An OTLP export's response type and its ``partial_success`` count of rejected items."""


def otlp_response(signal: Signal, result: IngestResult) -> Message:
    """The OTLP export response: ``partial_success`` only when something was rejected."""
    kind, rejected = _RESPONSES[signal]
    response = kind()
    if result.rejected:
        partial: Any = getattr(response, "partial_success")  # noqa: B009 (both types have one)
        setattr(partial, rejected, result.rejected)
        partial.error_message = result.message
    return response


def status_body(encoding: Encoding, code: int, message: str) -> bytes:
    """An OTLP/HTTP error body: a ``google.rpc.Status`` in the request's encoding."""
    if encoding is Encoding.PROTOBUF:
        return bytes(status_pb2.Status(code=code, message=message).SerializeToString())
    return json.dumps({"code": code, "message": message}).encode()
