"""Real OpenTelemetry SDK clients for tests: spans and metrics built by the SDK, sent by its
OTLP exporters over gRPC or HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc as grpc_lib
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics import Counter, Histogram, Meter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}


def record_spans(build: Callable[[Tracer], None], resource: dict[str, Any] | None = None
                 ) -> Sequence[ReadableSpan]:  # fmt: skip
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests"))
    provider.shutdown()
    return memory.get_finished_spans()


def send_spans(spans: Sequence[ReadableSpan], *, grpc: str | None = None,
               http: str | None = None, headers: dict[str, str] | None = None,
               gzip: bool = False) -> bool:  # fmt: skip
    if grpc is not None:
        exporter: Any = GrpcSpanExporter(
            endpoint=grpc, insecure=True, headers=headers,
            compression=grpc_lib.Compression.Gzip if gzip else grpc_lib.Compression.NoCompression,
        )  # fmt: skip
    else:
        exporter = HttpSpanExporter(
            endpoint=f"{http}/v1/traces", headers=headers,
            compression=HttpCompression.Gzip if gzip else HttpCompression.NoCompression,
        )  # fmt: skip
    try:
        return bool(exporter.export(spans) == SpanExportResult.SUCCESS)
    finally:
        exporter.shutdown()


def record_metrics(build: Callable[[Meter], None], temporality: dict[type, Any] | None = None,
                   resource: dict[str, Any] | None = None) -> MetricsData:  # fmt: skip
    reader = InMemoryMetricReader(preferred_temporality=temporality or DELTA)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create(resource or {"service.name": "app"}),
    )
    build(provider.get_meter("tests"))
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def send_metrics(data: MetricsData, *, grpc: str | None = None, http: str | None = None) -> bool:
    if grpc is not None:
        exporter: Any = GrpcMetricExporter(endpoint=grpc, insecure=True)
    else:
        exporter = HttpMetricExporter(endpoint=f"{http}/v1/metrics")
    try:
        return bool(exporter.export(data) == MetricExportResult.SUCCESS)
    finally:
        exporter.shutdown()
