"""Reports -> row dictionaries, and the in-memory rollup of a transaction's new reports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

from collector.fingerprint import digest
from collector.report import Reject, UsageReport
from collector.rules import RollupKey, ms_to_datetime, resolve_tokens, rollup_key, usage_instant_ms

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


def _counts(report: UsageReport) -> dict[str, int]:
    prompt, completion = resolve_tokens(report)
    return {
        "prompt_token_count": prompt,
        "completion_token_count": completion,
        "prompt_cached_token_count": report.input_cached_token,
        "prompt_cache_write_token_count": report.cache_write_input_token,
        "completion_reasoning_token_count": report.reasoning_output_token,
        "request_count": report.request_count,
    }


def detail_row(report: UsageReport, tz: tzinfo) -> dict[str, Any]:
    at = _naive_utc(usage_instant_ms(report))
    return {
        **_identity(report, tz),
        **_counts(report),
        "dedup_key": report.dedup_key,
        "cluster_id": report.cluster_id,
        "total_token_count": report.total_token,
        "completed": report.completed,
        "output_chunk_count": report.output_chunk_count,
        "request_content_bytes": report.request_content_bytes,
        "stream": report.stream,
        "estimated": report.estimated,
        "source": report.source.value,
        "request_id": report.request_id,
        "started_at": _naive_utc(report.started_at),
        "completed_at": _naive_utc(report.completed_at),
        "created_at": at,
        "updated_at": at,
    }


def rollups(
    reports: Iterable[UsageReport], tz: tzinfo, extra: tuple[str, ...], now: datetime
) -> list[dict[str, Any]]:
    """Rows to upsert, one per key, sorted by ``rollup_key`` so concurrent writers lock rows
    in the same order. Non-summed fields come from the first report of each key."""
    by_key: dict[RollupKey, dict[str, Any]] = {}
    stamp = now.astimezone(UTC).replace(tzinfo=None)
    for report in reports:
        key = rollup_key(report, tz, extra)
        counts = _counts(report)
        row = by_key.get(key)
        if row is None:
            by_key[key] = {
                **_identity(report, tz),
                **counts,
                "estimated_request_count": report.request_count if report.estimated else 0,
                "rollup_key": digest(*key[:6], key.date.isoformat(), key.extra),
                "created_at": stamp,
                "updated_at": stamp,
            }
            continue
        for name, value in counts.items():
            row[name] += value
        if report.estimated:
            row["estimated_request_count"] += report.request_count
    return sorted(by_key.values(), key=lambda row: row["rollup_key"])


def reject_row(reject: Reject) -> dict[str, Any]:
    return {
        "reject_key": digest(reject.source.value, reject.reason, reject.item),
        "received_at": _naive_utc(reject.received_at),
        "source": reject.source.value,
        "reason": reject.reason,
        "item": reject.item,
    }
