"""The SQL sink: one transaction per group commit.

In the transaction, in this order (every step sorted by key, so replicas lock in one order):
0. the source rule decides which usage spans and GenAI metric points count
   (``exporters.sql.sources``, rows of ``producer_sources`` locked when they change);
1. cumulative samples become deltas against ``metric_streams`` (rows locked), state updated;
2. audit rows, each priced at its instant (``collector.aggregation.pricing``), staged with
   their rollup key, inserted with ``ON CONFLICT (<unique key>) DO NOTHING
   RETURNING dedup_key`` (``(dedup_key, date)`` on PostgreSQL's partitioned table); the
   rows that conflicted leave the stage;
3. the rows actually inserted summed by the database into the rollups, their cost and
   unpriced requests with the counts: ``INSERT ... SELECT
   ... GROUP BY rollup_key ... ON CONFLICT (rollup_key) DO UPDATE SET n = n + excluded.n``
   (``exporters.sql.staging``);
4. rejects inserted, the oldest beyond the bound deleted (``exporters.sql.rejects``).
A deadlock or serialization failure reruns the transaction; an unreachable database raises
``RetryableError`` (``exporters.sql.transaction``, shared with the gpustack layout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.aggregation.horizon import REASON, Horizon
from collector.aggregation.pricing.watch import Pricing
from collector.aggregation.rules import usage_instant_ms
from collector.model import Committed, PointSample, Reject, Source, UsageReport, Work
from exporters.sql import schema, sources, staging, transaction
from exporters.sql.dialect import upsert_builder
from exporters.sql.migrate import is_current
from exporters.sql.rows import (
    COST_AT,
    DETAIL_COLUMNS,
    IDENTITY_COLUMNS,
    ROLLUP_MERGES,
    ROLLUP_SUMS,
    STAGE_MONEY,
    RowBuilder,
)

MAX_ITEM = 2000


class SqlSink:
    def __init__(
        self,
        engine: AsyncEngine,
        tz: tzinfo = UTC,
        extra_dimensions: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
        max_reject_rows: int = 100_000,
        pricing: Pricing | None = None,
        horizon: Horizon | None = None,
    ) -> None:
        """``pricing``: the live price table; None prices nothing (cost columns NULL).
        ``horizon``: the retention horizon; reports (and cumulative points) dated before it
        are rejected, ``older than retention``, since their audit rows are gone."""
        self.engine = engine
        self._horizon = horizon
        self._max_reject_rows = max_reject_rows
        self._dialect = engine.dialect.name
        self._priced = pricing is not None
        self._rows = RowBuilder(tz, extra_dimensions, pricing)
        self._stage = staging.Stage(schema.model_usage_details, DETAIL_COLUMNS, "dedup_key",
                                    STAGE_MONEY if self._dialect == "postgresql" else None,
                                    schema.DETAILS_UNIQUE)
        self._clock = clock
        self._insert = upsert_builder(engine.dialect.name)

    async def ping(self) -> bool:
        return await is_current(self.engine)

    async def write(self, work: Work) -> Committed:
        started = time.perf_counter()
        reports, costs, duplicates, ruled, rejected = await transaction.run(
            self.engine, lambda conn: self._write(conn, work))  # fmt: skip
        seconds = time.perf_counter() - started
        late = rejected - len(work.rejects)  # rejected here: older than retention
        accepted = transaction.settle(work, ruled, late)
        return Committed(reports, duplicates, rejected, seconds, accepted, costs)

    async def _write(
        self, conn: AsyncConnection, work: Work
    ) -> tuple[list[UsageReport], list[int | None], int, sources.Ruled | None, int]:
        """(reports counted, their costs, duplicates skipped, the source rule's outcome,
        rejects stored)."""
        now_ms = int(self._clock() * 1000)
        earliest = None if self._horizon is None else self._horizon.earliest_ms(now_ms)
        earliest_ns = None if earliest is None else earliest * 1_000_000
        reports, ruled, late = await transaction.counted(
            conn, self._insert, work, self._now(), schema.producer_sources,
            schema.metric_streams, earliest_ns)  # fmt: skip
        rejected = [*work.rejects, *(self._late_sample(s, now_ms) for s in late)]
        if earliest is not None:
            reports, late_reports = split_late(reports, earliest)
            rejected.extend(self._late_report(r, now_ms) for r in late_reports)
        unique = _first_by_key(reports)
        new, costs = await self._write_details(conn, unique)
        await transaction.store_rejects(conn, self._insert, rejected, schema.usage_rejects,
                                        self._max_reject_rows)  # fmt: skip
        return new, costs, len(reports) - len(new), ruled, len(rejected)

    def _late_report(self, report: UsageReport, now_ms: int) -> Reject:
        assert self._horizon is not None
        reason = self._horizon.reason(usage_instant_ms(report), now_ms)
        return Reject(report.source, reason, _item(repr(report)), now_ms)

    def _late_sample(self, sample: PointSample, now_ms: int) -> Reject:
        assert self._horizon is not None
        reason = (f"{REASON}: the stream's state is older than "
                  f"{self._horizon.first_day(now_ms)}, the first day kept")  # fmt: skip
        text = (f"cumulative point start_ns={sample.start_ns} time_ns={sample.time_ns} "
                f"value={sample.value} count={sample.count} {sample.template!r}")  # fmt: skip
        return Reject(Source.METRIC, reason, _item(text), now_ms)

    async def _write_details(
        self, conn: AsyncConnection, reports: list[UsageReport]
    ) -> tuple[list[UsageReport], list[int | None]]:
        """Audit rows of ``reports`` inserted unless already there; the new ones summed into
        the rollups (``exporters.sql.staging``). The reports actually inserted, and their
        costs in pico-units when pricing is on (else an empty list)."""
        if not reports:
            return [], []
        staged = self._rows.staged
        rows = [staged(r) for r in reports]
        await self._stage.load(conn, rows)
        inserted = await self._stage.insert_new(conn, [r.dedup_key for r in reports])
        new = reports
        if len(inserted) < len(reports):
            kept = [(r, row) for r, row in zip(reports, rows, strict=True)
                    if r.dedup_key in inserted]  # fmt: skip
            new, rows = [r for r, _ in kept], [row for _, row in kept]
        untimed = [r.dedup_key for r in new if _untimed(r)]
        if untimed and conn.dialect.name == "postgresql":
            resent = await self._stage.drop_stored_day_before(conn, untimed)
            if resent:
                kept = [(r, row) for r, row in zip(new, rows, strict=True)
                        if r.dedup_key not in resent]  # fmt: skip
                new, rows = [r for r, _ in kept], [row for _, row in kept]
        if new:
            await self._stage.roll_up(conn, schema.model_usages, IDENTITY_COLUMNS, ROLLUP_SUMS,
                                      self._now(), ROLLUP_MERGES)  # fmt: skip
        await self._stage.clear(conn)
        costs: list[int | None] = [row[COST_AT] for row in rows] if self._priced else []
        return new, costs

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(tzinfo=None)


def split_late(
    reports: list[UsageReport], earliest_ms: int
) -> tuple[list[UsageReport], list[UsageReport]]:
    """(reports kept, reports dated before ``earliest_ms``)."""
    late = [r for r in reports if usage_instant_ms(r) < earliest_ms]
    if not late:
        return reports, late
    return [r for r in reports if usage_instant_ms(r) >= earliest_ms], late


def _untimed(report: UsageReport) -> bool:
    """Dated when received: the report carries neither ``completed_at`` nor ``started_at``."""
    return not (report.completed_at and report.completed_at > 0) and not (
        report.started_at and report.started_at > 0
    )


def _item(text: str) -> str:
    """A bounded rendering any database stores (no lone surrogates, no NUL)."""
    if len(text) > MAX_ITEM:
        text = text[: MAX_ITEM - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _first_by_key(reports: list[UsageReport]) -> list[UsageReport]:
    """One report per idempotency key (the first), sorted by key for a stable lock order."""
    seen: dict[str, UsageReport] = {}
    for report in reports:
        seen.setdefault(report.dedup_key, report)
    return [seen[key] for key in sorted(seen)]
