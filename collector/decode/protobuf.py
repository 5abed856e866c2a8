"""Walk protobuf OTLP requests into neutral items.

Only attributes the mapping can read are decoded for spans (``wanted``): the walk is the hot
path, and most span attributes are not usage. Metric points keep all attributes, since every
one of them is part of the stream identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector.decode.items import Attrs, PointItem, SpanItem, Unread


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return all_attrs(value.kvlist_value.values)
    return getattr(value, kind)


def all_attrs(kvs: Iterable[KeyValue]) -> Attrs:
    return {kv.key: any_value(kv.value) for kv in kvs}


_SCALARS = frozenset({"string_value", "int_value", "bool_value", "double_value", "bytes_value"})


def wanted_attrs(kvs: Iterable[KeyValue], wanted: frozenset[str]) -> Attrs:
    # The hot loop of span decoding: scalar values are read inline, without a call each.
    out: Attrs = {}
    for kv in kvs:
        key = kv.key
        if key in wanted:
            value = kv.value
            kind = value.WhichOneof("value")
            out[key] = getattr(value, kind) if kind in _SCALARS else any_value(value)
    return out


def spans(request: ExportTraceServiceRequest, wanted: frozenset[str]) -> Iterator[SpanItem]:
    for resource_spans in request.resource_spans:
        resource = wanted_attrs(resource_spans.resource.attributes, wanted)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield SpanItem(
                    resource,
                    wanted_attrs(span.attributes, wanted),
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.name,
                )


_READ_KINDS = frozenset({"sum", "histogram"})


def points(
    request: ExportMetricsServiceRequest, names: frozenset[str]
) -> Iterator[PointItem | Unread]:
    """Points of the metrics named in ``names``; the points of other metrics (and of gauges,
    summaries, exponential histograms) only counted, as ``Unread``."""
    for resource_metrics in request.resource_metrics:
        resource: Attrs | None = None
        for scope_metrics in resource_metrics.scope_metrics:
            scope = (scope_metrics.scope.name, scope_metrics.scope.version)
            for metric in scope_metrics.metrics:
                data = metric.WhichOneof("data")
                if metric.name not in names or data not in _READ_KINDS:
                    if data is not None:
                        yield Unread(len(getattr(metric, data).data_points))
                    continue
                if resource is None:
                    resource = all_attrs(resource_metrics.resource.attributes)
                yield from _metric_points(resource, scope, metric)


def log_records(request: ExportLogsServiceRequest) -> Iterator[Unread]:
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            yield Unread(len(scope_logs.log_records))


def _metric_points(resource: Attrs, scope: tuple[str, str], metric: Any) -> Iterator[PointItem]:
    data = metric.WhichOneof("data")
    if data == "sum":
        temporality = metric.sum.aggregation_temporality
        for p in metric.sum.data_points:
            value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
            yield PointItem(
                resource, scope, metric.name, metric.unit, "sum", temporality,
                all_attrs(p.attributes), p.start_time_unix_nano, p.time_unix_nano,
                value, 0, p.flags,
            )  # fmt: skip
    elif data == "histogram":
        temporality = metric.histogram.aggregation_temporality
        for h in metric.histogram.data_points:
            yield PointItem(
                resource, scope, metric.name, metric.unit, "histogram", temporality,
                all_attrs(h.attributes), h.start_time_unix_nano, h.time_unix_nano,
                h.sum, h.count, h.flags,
            )  # fmt: skip
