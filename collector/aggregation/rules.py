"""The seed's aggregation rules, pure: no I/O, no clock.

Each rule takes a report and settings and returns a value; callers own time and storage.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, tzinfo
from typing import NamedTuple

from collector.model import Operation, UsageReport

EXTRA_DIMENSIONS = ("model_route_id", "organization_id")
"""Report fields that configuration may add to the rollup key."""


class RollupKey(NamedTuple):
    """The rollup identity, typed: ``None``, ``0`` and ``""`` stay distinct, dots stay inside
    names. ``extra`` holds the configured extra dimensions in ``EXTRA_DIMENSIONS`` order."""

    model_id: int | None
    provider_id: int | None
    model: str
    user_id: str | None
    access_key: str | None
    operation: str | None
    date: date
    extra: tuple[int | str | None, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Estimation:
    """Partial-stream estimation ratios (GPUStack defaults 4 and 1, each at least 1)."""

    bytes_per_input_token: int = 4
    tokens_per_output_chunk: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "bytes_per_input_token", max(1, self.bytes_per_input_token))
        object.__setattr__(self, "tokens_per_output_chunk", max(1, self.tokens_per_output_chunk))


def estimate(report: UsageReport, ratios: Estimation) -> UsageReport:
    """Fill the empty token slots of an incomplete report from its partial-stream evidence.

    Only a report with ``completed=False`` is touched, and only empty slots are filled, so a
    partial value (Anthropic sends input tokens early) survives. With the default ratios 4 and 1
    and ``tokens_per_output_chunk=2``: 400 request bytes -> 100 input tokens; 10 chunks -> 20
    output tokens; total 0 -> 120. Three request bytes still make one token (``max(1, 3 // 4)``).
    """
    if report.completed:
        return report
    input_token = report.input_token
    output_token = report.output_token
    estimated = False
    if input_token <= 0 and report.request_content_bytes > 0:
        input_token = max(1, report.request_content_bytes // ratios.bytes_per_input_token)
        estimated = True
    if output_token <= 0 and report.output_chunk_count > 0:
        output_token = report.output_chunk_count * ratios.tokens_per_output_chunk
        estimated = True
    total_token = max(report.total_token, input_token + output_token)
    if not estimated and total_token == report.total_token:
        return report
    return report._replace(
        input_token=input_token,
        output_token=output_token,
        total_token=total_token,
        estimated=report.estimated or estimated,
    )


TOTAL_RESOLVED_OPERATIONS = frozenset({Operation.EMBEDDING, Operation.RERANK})


def resolve_tokens(report: UsageReport) -> tuple[int, int]:
    """(prompt, completion) to store.

    Embedding and rerank calls often report only a total: when ``total > input + output`` the
    prompt is ``total - output`` (total 50, input 0, output 0 -> prompt 50). A call counts as
    one when its operation says so or the catalog lists the model as an embedding or reranker
    model. Other calls store what was reported.
    """
    if (
        report.operation in TOTAL_RESOLVED_OPERATIONS or report.prompt_from_total
    ) and report.total_token > report.input_token + report.output_token:
        return report.total_token - report.output_token, report.output_token
    return report.input_token, report.output_token


def usage_instant_ms(report: UsageReport) -> int:
    """The report's moment in UnixMilli: ``completed_at``, else ``started_at``, else when it was
    received (absent or ``<= 0`` stamps count as absent). A stream that crosses midnight
    belongs to the day it ended."""
    if report.completed_at is not None and report.completed_at > 0:
        return report.completed_at
    if report.started_at is not None and report.started_at > 0:
        return report.started_at
    return report.received_at


def ms_to_datetime(ms: int, tz: tzinfo = UTC) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=tz)


def usage_date(report: UsageReport, tz: tzinfo) -> date:
    """The rollup day in the configured zone: 1700000000000 ms is 2023-11-14 in UTC and
    2023-11-15 in Asia/Shanghai."""
    return ms_to_datetime(usage_instant_ms(report), tz).date()


def rollup_key(
    report: UsageReport, tz: tzinfo, extra_dimensions: tuple[str, ...] = ()
) -> RollupKey:
    """The typed key a report is summed under."""
    return RollupKey(
        report.model_id,
        report.provider_id,
        report.model,
        report.user_id,
        report.access_key,
        report.operation.value if report.operation is not None else None,
        usage_date(report, tz),
        tuple(getattr(report, name) for name in extra_dimensions),
    )
