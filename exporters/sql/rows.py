"""Reports -> staged audit rows (each with the rollup key it is summed under), and the same
rollup rule in memory (what the database computes in ``exporters.sql.staging``; the tests and
the seed-style benchmark writer use it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from operator import itemgetter
from typing import Any

from collector.aggregation.pricing.table import UNPRICED
from collector.aggregation.pricing.watch import Pricing
from collector.aggregation.rules import RollupKey, ms_to_datetime, resolve_tokens, usage_instant_ms
from collector.model import Reject, UsageReport, digest

SUMMED = (
    "prompt_token_count",
    "completion_token_count",
    "prompt_cached_token_count",
    "prompt_cache_write_token_count",
    "completion_reasoning_token_count",
    "request_count",
    "estimated_request_count",
    "unpriced_request_count",
)
IDENTITY_COLUMNS = (
    "date", "model_id", "model_name", "provider_id", "provider_name", "provider_type",
    "user_id", "access_key", "operation", "model_route_id", "organization_id", "user_name",
    "api_key_id", "api_key_name", "api_key_is_custom", "model_route_name", "cluster_name",
)  # fmt: skip
ROLLUP_COLUMNS = ("rollup_key", *IDENTITY_COLUMNS, *SUMMED, "cost", "created_at", "updated_at")
ROLLUP_SUMS = (
    *((name, f'"{name}"') for name in SUMMED[:-2]),
    ("estimated_request_count", 'CASE WHEN "estimated" THEN "request_count" ELSE 0 END'),
    ("unpriced_request_count",
     f"CASE WHEN \"cost_status\" = '{UNPRICED}' THEN \"request_count\" ELSE 0 END"),
    ("cost", '"cost"'),
)
"""Each summed rollup column as an expression over the staged audit rows (columns of
``DETAIL_COLUMNS`` hold the resolved prompt and completion already). ``sum("cost")`` skips
the unpriced rows' NULL and is NULL when no row of the group was priced."""
PICO_TO_NUMERIC = '"cost" * 0.000000000001'
"""PostgreSQL: staged pico-units -> the NUMERIC amount (an exact numeric product)."""
STAGE_MONEY = {"cost": ("bigint", PICO_TO_NUMERIC)}
"""PostgreSQL stage column -> (its type in the stage, the expression the table gets)."""
ROLLUP_MERGES = {"cost": "COALESCE({t}.cost + excluded.cost, {t}.cost, excluded.cost)"}
"""How an existing rollup takes a new sum where plain addition is wrong: NULL cost (nothing
priced yet) is no amount, not zero."""
DETAIL_COLUMNS = (
    "date", "model_id", "model_name", "provider_id", "provider_name", "provider_type",
    "user_id", "access_key", "operation", "model_route_id", "organization_id",
    "prompt_token_count", "completion_token_count", "prompt_cached_token_count",
    "prompt_cache_write_token_count", "completion_reasoning_token_count", "request_count",
    "dedup_key", "cluster_id", "total_token_count", "completed", "output_chunk_count",
    "request_content_bytes", "stream", "estimated", "source", "request_id", "started_at",
    "completed_at", "created_at", "updated_at", "user_name", "api_key_id", "api_key_name",
    "api_key_is_custom", "model_route_name", "cluster_name", "cost", "cost_status",
    "price_version",
)  # fmt: skip
_IDENTITY_AT = tuple(DETAIL_COLUMNS.index(name) for name in IDENTITY_COLUMNS)
_SUMMED_AT = tuple(DETAIL_COLUMNS.index(name) for name in SUMMED[:-2])
_REQUESTS_AT = DETAIL_COLUMNS.index("request_count")
_ESTIMATED_AT = DETAIL_COLUMNS.index("estimated")
COST_AT = DETAIL_COLUMNS.index("cost")
STATUS_AT = DETAIL_COLUMNS.index("cost_status")
_UNPRICED = (None, None, None)
"""cost, cost_status, price_version of a row when pricing is off."""
_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal",
                        "Etc/Zulu", "Zulu"})  # fmt: skip
"""IANA names of UTC itself (``ZoneInfo("UTC")`` is not ``datetime.UTC``)."""
CACHE_ENTRIES = 1 << 16
"""Bound of each memo below; a full memo is emptied (keys repeat within minutes)."""


def naive_utc(ms: int) -> datetime:
    """UnixMilli as a naive UTC datetime, in integer arithmetic (exact, and about four times
    cheaper than ``datetime.fromtimestamp(..., UTC).replace(tzinfo=None)``)."""
    return _EPOCH + _MS * ms


def _maybe_utc(ms: int | None) -> datetime | None:
    return None if ms is None else _EPOCH + _MS * ms


class RowBuilder:
    """Reports -> audit rows and rollup rows, for one time zone and set of extra dimensions.

    The hot path of the commit: one call per report. Two memos keep it cheap and exact: the
    day of each whole second in the zone (an offset is never a fraction of a second), and the
    ``rollup_key`` digest of each typed key (a day's keys repeat across batches).

    With ``pricing``, each row is priced here, at the report's instant (the one that dates
    its rollup), from the stored counts. Its ``cost`` is in integer pico-units (what SQLite
    stores; the PostgreSQL stage scales it to NUMERIC in SQL, ``STAGE_MONEY``)."""

    def __init__(
        self, tz: tzinfo = UTC, extra: tuple[str, ...] = (), pricing: Pricing | None = None
    ) -> None:
        self.tz = tz
        self.extra = extra
        self.pricing = pricing
        self._utc = tz is UTC or getattr(tz, "key", None) in _UTC_NAMES
        self._days: dict[int, date] = {}
        self._digests: dict[tuple[Any, ...], str] = {}

    def day(self, ms: int) -> date:
        """The report day in the zone of the UnixMilli ``ms``."""
        if self._utc:
            return (_EPOCH + _MS * ms).date()
        second = ms // 1000
        day = self._days.get(second)
        if day is None:
            if len(self._days) >= CACHE_ENTRIES:
                self._days.clear()
            day = self._days[second] = ms_to_datetime(second * 1000, self.tz).date()
        return day

    def staged(self, report: UsageReport) -> tuple[Any, ...]:
        """The audit row in ``DETAIL_COLUMNS`` order, then the ``rollup_key`` it is summed
        under (what the commit stages; the database sums the rollups from it)."""
        ms = usage_instant_ms(report)
        at = _EPOCH + _MS * ms
        day = at.date() if self._utc else self.day(ms)
        prompt, completion = resolve_tokens(report)
        operation = report.operation.value if report.operation is not None else None
        model_id = report.model_id
        provider_id = report.provider_id
        model = report.model
        user_id = report.user_id
        access_key = report.access_key
        key = (
            model_id, provider_id, model, user_id, access_key, operation, day,
            tuple([getattr(report, n) for n in self.extra]) if self.extra else (),
        )  # fmt: skip
        rollup_key = self._digests.get(key) or self._digest(key)
        completed_at = report.completed_at
        cached = report.input_cached_token
        write = report.cache_write_input_token
        reasoning = report.reasoning_output_token
        requests = report.request_count
        if self.pricing is None:
            cost, status, version = _UNPRICED
        else:
            cost, status, version = self.pricing.table.price(
                model, report.provider_name, report.provider_type, ms, prompt, completion,
                cached, write, reasoning, requests,
            )  # fmt: skip
        return (
            day, model_id, model, provider_id, report.provider_name, report.provider_type,
            user_id, access_key, operation, report.model_route_id, report.organization_id,
            prompt, completion, cached, write, reasoning, requests, report.dedup_key,
            report.cluster_id, report.total_token, report.completed, report.output_chunk_count,
            report.request_content_bytes, report.stream, report.estimated, report.source.value,
            report.request_id, _maybe_utc(report.started_at),
            at if completed_at == ms else _maybe_utc(completed_at), at, at, report.user_name,
            report.api_key_id, report.api_key_name, report.api_key_is_custom,
            report.model_route_name, report.cluster_name, cost, status, version, rollup_key,
        )  # fmt: skip

    def detail(self, report: UsageReport) -> tuple[Any, ...]:
        """The audit row in ``DETAIL_COLUMNS`` order."""
        return self.staged(report)[:-1]

    def rollups(self, reports: Iterable[UsageReport], now: datetime) -> list[tuple[Any, ...]]:
        """Rows in ``ROLLUP_COLUMNS`` order, one per key, sorted by ``rollup_key``: the sum
        the database computes from the staged rows (``exporters.sql.staging``), in memory
        over the same rows. Non-summed fields come from the first report of each key."""
        first: dict[str, tuple[Any, ...]] = {}
        sums: dict[str, list[int]] = {}
        costs: dict[str, Any] = {}
        for row in map(self.staged, reports):
            key = row[-1]
            values = [row[i] for i in _SUMMED_AT]
            values.append(row[_REQUESTS_AT] if row[_ESTIMATED_AT] else 0)
            values.append(row[_REQUESTS_AT] if row[STATUS_AT] == UNPRICED else 0)
            total = sums.get(key)
            if total is None:
                first[key], sums[key], costs[key] = row, values, row[COST_AT]
            else:
                sums[key] = [a + b for a, b in zip(total, values, strict=True)]
                cost = row[COST_AT]
                if cost is not None:
                    costs[key] = cost if costs[key] is None else costs[key] + cost
        stamp = now.astimezone(UTC).replace(tzinfo=None)
        rows = [(key, *(row[i] for i in _IDENTITY_AT), *sums[key], costs[key], stamp, stamp)
                for key, row in first.items()]  # fmt: skip
        rows.sort(key=itemgetter(0))
        return rows

    def _digest(self, key: tuple[Any, ...]) -> str:
        found = self._digests.get(key)
        if found is None:
            if len(self._digests) >= CACHE_ENTRIES:
                self._digests.clear()
            found = self._digests[key] = rollup_key(RollupKey(*key))
        return found


def rollup_key(key: RollupKey) -> str:
    """The ``rollup_key`` column of a typed key (the correction recomputes it from rows)."""
    return digest(*key[:6], key.date.isoformat(), key.extra)


def detail_row(report: UsageReport, tz: tzinfo) -> dict[str, Any]:
    return dict(zip(DETAIL_COLUMNS, RowBuilder(tz).detail(report), strict=True))


def rollups(
    reports: Iterable[UsageReport], tz: tzinfo, extra: tuple[str, ...], now: datetime,
    pricing: Pricing | None = None,
) -> list[dict[str, Any]]:
    """``RowBuilder.rollups`` as dictionaries (tests and the seed-style benchmark writer)."""
    built = RowBuilder(tz, extra, pricing).rollups(reports, now)
    return [dict(zip(ROLLUP_COLUMNS, row, strict=True)) for row in built]


def reject_row(reject: Reject) -> dict[str, Any]:
    return {
        "reject_key": digest(reject.source.value, reject.reason, reject.item),
        "received_at": naive_utc(reject.received_at),
        "source": reject.source.value,
        "reason": reject.reason,
        "item": reject.item,
    }
