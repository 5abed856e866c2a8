"""Structure bounds on raw bytes: every element of every repeated OTLP level counts, and a
bomb is refused before the parser allocates anything."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from bench.fuzz import field
from collector.decode import json as otlp_json
from collector.decode.structure import check_protobuf, count_elements
from collector.errors import PermanentError


def test_every_repeated_level_of_a_trace_request_counts() -> None:
    request = tpb.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()  # 1
    resource_spans.resource.attributes.add(key="service.name")  # 2
    scope = resource_spans.scope_spans.add()  # 3
    scope.scope.attributes.add(key="s")  # 4
    # 3 spans, each: the span, 2 attributes with their values (one an array of 2 values, one
    # of them a key-value list of one key-value), an event with an attribute, a link
    for n in range(3):
        span = scope.spans.add(name=f"s{n}")
        span.attributes.add(key="a").value.int_value = n
        array = span.attributes.add(key="b").value.array_value
        array.values.add().string_value = "x"
        array.values.add().kvlist_value.values.add(key="k")  # a value and its key-value
        span.events.add(name="e").attributes.add(key="ea")  # an event and its attribute
        span.links.add()
    assert count_elements(request.SerializeToString(), "traces", 10**9) == 4 + 3 * 11


def test_every_repeated_level_of_a_metrics_request_counts() -> None:
    request = mpb.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="m")  # 3
    point = metric.sum.data_points.add(as_int=1)  # 4
    point.attributes.add(key="a")  # 5
    point.exemplars.add().filtered_attributes.add(key="f")  # 7
    histogram = request.resource_metrics[0].scope_metrics[0].metrics.add(name="h")  # 8
    histogram.histogram.data_points.add().attributes.add(key="t")  # 10
    assert count_elements(request.SerializeToString(), "metrics", 10**9) == 10


def test_log_records_their_attributes_and_bodies_count() -> None:
    request = lpb.ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()  # 2
    for n in range(3):  # a record, an attribute and its value: 3 each (the body is a field)
        record = scope.log_records.add()
        record.body.string_value = f"r{n}"
        record.attributes.add(key="k").value.int_value = n
    assert count_elements(request.SerializeToString(), "logs", 10**9) == 2 + 3 * 3
    with pytest.raises(PermanentError, match="more than 500 items"):
        check_protobuf(field(1, field(2, b"\x12\x00" * 600)), "logs", 500)


@pytest.mark.parametrize(
    "bomb",
    [
        b"\x0a\x00" * 600,  # empty ResourceSpans
        field(1, b"\x12\x00" * 600),  # empty ScopeSpans in one ResourceSpans
        field(1, field(2, field(2, b"\x4a\x00" * 600))),  # empty attributes of one span
        field(1, field(2, field(2, field(9, field(2, field(5, b"\x0a\x00" * 600)))))),
    ],
    ids=["resources", "scopes", "attributes", "array-values"],
)
def test_a_structure_bomb_is_refused_before_parsing(bomb: bytes) -> None:
    tpb.ExportTraceServiceRequest.FromString(bomb)  # valid protobuf: the parser would take it
    with pytest.raises(PermanentError, match="more than 500 items"):
        check_protobuf(bomb, "traces", 500)
    check_protobuf(bomb, "traces", 700)


def test_a_short_body_is_not_walked_and_a_long_plain_one_passes() -> None:
    check_protobuf(b"\x0a\x00" * 500, "traces", 500)  # 1000 bytes hold at most 500 elements
    strings = tpb.ExportTraceServiceRequest()
    span = strings.resource_spans.add().scope_spans.add().spans.add()
    span.attributes.add(key="prompt").value.string_value = "bjrz" * 10_000
    check_protobuf(strings.SerializeToString(), "traces", 100)


def test_json_objects_and_arrays_count_before_the_document_is_built() -> None:
    bomb = b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + b"{}," * 999 + b"{}]}]}]}"
    with pytest.raises(PermanentError, match="more than 1000 items"):
        otlp_json.loads(bomb, 1000)
    assert len(otlp_json.loads(bomb, 1010)["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 1000
    with pytest.raises(PermanentError, match="malformed JSON"):
        otlp_json.loads(b"{" * 10, 1000)
