"""Reports -> GPUStack 2.3's rows: audit rows of ``model_usage_details`` and rollups of
``model_usages`` summed on GPUStack's database merge key.

Types and NULLs as GPUStack writes them: integer ids, operation as the enum NAME
(``CHAT_COMPLETION``; NULL when the report has none, as gateway pushes never do), NULL for an
absent route, key or user (never ``0`` or ``''``: GPUStack's views read NULL as "Untracked").
Worked example: a chat report of user ``"7"`` through route 5 on 2026-12-01 is summed under
``MergeKey(model_id=1, user_id=7, provider_id=None, provider_name=None, provider_type=None,
model_name="qwen3", model_route_id=5, access_key=None, operation="CHAT_COMPLETION",
consumer_principal_id=7, date=2026-12-01)``; a second report differing only in
``organization_id`` while carrying a key lands on the same row (the key's owner is the
consumer), as GPUStack's database upsert merges them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from collector.aggregation.rules import resolve_tokens, usage_instant_ms
from collector.model import UsageReport, digest
from exporters.sql.gpustack.tables import OPERATION_NAMES
from exporters.sql.rows import RowBuilder

MAX_REPORTED_ID = 255
"""GPUStack stores a longer ``request_id`` as absent rather than truncated."""
_EPOCH = datetime(1970, 1, 1)


class MergeKey(NamedTuple):
    """GPUStack 2.3's ``create_or_update_model_usage`` lookup, typed."""

    model_id: int | None
    user_id: int | None
    provider_id: int | None
    provider_name: str | None
    provider_type: str | None
    model_name: str
    model_route_id: int | None
    access_key: str | None
    operation: str | None
    consumer_principal_id: int | None
    date: date

    def digest(self) -> str:
        return digest(*self[:-1], self.date.isoformat())


@dataclass
class Rollup:
    """One ``model_usages`` row to add: the first report's snapshot, the sums of all."""

    key: MergeKey
    snapshot: dict[str, Any]
    sums: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def add(self, prompt: int, completion: int, cached: int, requests: int) -> None:
        s = self.sums
        s[0] += prompt
        s[1] += completion
        s[2] += cached
        s[3] += requests

    def row(self) -> dict[str, Any]:
        """The row to insert when the key is new."""
        prompt, completion, cached, requests = self.sums
        return {**self.key._asdict(), **self.snapshot, "prompt_token_count": prompt,
                "completion_token_count": completion, "prompt_cached_token_count": cached,
                "request_count": requests}  # fmt: skip


DETAIL_COLUMNS = (
    "user_id", "user_name", "model_id", "model_name", "model_route_id", "model_route_name",
    "owner_principal_id", "consumer_principal_id", "provider_id", "provider_name",
    "provider_type", "cluster_id", "cluster_name", "api_key_id", "api_key_name", "access_key",
    "api_key_is_custom", "date", "prompt_token_count", "completion_token_count",
    "prompt_cached_token_count", "completed", "operation", "started_at", "completed_at",
    "created_at", "updated_at", "request_id",
)  # fmt: skip
"""The ``model_usage_details`` columns written, in the order of ``GpustackRows.detail``."""
CACHE_ENTRIES = 1 << 16


def _user_id(report: UsageReport) -> int | None:
    return int(report.user_id) if report.user_id is not None else None


def _stamp(ms: int | None) -> datetime | None:
    return _EPOCH + timedelta(milliseconds=ms) if ms is not None and ms > 0 else None


class GpustackRows:
    """Reports -> GPUStack's rows for one rollup time zone (the hot path of the commit: the
    day of each second and the digest of each merge key are memoized)."""

    def __init__(self, tz: tzinfo) -> None:
        self._days = RowBuilder(tz)
        self._digests: dict[MergeKey, str] = {}

    def merge_key(self, report: UsageReport, day: date | None = None) -> MergeKey:
        if day is None:
            day = self._days.day(usage_instant_ms(report))
        operation = OPERATION_NAMES[report.operation] if report.operation is not None else None
        return MergeKey(report.model_id, _user_id(report), report.provider_id,
                        report.provider_name, report.provider_type, report.model,
                        report.model_route_id, report.access_key, operation,
                        report.consumer_principal_id, day)  # fmt: skip

    def detail(self, report: UsageReport) -> tuple[Any, ...]:
        """The ``model_usage_details`` row (``DETAIL_COLUMNS``), created/updated at the
        report's instant."""
        prompt, completion = resolve_tokens(report)
        ms = usage_instant_ms(report)
        at = _EPOCH + timedelta(milliseconds=ms)
        request_id = report.request_id
        if request_id is not None and len(request_id) > MAX_REPORTED_ID:
            request_id = None
        operation = OPERATION_NAMES[report.operation] if report.operation is not None else None
        return (
            _user_id(report), report.user_name, report.model_id, report.model,
            report.model_route_id, report.model_route_name, report.owner_principal_id,
            report.consumer_principal_id, report.provider_id, report.provider_name,
            report.provider_type, report.cluster_id, report.cluster_name, report.api_key_id,
            report.api_key_name, report.access_key, report.api_key_is_custom,
            self._days.day(ms), prompt, completion, report.input_cached_token,
            report.completed, operation, _stamp(report.started_at),
            _stamp(report.completed_at), at, at, request_id,
        )  # fmt: skip

    def rollups(self, reports: Iterable[UsageReport]) -> dict[str, Rollup]:
        """The reports summed per merge key, by the key's digest. Non-summed fields (names,
        owner, consumer name and kind) come from the first report of each key."""
        out: dict[str, Rollup] = {}
        by_key: dict[MergeKey, Rollup] = {}
        for report in reports:
            key = self.merge_key(report)
            rollup = by_key.get(key)
            if rollup is None:
                rollup = by_key[key] = Rollup(key, {
                    "user_name": report.user_name, "api_key_id": report.api_key_id,
                    "api_key_name": report.api_key_name,
                    "api_key_is_custom": report.api_key_is_custom,
                    "model_route_name": report.model_route_name,
                    "owner_principal_id": report.owner_principal_id,
                    "cluster_name": report.cluster_name, "consumer_name": report.consumer_name,
                    "consumer_principal_kind": report.consumer_principal_kind,
                })  # fmt: skip
                out[self._digest(key)] = rollup
            prompt, completion = resolve_tokens(report)
            rollup.add(prompt, completion, report.input_cached_token, report.request_count)
        return out

    def _digest(self, key: MergeKey) -> str:
        found = self._digests.get(key)
        if found is None:
            if len(self._digests) >= CACHE_ENTRIES:
                self._digests.clear()
            found = self._digests[key] = key.digest()
        return found


def merge_key(report: UsageReport, tz: tzinfo) -> MergeKey:
    return GpustackRows(tz).merge_key(report)


def detail_row(report: UsageReport, tz: tzinfo) -> dict[str, Any]:
    return dict(zip(DETAIL_COLUMNS, GpustackRows(tz).detail(report), strict=True))


def rollups(reports: Iterable[UsageReport], tz: tzinfo) -> dict[str, Rollup]:
    return GpustackRows(tz).rollups(reports)
