"""Walk stdlib-decoded OTLP/JSON into neutral items.

OTLP/JSON rules: lowerCamelCase keys (snake_case accepted too), trace and span ids as hex,
64-bit integers as strings or numbers, enums as integers (names accepted), unknown fields
ignored. A structural error fails the request (``Malformed``); a bad attribute is skipped.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator
from typing import Any

from collector.decode.items import Attrs, PointItem, SpanItem, Unread
from collector.errors import PermanentError


class Malformed(PermanentError):
    """The body is not an OTLP/JSON request: the whole request is refused."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"malformed OTLP/JSON: {detail}")


def _get(obj: Any, camel: str, snake: str) -> Any:
    if not isinstance(obj, dict):
        raise Malformed(f"expected an object around {camel!r}, got {type(obj).__name__}")
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _seq(obj: Any, camel: str, snake: str) -> list[Any]:
    value = _get(obj, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{camel}: expected an array, got {type(value).__name__}")
    return value


def _obj(obj: Any, camel: str, snake: str) -> dict[str, Any]:
    value = _get(obj, camel, snake)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{camel}: expected an object, got {type(value).__name__}")
    return value


def _uint(obj: Any, camel: str, snake: str) -> int:
    value = _get(obj, camel, snake)
    if value is None:
        return 0
    if isinstance(value, bool):
        raise Malformed(f"{camel}: expected an integer, got a boolean")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise Malformed(f"{camel}: expected an integer, got {value!r:.40}") from None
    if isinstance(value, float) and not value.is_integer():
        raise Malformed(f"{camel}: expected an integer, got {value!r}")
    if not 0 <= number < 2**64:
        raise Malformed(f"{camel}: {number} out of range")
    return number


_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


MAX_DEPTH = 64
"""Nested arrays and key-value lists in one value; deeper is malformed (protobuf's parser
stops at a similar depth), and the limit keeps the walk far from Python's recursion limit."""


def any_value(value: Any, depth: int = 0) -> Any:
    """An AnyValue object -> Python value; None for an empty or unreadable one."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (kind, inner), = value.items()
    if kind in ("stringValue", "string_value"):
        return inner if isinstance(inner, str) else None
    if kind in ("intValue", "int_value"):
        if isinstance(inner, bool):
            return None
        if isinstance(inner, int):
            return inner
        try:
            return int(inner) if isinstance(inner, str) else None
        except ValueError:
            return None
    if kind in ("doubleValue", "double_value"):
        if isinstance(inner, str):
            return _DOUBLES.get(inner, inner)
        return inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else None
    if kind in ("boolValue", "bool_value"):
        return inner if isinstance(inner, bool) else None
    return _composite(kind, inner, depth + 1)


def _composite(kind: str, inner: Any, depth: int) -> Any:
    if depth > MAX_DEPTH and kind in ("arrayValue", "array_value", "kvlistValue", "kvlist_value"):
        raise Malformed(f"attribute value nested deeper than {MAX_DEPTH} levels")
    if kind in ("arrayValue", "array_value") and isinstance(inner, dict):
        values = inner.get("values")
        return [any_value(v, depth) for v in values] if isinstance(values, list) else []
    if kind in ("kvlistValue", "kvlist_value") and isinstance(inner, dict):
        values = inner.get("values")
        return attrs(values, None, depth) if isinstance(values, list) else {}
    if kind in ("bytesValue", "bytes_value") and isinstance(inner, str):
        try:
            return base64.b64decode(inner, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def attrs(kvs: Any, wanted: frozenset[str] | None, depth: int = 0) -> Attrs:
    out: Attrs = {}
    if not isinstance(kvs, list):
        return out
    for kv in kvs:
        if not isinstance(kv, dict):
            continue
        key = kv.get("key")
        if not isinstance(key, str) or (wanted is not None and key not in wanted):
            continue
        out[key] = any_value(kv.get("value"), depth)
    return out


def hex_id(value: Any, size: int) -> str:
    """An OTLP/JSON id: hex as the spec says; base64 (what json_format writes) understood."""
    if not isinstance(value, str) or not value:
        return ""
    if len(value) == size * 2:
        try:
            return bytes.fromhex(value).hex()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.hex() if len(raw) == size else value


def spans(doc: Any, wanted: frozenset[str]) -> Iterator[SpanItem]:
    for resource_spans in _seq(doc, "resourceSpans", "resource_spans"):
        resource_obj = _obj(resource_spans, "resource", "resource")
        resource = attrs(resource_obj.get("attributes"), wanted)
        for scope_spans in _seq(resource_spans, "scopeSpans", "scope_spans"):
            for span in _seq(scope_spans, "spans", "spans"):
                name = _get(span, "name", "name")
                yield SpanItem(
                    resource,
                    attrs(_get(span, "attributes", "attributes"), wanted),
                    hex_id(_get(span, "traceId", "trace_id"), 16),
                    hex_id(_get(span, "spanId", "span_id"), 8),
                    _uint(span, "startTimeUnixNano", "start_time_unix_nano"),
                    _uint(span, "endTimeUnixNano", "end_time_unix_nano"),
                    name if isinstance(name, str) else "",
                )


_TEMPORALITIES = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}


def _temporality(data: dict[str, Any]) -> int:
    value = _get(data, "aggregationTemporality", "aggregation_temporality")
    if isinstance(value, str) and value in _TEMPORALITIES:
        return _TEMPORALITIES[value]
    return _uint(data, "aggregationTemporality", "aggregation_temporality")


_METRIC_KINDS = ("sum", "histogram", "gauge", "summary", "exponentialHistogram")
_SNAKE_KINDS = {"exponentialHistogram": "exponential_histogram"}


def _unread(metric: Any, read: tuple[str, ...]) -> Unread | None:
    """The data points of ``metric`` outside the kinds ``read``, counted."""
    count = 0
    for kind in _METRIC_KINDS:
        if kind not in read:
            data = _obj(metric, kind, _SNAKE_KINDS.get(kind, kind))
            count += len(_seq(data, "dataPoints", "data_points")) if data else 0
    return Unread(count) if count else None


def points(doc: Any, names: frozenset[str]) -> Iterator[PointItem | Unread]:
    """Points of the metrics named in ``names``; the points of other metrics (and of gauges,
    summaries, exponential histograms) only counted, as ``Unread``."""
    for resource_metrics in _seq(doc, "resourceMetrics", "resource_metrics"):
        resource_obj = _obj(resource_metrics, "resource", "resource")
        resource = attrs(resource_obj.get("attributes"), None)
        for scope_metrics in _seq(resource_metrics, "scopeMetrics", "scope_metrics"):
            scope_obj = _obj(scope_metrics, "scope", "scope")
            scope = (str(scope_obj.get("name") or ""), str(scope_obj.get("version") or ""))
            for metric in _seq(scope_metrics, "metrics", "metrics"):
                name = _get(metric, "name", "name")
                read = ("sum", "histogram") if name in names else ()
                if read:
                    yield from _metric_points(resource, scope, metric)
                unread = _unread(metric, read) if isinstance(metric, dict) else None
                if unread is not None:
                    yield unread


def log_records(doc: Any) -> Iterator[Unread]:
    for resource_logs in _seq(doc, "resourceLogs", "resource_logs"):
        for scope_logs in _seq(resource_logs, "scopeLogs", "scope_logs"):
            yield Unread(len(_seq(scope_logs, "logRecords", "log_records")))


def _metric_points(resource: Attrs, scope: tuple[str, str], metric: Any) -> Iterator[PointItem]:
    name = metric["name"]
    unit = metric.get("unit") if isinstance(metric.get("unit"), str) else ""
    for kind in ("sum", "histogram"):
        data = _obj(metric, kind, kind)
        if not data:
            continue
        temporality = _temporality(data)
        for p in _seq(data, "dataPoints", "data_points"):
            value, count = _point_value(p, kind)
            yield PointItem(
                resource, scope, name, unit, kind, temporality,
                attrs(_get(p, "attributes", "attributes"), None),
                _uint(p, "startTimeUnixNano", "start_time_unix_nano"),
                _uint(p, "timeUnixNano", "time_unix_nano"),
                value, count, _uint(p, "flags", "flags"),
            )  # fmt: skip


def _point_value(point: Any, kind: str) -> tuple[Any, int]:
    if kind == "histogram":
        total = _get(point, "sum", "sum")
        return (0 if total is None else total), _uint(point, "count", "count")
    as_int = _get(point, "asInt", "as_int")
    if as_int is not None:
        return as_int, 0
    as_double = _get(point, "asDouble", "as_double")
    if isinstance(as_double, str):
        as_double = _DOUBLES.get(as_double, as_double)
    return (0 if as_double is None else as_double), 0
