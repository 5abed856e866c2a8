"""Bounds on what one request may carry, checked on decoded items before mapping.

The body size is capped by the transports (after decompression), the number of items of one
request by ingest (more refuse the whole request as too large). Here, per item: the
attributes tokenbridge reads (for spans only the keys the mapping reads are decoded, so
only those count), string and array sizes, nesting depth, and the size of every count. An item
over a bound is rejected alone (``BadValue``), like any other bad value.

Why a count bound well under 2**63: rollups add counts in SQL. With every count of a report at
most 10**12 (a million times the largest context window), about nine million such reports must
land on one rollup row in one day before a 64-bit sum could overflow; without it two reports of
2**63-1 overflow at once (PostgreSQL refuses the commit, SQLite silently turns the sum into a
float).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from collector import conventions as conv
from collector.mapping.values import BadValue
from collector.model import UsageReport

MAX_DEPTH = 16
"""Array and key-value list nesting inside one attribute value."""
COUNT_FIELDS = (*conv.TOKEN_FIELDS, "request_count", *conv.EVIDENCE_FIELDS)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Derived from ``collector.config.LimitsConfig``, which holds the defaults."""

    max_items: int
    max_attributes: int
    max_value_length: int
    max_count: int


def check_attributes(attrs: Mapping[str, Any], resource: Mapping[str, Any], limits: Limits) -> None:
    """Raise ``BadValue`` when an item's read attributes exceed the bounds."""
    count = len(attrs) + len(resource)
    if count > limits.max_attributes:
        raise BadValue(f"{count} attributes, more than {limits.max_attributes}")
    longest = limits.max_value_length
    for source in (attrs, resource):
        for key, value in source.items():
            if len(key) > longest:
                raise BadValue(f"attribute key longer than {longest}")
            kind = type(value)
            if kind is str:
                if len(value) > longest:  # the common case, inline
                    _check_value(key, value, limits, 0)
            elif value is not None and kind is not int and kind is not bool and kind is not float:
                _check_value(key, value, limits, 0)


def _check_value(key: str, value: Any, limits: Limits, depth: int) -> None:
    if isinstance(value, str | bytes):
        if len(value) > limits.max_value_length:
            raise BadValue(f"{key:.100}: value longer than {limits.max_value_length}")
        return
    if depth >= MAX_DEPTH:
        raise BadValue(f"{key:.100}: value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        if len(value) > limits.max_value_length:
            raise BadValue(f"{key:.100}: more than {limits.max_value_length} elements")
        for element in value:
            _check_value(key, element, limits, depth + 1)
    elif isinstance(value, dict):
        if len(value) > limits.max_attributes:
            raise BadValue(f"{key:.100}: more than {limits.max_attributes} entries")
        for inner_key, inner in value.items():
            _check_value(f"{key:.100}.{inner_key:.100}", inner, limits, depth + 1)


def check_report(report: UsageReport, limits: Limits) -> UsageReport:
    """The report, or ``BadValue`` when one of its counts is over ``max_count``."""
    for name in COUNT_FIELDS:
        value = getattr(report, name)
        if value > limits.max_count:
            raise BadValue(f"{name}: {value} over the limit {limits.max_count}")
    return report
