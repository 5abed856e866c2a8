"""Neutral items produced by the OTLP decoders, whatever the wire encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Attrs = dict[str, Any]

TEMPORALITY_DELTA = 1
TEMPORALITY_CUMULATIVE = 2
FLAG_NO_RECORDED_VALUE = 1


@dataclass(slots=True)
class SpanItem:
    resource: Attrs
    attrs: Attrs
    trace_id: str
    """Lower-case hex; empty when the sender sent none."""
    span_id: str
    start_ns: int
    end_ns: int
    name: str


@dataclass(slots=True)
class PointItem:
    """One Sum or Histogram data point of a metric tokenbridge reads."""

    resource: Attrs
    scope: tuple[str, str]
    metric: str
    unit: str
    kind: str
    """``sum`` or ``histogram``."""
    temporality: int
    attrs: Attrs
    start_ns: int
    time_ns: int
    value: int | float
    """Sum points: the value; histograms: the sum of recorded values."""
    count: int
    """Histograms: how many values were recorded; sums: 0."""
    flags: int

    @property
    def cumulative(self) -> bool:
        return self.temporality == TEMPORALITY_CUMULATIVE


@dataclass(slots=True)
class Unread:
    """Items a decoder counted without decoding them: data points of a metric tokenbridge
    does not read, or log records. They are answered as ignored, never in silence."""

    count: int
