"""Metric point -> usage sample.

Readable metrics: the ``gen_ai.client.token.usage`` histogram (tokens from ``sum`` split by
``gen_ai.token.type``; requests from ``count`` of the input series), the draft counters
``gen_ai.client.inference.usage.*`` and configured custom counters. A delta point becomes a
report at once; a cumulative point needs the stream's last value, which lives in SQL, so it
travels as a ``PointSample`` and the sink turns it into a delta inside the commit (see
``collector.aggregation.cumulative``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

from collector import conventions as conv
from collector.decode.items import FLAG_NO_RECORDED_VALUE, PointItem
from collector.mapping.fields import FieldMapper
from collector.mapping.values import BadValue, as_count
from collector.model import Ignored, PointSample, Source, UsageReport, digest

TOKEN_FIELDS = frozenset(conv.TOKEN_FIELDS) - {"total_token"}
MAX_NANOS = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class MetricRules:
    """Which metrics are read. ``custom_counters`` (name -> report field) are the user's own;
    the GenAI ones are the histogram and the draft counters of ``conventions``."""

    custom_counters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    genai_counters: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: dict(conv.DEFAULT_COUNTER_FIELDS)
    )
    token_histogram: bool = True

    @functools.cached_property
    def counters(self) -> Mapping[str, str]:
        return {**self.genai_counters, **self.custom_counters}

    @functools.cached_property
    def custom(self) -> frozenset[str]:
        return frozenset(self.custom_counters)

    @functools.cached_property
    def names(self) -> frozenset[str]:
        extra = {conv.GEN_AI_CLIENT_TOKEN_USAGE} if self.token_histogram else set()
        return frozenset(self.counters) | extra


def point_sample(
    point: PointItem, rules: MetricRules, mapper: FieldMapper, received_at: int
) -> PointSample | Ignored:
    """The point's sample, or why it carries no usage. Raises ``BadValue``."""
    if point.flags & FLAG_NO_RECORDED_VALUE:
        return Ignored.NO_RECORDED_VALUE
    field, counts_requests = _target(point, rules)
    if field is None or point.temporality not in (1, 2):
        return Ignored.UNUSED_METRIC
    if point.start_ns > MAX_NANOS or point.time_ns > MAX_NANOS:
        # Stream state and keys hold nanoseconds in signed 64-bit columns.
        raise BadValue(f"{point.metric}: timestamp past 2262 (over 2**63-1 ns)")
    value = as_count(f"{point.metric} value", point.value)
    count = as_count(f"{point.metric} count", point.count) if counts_requests else 0
    fields = mapper.extract(point.attrs, point.resource)
    model = fields.pop("model", None)
    if not model:
        raise BadValue(f"{point.metric}: model missing (gen_ai.request.model or an alias)")
    skip, operation = mapper.operation(mapper.raw("operation", point.attrs, point.resource)[1])
    if skip:
        return Ignored.REPEATS_CHILDREN
    for name in conv.TOKEN_FIELDS:
        fields.pop(name, None)
    identity = (point.resource, point.scope, point.metric, point.unit, point.attrs)
    stream_key = digest(*identity, point.start_ns if point.cumulative else None)
    template = UsageReport(
        model=model,
        source=Source.METRIC,
        dedup_key="pt:" + digest(*identity, point.start_ns, point.time_ns),
        received_at=received_at,
        started_at=point.start_ns // 1_000_000 or None,
        completed_at=point.time_ns // 1_000_000 or None,
        operation=operation,
        **{**fields, "request_count": 0, "completed": True},
    )
    return PointSample(
        stream_key, point.start_ns, point.time_ns, value, count, point.cumulative, field, template
    )


def _target(point: PointItem, rules: MetricRules) -> tuple[str | None, bool]:
    """(report field, whether the point's count is the request count)."""
    if point.kind == "sum":
        return rules.counters.get(point.metric), False
    if point.metric != conv.GEN_AI_CLIENT_TOKEN_USAGE or not rules.token_histogram:
        return None, False
    token_type = point.attrs.get(conv.GEN_AI_TOKEN_TYPE)
    if not isinstance(token_type, str):
        return None, False
    return (
        conv.TOKEN_TYPE_FIELDS.get(token_type),
        token_type == conv.REQUEST_COUNTING_TOKEN_TYPE,
    )
