"""Recorded instrumentation output (``tests/fixtures/<library>-<version>/<provider>.json``).

Each fixture holds what one library exported for the calls of ``tests/fixtures/recorder/``
against the local mock API: the OTLP/JSON ``traces`` and ``metrics`` requests as recorded, with
the library's name and version. ``protobuf_traces`` gives the same request as the OTLP
exporters send it on the wire.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def load(name: str) -> dict[str, Any]:
    """``load("openlit-1.45.0/anthropic")``."""
    fixture: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return fixture


def all_names() -> list[str]:
    return sorted(str(p.relative_to(FIXTURES).with_suffix("")) for p in FIXTURES.glob("*/*.json"))


def _base64_ids(node: Any) -> Any:
    """OTLP/JSON ids are hex; protobuf's JSON parser reads bytes as base64."""
    if isinstance(node, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_KEYS else
                    _base64_ids(v)) for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [_base64_ids(v) for v in node]
    return node


def protobuf_traces(fixture: dict[str, Any]) -> ExportTraceServiceRequest:
    return json_format.ParseDict(_base64_ids(fixture["traces"]), ExportTraceServiceRequest())


def protobuf_metrics(fixture: dict[str, Any]) -> ExportMetricsServiceRequest:
    return json_format.ParseDict(_base64_ids(fixture["metrics"]), ExportMetricsServiceRequest())


def spans(fixture: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(scope name, span) of every recorded span."""
    return [(scope_spans["scope"].get("name", ""), span)
            for resource_spans in fixture["traces"].get("resourceSpans", [])
            for scope_spans in resource_spans.get("scopeSpans", [])
            for span in scope_spans.get("spans", [])]  # fmt: skip
