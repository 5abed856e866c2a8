"""Bounds on a request's structure, checked on the raw bytes before they are parsed.

The body cap bounds bytes, not what they become: 64 MiB of protobuf ``0a 00`` parse into
33.5M empty ``ResourceSpans`` (2 GB and seconds of the event loop), and 64 MiB of JSON
``{},`` into 22M dicts. So every element of every repeated OTLP level (resources, scopes,
spans, events, links, metrics, data points, exemplars, log records, attributes and their
values, array and key-value list values) counts toward ``limits.max_items``, and a request
over it is refused (413) before the parser allocates anything.

Protobuf: each element takes at least two bytes (tag and length), so a body of at most
``2 * limit`` bytes cannot pass the limit and is not looked at. A longer one is bounded
cheaply first (every element starts with a length-delimited tag byte, so the bytes whose low
three bits are ``010`` are at least as many as the elements); only when that bound passes
the limit is the wire format walked, and the walk stops as soon as the count does.

JSON: every element is an object or an array, so the count of ``{`` and ``[`` bounds them
(brackets inside strings count too, which only errs towards refusing).
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.decode.items import Body
from collector.errors import Kind, PermanentError

Schema = Mapping[int, str]
"""Field number -> message type of the fields that lead to repeated elements."""

_ANY = {5: "ArrayValue", 6: "KeyValueList"}
_KV = {2: "AnyValue"}
_ATTRS_AT = {"Resource": 1, "Scope": 3, "Event": 3, "Link": 4}
TYPES: dict[str, Schema] = {
    "traces": {1: "ResourceSpans"},
    "metrics": {1: "ResourceMetrics"},
    "logs": {1: "ResourceLogs"},
    "ResourceLogs": {1: "Resource", 2: "ScopeLogs"},
    "ScopeLogs": {1: "Scope", 2: "LogRecord"},
    "LogRecord": {5: "Body", 6: "KeyValue"},
    "Body": _ANY,
    "ResourceSpans": {1: "Resource", 2: "ScopeSpans"},
    "ScopeSpans": {1: "Scope", 2: "Span"},
    "Span": {9: "KeyValue", 11: "Event", 13: "Link"},
    "ResourceMetrics": {1: "Resource", 2: "ScopeMetrics"},
    "ScopeMetrics": {1: "Scope", 2: "Metric"},
    "Metric": {5: "Points", 7: "Points", 9: "HistogramPoints", 10: "ExpPoints",
               11: "SummaryPoints", 12: "KeyValue"},
    "Points": {1: "NumberDataPoint"},
    "HistogramPoints": {1: "HistogramDataPoint"},
    "ExpPoints": {1: "ExpDataPoint"},
    "SummaryPoints": {1: "SummaryDataPoint"},
    "NumberDataPoint": {7: "KeyValue", 5: "Exemplar"},
    "HistogramDataPoint": {9: "KeyValue", 8: "Exemplar"},
    "ExpDataPoint": {1: "KeyValue", 11: "Exemplar"},
    "SummaryDataPoint": {7: "KeyValue", 6: "Quantile"},
    "Exemplar": {7: "KeyValue"},
    "KeyValue": _KV,
    "AnyValue": _ANY,
    "ArrayValue": {1: "ArrayElement"},
    "ArrayElement": _ANY,
    "KeyValueList": {1: "KeyValue"},
    **{name: {field: "KeyValue"} for name, field in _ATTRS_AT.items()},
}  # fmt: skip
SINGLE = frozenset({"Resource", "Scope", "Points", "HistogramPoints", "ExpPoints",
                    "SummaryPoints", "ArrayValue", "KeyValueList", "Body"})  # fmt: skip
"""Types that are one field of their parent, not elements of a repeated level. An attribute's
value counts with its key-value, as the two objects of an OTLP/JSON attribute do."""
_LEN_TAGS = bytes(1 if byte & 7 == 2 else 0 for byte in range(256))
_SLICE = 1 << 20
MAX_DEPTH = 100
"""protobuf's own recursion limit; deeper bodies fail to parse anyway."""


def too_many(limit: int) -> PermanentError:
    """The refusal, worded as the item count's (README "Limits" says what counts)."""
    return PermanentError(f"more than {limit} items in one request", Kind.TOO_LARGE)


def check_json(body: Body, limit: int) -> None:
    """Refuse (413) a JSON body with more than ``limit`` objects and arrays."""
    if len(body) // 2 > limit and body.count(b"{") + body.count(b"[") > limit:
        raise too_many(limit)


def check_protobuf(data: Body, root: str, limit: int) -> None:
    """Refuse (413) an OTLP ``root`` (``traces``, ``metrics`` or ``logs``) request of more than
    ``limit`` elements. Malformed bytes are left to the parser to refuse."""
    if len(data) // 2 <= limit or _len_tag_bound(data, limit) <= limit:
        return
    if count_elements(data, root, limit) > limit:
        raise too_many(limit)


def _len_tag_bound(data: Body, limit: int) -> int:
    """Bytes that could start a length-delimited field: at least the elements."""
    found = 0
    for start in range(0, len(data), _SLICE):
        found += data[start : start + _SLICE].translate(_LEN_TAGS).count(1)
        if found > limit:
            break
    return found


def count_elements(data: Body, root: str, limit: int) -> int:
    """Elements of the repeated levels in ``data``, counted until past ``limit``."""
    return _walk(data, 0, len(data), TYPES[root], 0, limit, 0)


def _walk(data: Body, pos: int, end: int, schema: Schema, depth: int, limit: int,
          count: int) -> int:  # fmt: skip
    """``count`` plus the elements in ``data[pos:end]``, a message of type ``schema``; depth
    first, so the walk holds one frame per nesting level, never one per element. One-byte
    tags and lengths (what a bomb is made of) are read inline."""
    while pos < end and count <= limit:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos)
        if tag & 7 == 2:
            pos, count = _len_field(data, pos, end, schema.get(tag >> 3), depth, limit, count)
        else:
            pos = _skip(data, pos, tag & 7)
            if pos < 0:
                break  # groups or garbage: the parser refuses it
    return count


def _len_field(data: Body, pos: int, end: int, child: str | None, depth: int, limit: int,
               count: int) -> tuple[int, int]:  # fmt: skip
    """(position after, count) of a length-delimited field of type ``child`` at ``pos``."""
    size = data[pos] if pos < end else 0
    if size < 0x80:
        pos += 1
    else:
        size, pos = _varint(data, pos)
    if child is not None:
        if child not in SINGLE:
            count += 1
        inner = TYPES.get(child)
        if inner is not None and size >= 2 and depth < MAX_DEPTH and count <= limit:
            count = _walk(data, pos, min(pos + size, end), inner, depth + 1, limit, count)
    return pos + size, count


def _skip(data: Body, pos: int, wire: int) -> int:
    """The position after a scalar field's value; -1 for a wire type OTLP never uses."""
    if wire == 0:
        return _varint(data, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    return -1


def _varint(data: Body, pos: int) -> tuple[int, int]:
    byte = data[pos] if pos < len(data) else 0
    if byte < 0x80:
        return byte, pos + 1
    value = 0
    shift = 0
    while pos < len(data) and shift < 70:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            break
        shift += 7
    return value, pos
