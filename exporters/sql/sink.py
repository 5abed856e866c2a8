"""The SQL sink: one transaction per group commit.

In the transaction, in this order (every step sorted by key, so replicas lock in one order):
1. cumulative samples become deltas against ``metric_streams`` (rows locked), state updated;
2. audit rows staged with their rollup key, inserted with ``ON CONFLICT (dedup_key) DO NOTHING
   RETURNING dedup_key``; the rows that conflicted leave the stage;
3. the rows actually inserted summed by the database into the rollups: ``INSERT ... SELECT
   ... GROUP BY rollup_key ... ON CONFLICT (rollup_key) DO UPDATE SET n = n + excluded.n``
   (``exporters.sql.staging``);
4. rejects inserted, the oldest beyond the bound deleted (``exporters.sql.rejects``).
A deadlock or serialization failure reruns the transaction; an unreachable database raises
``RetryableError``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from typing import TypeVar

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.commit import Committed, Work
from collector.errors import RetryableError
from collector.model import UsageReport
from exporters.sql import rejects, schema, staging, streams
from exporters.sql.dialect import upsert_builder
from exporters.sql.engine import is_conflict, is_unavailable
from exporters.sql.migrate import is_current
from exporters.sql.rows import DETAIL_COLUMNS, IDENTITY_COLUMNS, ROLLUP_SUMS, RowBuilder, reject_row

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PARAMS = 30000
"""asyncpg takes at most 32767 bind parameters a statement."""
CONFLICT_RETRIES = 8


def chunks(rows: Sequence[T], columns: int) -> Iterator[Sequence[T]]:
    size = max(1, MAX_PARAMS // max(1, columns))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class SqlSink:
    def __init__(
        self,
        engine: AsyncEngine,
        tz: tzinfo = UTC,
        extra_dimensions: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
        max_reject_rows: int = 100_000,
    ) -> None:
        self.engine = engine
        self._max_reject_rows = max_reject_rows
        self._rows = RowBuilder(tz, extra_dimensions)
        self._stage = staging.Stage(
            schema.model_usage_details, DETAIL_COLUMNS, "dedup_key", schema.DETAILS_UNIQUE
        )
        self._clock = clock
        self._insert = upsert_builder(engine.dialect.name)

    async def ping(self) -> bool:
        return await is_current(self.engine)

    async def write(self, work: Work) -> Committed:
        started = time.perf_counter()
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                async with self.engine.begin() as conn:
                    reports, duplicates = await self._write(conn, work)
                break
            except exc.DBAPIError as error:
                if is_conflict(error) and attempt < CONFLICT_RETRIES:
                    logger.info("commit conflict (%s), retrying", type(error.orig).__name__)
                    await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                if is_unavailable(error):
                    message = f"database unavailable: {_describe(error.orig or error)}"
                    raise RetryableError(message) from error
                raise
            except (OSError, TimeoutError, ConnectionError) as error:
                raise RetryableError(f"database unavailable: {_describe(error)}") from error
        seconds = time.perf_counter() - started
        accepted = len(work.reports) + len(work.samples)
        return Committed(reports, duplicates, len(work.rejects), seconds, accepted)

    async def _write(self, conn: AsyncConnection, work: Work) -> tuple[list[UsageReport], int]:
        reports = list(work.reports)
        if work.samples:
            reports.extend(await streams.deltas(conn, self._insert, work.samples, self._now()))
        unique = _first_by_key(reports)
        new = await self._write_details(conn, unique)
        if work.rejects:
            rows = sorted((reject_row(r) for r in work.rejects), key=lambda r: r["reject_key"])
            table = schema.usage_rejects
            for chunk in chunks(rows, len(rows[0])):
                stmt = self._insert(table).on_conflict_do_nothing(index_elements=["reject_key"])
                await conn.execute(stmt, list(chunk))
            await rejects.prune(conn, self._max_reject_rows)
        return new, len(reports) - len(new)

    async def _write_details(
        self, conn: AsyncConnection, reports: list[UsageReport]
    ) -> list[UsageReport]:
        """Audit rows of ``reports`` inserted unless already there; the new ones summed into
        the rollups (``exporters.sql.staging``). The reports actually inserted."""
        if not reports:
            return []
        staged = self._rows.staged
        await self._stage.load(conn, [staged(r) for r in reports])
        inserted = await self._stage.insert_new(conn, [r.dedup_key for r in reports])
        new = reports
        if len(inserted) < len(reports):
            new = [r for r in reports if r.dedup_key in inserted]
        if new:
            await self._stage.roll_up(
                conn, schema.model_usages, IDENTITY_COLUMNS, ROLLUP_SUMS, self._now()
            )
        await self._stage.clear(conn)
        return new

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(tzinfo=None)


def _describe(error: BaseException) -> str:
    """The error's class and message (a timeout's message is empty)."""
    return f"{type(error).__name__}: {error}".rstrip(": ")


def _first_by_key(reports: list[UsageReport]) -> list[UsageReport]:
    """One report per idempotency key (the first), sorted by key for a stable lock order."""
    seen: dict[str, UsageReport] = {}
    for report in reports:
        seen.setdefault(report.dedup_key, report)
    return [seen[key] for key in sorted(seen)]
