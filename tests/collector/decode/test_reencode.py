"""A kept reject reads back as the item it was: decode(reencode(item)) == item."""

from __future__ import annotations

import json
import math

from collector.decode import json as otlp_json
from collector.decode.items import PointItem, SpanItem
from collector.decode.reencode import MAX_ITEM_CHARS, item_json

ATTRS = {"s": "x\u00e9\ud800", "i": -(2**63), "f": 0.5, "b": True, "raw": b"\x00\xff",
         "list": [1, "a", [2.5]], "map": {"k": {"n": None}}, "unreadable": None}  # fmt: skip


def test_a_span_reads_back_as_it_was() -> None:
    span = SpanItem({"service.name": "app"}, ATTRS, "0af7651916cd43dd8448eb211c80319c",
                    "b7ad6b7169203331", 1, 2**64 - 1, "chat")  # fmt: skip
    text = item_json(span)
    assert text.isascii()
    [back] = otlp_json.spans(json.loads(text), frozenset({*ATTRS, "service.name"}))
    assert back == span


def test_points_read_back_as_they_were() -> None:
    for kind, value, count in (("sum", 7, 0), ("sum", 2.5, 0), ("histogram", 12.0, 3)):
        point = PointItem({"r": 1}, ("scope", "1.0"), "app.tokens", "{token}", kind, 2,
                          {"model": "m"}, 10, 20, value, count, 0)  # fmt: skip
        [back] = otlp_json.points(json.loads(item_json(point)), frozenset({"app.tokens"}))
        assert back == point


def test_infinite_doubles_and_large_items_stay_json() -> None:
    point = PointItem({}, ("", ""), "m", "", "sum", 1, {}, 0, 0, math.inf, 0, 0)
    [back] = otlp_json.points(json.loads(item_json(point)), frozenset({"m"}))
    assert back.value == math.inf
    huge = item_json({"model": "x" * MAX_ITEM_CHARS})
    assert len(huge) <= MAX_ITEM_CHARS and set(json.loads(huge)) == {"truncated"}
