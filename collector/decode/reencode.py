"""Decoded items back to what a sender sends, for rejects kept as received and replayed.

A span or a data point becomes a one-item OTLP/JSON export request (the OTLP JSON mapping:
hex ids, 64-bit integers as strings, attributes as ``{"key", "value": AnyValue}``); a gateway
object stays the object. ``collector.decode.json`` reads either back into the same item, so
``tokenbridge rejects replay`` re-ingests a reject through the normal pipeline.

Example: a span with ``gen_ai.request.model = "m"`` and no tokens is kept as::

    {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
      "traceId": "0af7...", "spanId": "b7ad...", "name": "chat m",
      "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "...",
      "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]}]}]}]}
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from collector.decode.items import PointItem, SpanItem

MAX_ITEM_CHARS = 65_536
"""Longest item text kept; a larger one is kept as ``{"truncated": <its first characters>}``
(bounded by ``limits``, a usage item is a few kilobytes)."""


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {"doubleValue": "NaN" if math.isnan(value) else
                    ("Infinity" if value > 0 else "-Infinity")}  # fmt: skip
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes | bytearray):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": attributes(value)}}
    return {}  # unreadable as sent: read back as missing


def attributes(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in attrs.items()]


def span_request(span: SpanItem) -> dict[str, Any]:
    item = {
        "traceId": span.trace_id, "spanId": span.span_id, "name": span.name,
        "startTimeUnixNano": str(span.start_ns), "endTimeUnixNano": str(span.end_ns),
        "attributes": attributes(span.attrs),
    }  # fmt: skip
    return {"resourceSpans": [{"resource": {"attributes": attributes(span.resource)},
                               "scopeSpans": [{"spans": [item]}]}]}  # fmt: skip


def point_request(point: PointItem) -> dict[str, Any]:
    data: dict[str, Any] = {
        "attributes": attributes(point.attrs), "startTimeUnixNano": str(point.start_ns),
        "timeUnixNano": str(point.time_ns), "flags": point.flags,
    }  # fmt: skip
    if point.kind == "histogram":
        data.update(sum=point.value, count=str(point.count))
    elif isinstance(point.value, float):
        data["asDouble"] = any_value(point.value)["doubleValue"]
    else:
        data["asInt"] = point.value  # a number: the decoder keeps asInt as given
    metric = {"name": point.metric, "unit": point.unit,
              point.kind: {"aggregationTemporality": point.temporality, "dataPoints": [data]}}
    scope = {"name": point.scope[0], "version": point.scope[1]}
    return {"resourceMetrics": [{"resource": {"attributes": attributes(point.resource)},
                                 "scopeMetrics": [{"scope": scope, "metrics": [metric]}]}]}


def item_json(item: object) -> str:
    """The JSON text a reject keeps for ``item`` (ASCII: any database takes it)."""
    if isinstance(item, SpanItem):
        doc: Any = span_request(item)
    elif isinstance(item, PointItem):
        doc = point_request(item)
    else:
        doc = item
    try:
        text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"), default=repr)
    except (ValueError, RecursionError):
        text = json.dumps({"unencodable": repr(item)[:MAX_ITEM_CHARS]})
    if len(text) > MAX_ITEM_CHARS:
        text = json.dumps({"truncated": text[: MAX_ITEM_CHARS - 100]})
    return text
