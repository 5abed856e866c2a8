"""Bytes -> items and result -> bytes for every signal and encoding (``collector.decode.wire``)."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb

from collector.decode import wire
from collector.decode.items import Unread
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
    for body in (b'"m"', b"5", b"null", b'[{"model": "a"}, 3]'):
        with pytest.raises(PermanentError, match="expected a JSON object or a list of objects"):
            wire.gateway(body)


def test_points_of_metrics_not_read_are_counted_not_decoded() -> None:
    request = mpb.ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    gauge = metrics.add(name="process.memory")
    gauge.gauge.data_points.add(as_int=1)
    gauge.gauge.data_points.add(as_int=2)
    summary = metrics.add(name="gen_ai.client.token.usage")  # a name read, a kind not read
    summary.summary.data_points.add(count=1)
    body = request.SerializeToString()
    doc = json.dumps(json_format.MessageToDict(request)).encode()
    names = frozenset({"gen_ai.client.token.usage"})
    for encoding, data in ((Encoding.PROTOBUF, body), (Encoding.JSON, doc)):
        items = list(wire.points(encoding, data, names))
        assert sum(i.count for i in items if isinstance(i, Unread)) == 3, encoding
        assert not [i for i in items if not isinstance(i, Unread)]


def test_log_records_are_counted() -> None:
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{}, {}]}, {"logRecords": [{}]}]}]}
    items = list(wire.logs(Encoding.JSON, json.dumps(doc).encode()))
    assert sum(i.count for i in items) == 3


def test_answers_carry_partial_success_only_when_something_was_rejected() -> None:
    clean = IngestResult(3, 0, "")
    partial = IngestResult(3, 2, "model: missing; model: missing", ignored=4)
    assert wire.answer(Signal.TRACES, Encoding.JSON, clean) == b"{}"
    assert json.loads(wire.answer(Signal.TRACES, Encoding.JSON, partial)) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": partial.message}}
    response = mpb.ExportMetricsServiceResponse()
    response.ParseFromString(wire.answer(Signal.METRICS, Encoding.PROTOBUF, partial))
    assert (response.partial_success.rejected_data_points,
            response.partial_success.error_message) == (2, partial.message)  # fmt: skip
    assert json.loads(wire.answer(Signal.GATEWAY, Encoding.JSON, partial)) == {
        "accepted": 3, "rejected": 2, "ignored": 4, "message": partial.message}
    # Ignored items are not rejects: OTLP's partial_success stays about rejects only.
    ignored_only = IngestResult(3, 0, "", ignored=4)
    assert wire.answer(Signal.TRACES, Encoding.JSON, ignored_only) == b"{}"
    assert wire.answer(Signal.LOGS, Encoding.PROTOBUF, ignored_only) == b""


def test_an_error_body_is_a_google_rpc_status_in_the_request_encoding() -> None:
    assert json.loads(wire.status_body(Encoding.JSON, 8, "too many")) == {
        "code": 8, "message": "too many"}
    status = status_pb2.Status()
    status.ParseFromString(wire.status_body(Encoding.PROTOBUF, 14, "shutting down"))
    assert (status.code, status.message) == (14, "shutting down")
