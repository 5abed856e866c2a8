"""Reports -> row dictionaries, and the in-memory rollup of a transaction's new reports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

from collector.fingerprint import digest
from collector.report import Reject, UsageReport
from collector.rules import (
    RollupKey,
    ms_to_datetime,
    resolve_tokens,
    usage_date,
    usage_instant_ms,
)

SUMMED = (
    "prompt_token_count",
    "completion_token_count",
    "prompt_cached_token_count",
    "prompt_cache_write_token_count",
    "completion_reasoning_token_count",
    "request_count",
    "estimated_request_count",
)


def _naive_utc(ms: int | None) -> datetime | None:
    if ms is None:
        return None
    return ms_to_datetime(ms).replace(tzinfo=None)


def _identity(report: UsageReport, tz: tzinfo) -> dict[str, Any]:
    return {
        "date": ms_to_datetime(usage_instant_ms(report), tz).date(),
        "model_id": report.model_id,
        "model_name": report.model,
        "provider_id": report.provider_id,
        "provider_name": report.provider_name,
        "provider_type": report.provider_type,
        "user_id": report.user_id,
        "access_key": report.access_key,
        "operation": report.operation.value if report.operation is not None else None,
        "model_route_id": report.model_route_id,
        "organization_id": report.organization_id,
        "user_name": report.user_name,
        "api_key_id": report.api_key_id,
        "api_key_name": report.api_key_name,
        "api_key_is_custom": report.api_key_is_custom,
        "model_route_name": report.model_route_name,
        "cluster_name": report.cluster_name,
    }


DETAIL_COLUMNS = (
    "date", "model_id", "model_name", "provider_id", "provider_name", "provider_type",
    "user_id", "access_key", "operation", "model_route_id", "organization_id",
    "prompt_token_count", "completion_token_count", "prompt_cached_token_count",
    "prompt_cache_write_token_count", "completion_reasoning_token_count", "request_count",
    "dedup_key", "cluster_id", "total_token_count", "completed", "output_chunk_count",
    "request_content_bytes", "stream", "estimated", "source", "request_id", "started_at",
    "completed_at", "created_at", "updated_at", "user_name", "api_key_id", "api_key_name",
    "api_key_is_custom", "model_route_name", "cluster_name",
)  # fmt: skip
_UTC = UTC


def detail_record(report: UsageReport, tz: tzinfo) -> tuple[Any, ...]:
    """The audit row in ``DETAIL_COLUMNS`` order (the hot path: one call per report)."""
    at = datetime.fromtimestamp(usage_instant_ms(report) / 1000.0, _UTC)
    day = (at if tz is _UTC else at.astimezone(tz)).date()
    naive = at.replace(tzinfo=None)
    prompt, completion = resolve_tokens(report)
    operation = report.operation
    return (
        day, report.model_id, report.model, report.provider_id, report.provider_name,
        report.provider_type, report.user_id, report.access_key,
        operation.value if operation is not None else None, report.model_route_id,
        report.organization_id, prompt, completion, report.input_cached_token,
        report.cache_write_input_token, report.reasoning_output_token, report.request_count,
        report.dedup_key, report.cluster_id, report.total_token, report.completed,
        report.output_chunk_count, report.request_content_bytes, report.stream,
        report.estimated, report.source.value, report.request_id,
        _naive_utc(report.started_at), _naive_utc(report.completed_at), naive, naive,
        report.user_name, report.api_key_id, report.api_key_name, report.api_key_is_custom,
        report.model_route_name, report.cluster_name,
    )  # fmt: skip


def detail_row(report: UsageReport, tz: tzinfo) -> dict[str, Any]:
    return dict(zip(DETAIL_COLUMNS, detail_record(report, tz), strict=True))


def rollups(
    reports: Iterable[UsageReport], tz: tzinfo, extra: tuple[str, ...], now: datetime
) -> list[dict[str, Any]]:
    """Rows to upsert, one per key, sorted by ``rollup_key`` so concurrent writers lock rows
    in the same order. Non-summed fields come from the first report of each key."""
    # Hot path: sums are kept in lists under a plain tuple equal to the ``RollupKey``;
    # dictionaries are built once per key, not per report.
    acc: dict[tuple[Any, ...], tuple[UsageReport, list[int]]] = {}
    for report in reports:
        operation = report.operation
        key = (
            report.model_id, report.provider_id, report.model, report.user_id,
            report.access_key, operation.value if operation is not None else None,
            usage_date(report, tz), tuple(getattr(report, n) for n in extra) if extra else (),
        )  # fmt: skip
        prompt, completion = resolve_tokens(report)
        n = report.request_count
        entry = acc.get(key)
        if entry is None:
            acc[key] = (report, [
                prompt, completion, report.input_cached_token, report.cache_write_input_token,
                report.reasoning_output_token, n, n if report.estimated else 0,
            ])  # fmt: skip
            continue
        sums = entry[1]
        sums[0] += prompt
        sums[1] += completion
        sums[2] += report.input_cached_token
        sums[3] += report.cache_write_input_token
        sums[4] += report.reasoning_output_token
        sums[5] += n
        if report.estimated:
            sums[6] += n
    stamp = now.astimezone(UTC).replace(tzinfo=None)
    rows = []
    for key, (first, sums) in acc.items():
        typed = RollupKey(*key)
        rows.append({
            **_identity(first, tz), **dict(zip(SUMMED, sums, strict=True)),
            "rollup_key": digest(*typed[:6], typed.date.isoformat(), typed.extra),
            "created_at": stamp, "updated_at": stamp,
        })  # fmt: skip
    return sorted(rows, key=lambda row: row["rollup_key"])


def reject_row(reject: Reject) -> dict[str, Any]:
    return {
        "reject_key": digest(reject.source.value, reject.reason, reject.item),
        "received_at": _naive_utc(reject.received_at),
        "source": reject.source.value,
        "reason": reject.reason,
        "item": reject.item,
    }
