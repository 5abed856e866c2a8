"""Bytes -> items and result -> bytes for every signal and encoding (``collector.decode.wire``)."""

from __future__ import annotations

import json

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb

from collector.decode import wire
from collector.errors import Kind, PermanentError
from collector.model import Encoding, IngestResult, Signal

WANTED = frozenset({"gen_ai.request.model"})


def test_unreadable_bodies_are_permanent_errors_with_the_reason() -> None:
    with pytest.raises(PermanentError, match=r"^malformed protobuf: ") as protobuf:
        list(wire.spans(Encoding.PROTOBUF, b"\xff\xff\xff", WANTED))
    with pytest.raises(PermanentError, match=r"^malformed JSON: ") as text:
        wire.gateway(b"{not json")
    with pytest.raises(PermanentError) as structure:  # raised while the items are walked
        list(wire.spans(Encoding.JSON, b'{"resourceSpans": {"not": "a list"}}', WANTED))
    assert structure.value.message == (
        "malformed OTLP/JSON: resourceSpans: expected an array, got dict")
    assert {protobuf.value.kind, text.value.kind, structure.value.kind} == {Kind.INVALID}


def test_a_gateway_push_is_one_object_or_a_list() -> None:
    assert wire.gateway(b'{"model": "m"}') == [{"model": "m"}]
    assert wire.gateway(b'[{"model": "a"}, {"model": "b"}]') == [{"model": "a"}, {"model": "b"}]


def test_answers_carry_partial_success_only_when_something_was_rejected() -> None:
    clean = IngestResult(3, 0, "")
    partial = IngestResult(3, 2, "model: missing; model: missing")
    assert wire.answer(Signal.TRACES, Encoding.JSON, clean) == b"{}"
    assert json.loads(wire.answer(Signal.TRACES, Encoding.JSON, partial)) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": partial.message}}
    response = mpb.ExportMetricsServiceResponse()
    response.ParseFromString(wire.answer(Signal.METRICS, Encoding.PROTOBUF, partial))
    assert (response.partial_success.rejected_data_points,
            response.partial_success.error_message) == (2, partial.message)  # fmt: skip
    assert json.loads(wire.answer(Signal.GATEWAY, Encoding.JSON, partial)) == {
        "accepted": 3, "rejected": 2, "message": partial.message}


def test_an_error_body_is_a_google_rpc_status_in_the_request_encoding() -> None:
    assert json.loads(wire.status_body(Encoding.JSON, 8, "too many")) == {
        "code": 8, "message": "too many"}
    status = status_pb2.Status()
    status.ParseFromString(wire.status_body(Encoding.PROTOBUF, 14, "shutting down"))
    assert (status.code, status.message) == (14, "shutting down")
