"""Retention: audit rows, rejects and stream state past their horizon are removed; rollups stay.

- PostgreSQL: whole partitions of ``model_usage_details`` that end on or before the first kept
  day are (archived,) detached and dropped; ``DETACH ... CONCURRENTLY`` is used when the table
  has no DEFAULT partition (PostgreSQL refuses it otherwise), else a plain ``DETACH`` under a
  short ``lock_timeout``, retried, so commits wait milliseconds, not minutes. Rows of old days
  in the DEFAULT partition are deleted like SQLite's.
- SQLite: old days are (archived and) deleted, ``batch_rows`` rows per transaction.
- ``usage_rejects`` older than ``rejects_days`` and ``metric_streams`` rows not updated since
  the horizon are deleted in batches too.
One replica at a time prunes: the run takes a PostgreSQL advisory lock and skips when another
session holds it. Each removal is logged; ``dry_run`` only counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import TableClause, delete, exc, func, select, text, true
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from collector.aggregation.horizon import Horizon
from exporters.sql import archive, partitions, schema
from exporters.sql.rows import naive_utc

logger = logging.getLogger(__name__)
PRUNE_LOCK = 0x70CE_B51E
"""PostgreSQL advisory lock held by the replica that prunes."""
ENSURE_LOCK = 0x70CE_B51F
"""PostgreSQL advisory lock taken while creating partitions (replicas starting together)."""
LOCK_TIMEOUT = "2s"
DETACH_ATTEMPTS = 5
COMMAND_TIMEOUT = 3600.0
"""Longest one retention statement may run (a month partition's archive COPY): give the
pruner an engine of its own with it (``create_engine(url, command_timeout=...)``)."""


@dataclass(frozen=True, slots=True)
class Policy:
    details_days: int = 400
    rejects_days: int = 30
    partition: partitions.Period = "month"
    ahead: int = 3
    archive_dir: Path | None = None
    batch_rows: int = 10_000
    tz: tzinfo = UTC


@dataclass(frozen=True, slots=True)
class Removal:
    what: str
    rows: int
    archive: Path | None = None

    def __str__(self) -> str:
        where = f", archived to {self.archive}" if self.archive is not None else ""
        return f"{self.what}: {self.rows} rows{where}"


class Pruner:
    def __init__(
        self, engine: AsyncEngine, policy: Policy, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.horizon = Horizon(policy.details_days, policy.tz)
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def today(self) -> date:
        return datetime.fromtimestamp(self._clock(), self.policy.tz).date()

    async def ensure_ahead(self) -> list[str]:
        """PostgreSQL: the partitions of today's period and of ``ahead`` more periods, and
        the DEFAULT one."""
        if not self._postgres:
            return []
        today = self.today()
        last = today
        for _ in range(self.policy.ahead + 1):
            end = partitions.period_of(last, self.policy.partition).end
            assert end is not None
            last = end
        last -= timedelta(days=1)
        async with self.engine.begin() as conn:
            # Both waits bounded: another replica's creation, then the table's lock.
            await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({ENSURE_LOCK})"))
            created = await conn.run_sync(
                lambda c: partitions.ensure(c, today, last, self.policy.partition)
            )
        for name in created:
            logger.info("retention: created partition %s", name)
        return created

    async def run(self, dry_run: bool = False) -> list[Removal] | None:
        """Remove what is past the horizons (``dry_run``: only count it); None when another
        replica is pruning now."""
        if not self._postgres:
            return await self._prune(dry_run)
        async with self.engine.connect() as lock:
            got = (await lock.execute(text(f"SELECT pg_try_advisory_lock({PRUNE_LOCK})"))).scalar()
            await lock.commit()
            if not got:
                logger.info("retention: another replica is pruning; skipped")
                return None
            try:
                return await self._prune(dry_run)
            finally:
                await lock.execute(text(f"SELECT pg_advisory_unlock({PRUNE_LOCK})"))
                await lock.commit()

    async def _prune(self, dry_run: bool) -> list[Removal]:
        now_ms = self._now_ms()
        first = self.horizon.first_day(now_ms)
        removed: list[Removal] = []
        table: str | None = partitions.PARENT
        if self._postgres and await self._partitioned():
            parts = await self._partitions()
            table = partitions.DEFAULT if any(p.start is None for p in parts) else None
            for part in parts:
                if part.end is not None and part.end <= first:
                    try:
                        removed.append(await self._drop(part, dry_run))
                    except archive.ArchiveError as error:
                        logger.error("retention: kept %s: archive failed: %s", part.name, error)
        if table is not None:
            removed.extend(await self._prune_days(table, first, dry_run))
        rejects = naive_utc(now_ms) - timedelta(days=self.policy.rejects_days)
        r = schema.usage_rejects
        removed.append(await self._delete_where(
            r, r.c.id, r.c.received_at < rejects, f"received before {rejects}",
            dry_run,
        ))  # fmt: skip
        streams = naive_utc(self.horizon.earliest_ms(now_ms))
        s = schema.metric_streams
        removed.append(await self._delete_where(
            s, s.c.stream_key, s.c.updated_at < streams,
            f"updated before {streams}", dry_run,
        ))  # fmt: skip
        verb = "would remove" if dry_run else "removed"
        for item in removed:
            if item.rows:
                logger.info("retention: %s %s", verb, item)
        return removed

    async def _partitioned(self) -> bool:
        async with self.engine.connect() as conn:
            return await conn.run_sync(partitions.is_partitioned)

    async def _partitions(self) -> list[partitions.Partition]:
        async with self.engine.connect() as conn:
            return await conn.run_sync(partitions.existing)

    def _archive_path(self, label: str) -> Path | None:
        folder = self.policy.archive_dir
        return None if folder is None else folder / f"{label}.csv.gz"

    async def _drop(self, part: partitions.Partition, dry_run: bool) -> Removal:
        assert part.start is not None and part.end is not None
        days = f"{part.start}..{part.end - timedelta(days=1)}"
        what = f"partition {part.name} ({days})"
        path = self._archive_path(part.name)
        for _attempt in range(3):
            async with self.engine.begin() as conn:
                totals = await archive.totals(conn, part.name, true())
            if dry_run:
                return Removal(what, totals.rows, path)
            if path is not None and totals.rows:
                async with self.engine.begin() as conn:
                    totals, path = await archive.write(conn, part.name, true(), path, days)
            if await self._detach_and_drop(part.name, None if path is None else totals.rows):
                return Removal(what, totals.rows, path if totals.rows else None)
        raise archive.ArchiveError(f"{part.name} kept changing while archived; kept")

    async def _detach_and_drop(self, name: str, archived: int | None) -> bool:
        """Detach and drop ``name``; False (nothing dropped) when ``archived`` is given and
        the partition holds another number of rows once detached."""
        default = any(p.start is None for p in await self._partitions())
        if not default and archived is None:
            async with self.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
                await auto.execute(
                    text(f"ALTER TABLE {partitions.PARENT} DETACH PARTITION {name} CONCURRENTLY")
                )
                await auto.execute(text(f"DROP TABLE {name}"))
            return True
        for attempt in range(DETACH_ATTEMPTS):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                    await conn.execute(
                        text(f"ALTER TABLE {partitions.PARENT} DETACH PARTITION {name}")
                    )
                    if archived is not None:
                        rows = (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar()
                        if rows != archived:
                            await conn.rollback()
                            return False
                    await conn.execute(text(f"DROP TABLE {name}"))
                return True
            except exc.DBAPIError as error:
                if "lock timeout" not in str(error) or attempt == DETACH_ATTEMPTS - 1:
                    raise
                logger.info("retention: %s busy, detach retried", name)
                await asyncio.sleep(0.5 * (attempt + 1))
        return False

    async def _prune_days(self, name: str, first: date, dry_run: bool) -> list[Removal]:
        """Days before ``first`` of ``name`` (SQLite's table, PostgreSQL's DEFAULT
        partition), one day at a time: archived, then deleted in batches."""
        src = archive.source(name)
        async with self.engine.connect() as conn:
            days = list((await conn.execute(
                select(src.c.date).where(src.c.date < first).distinct().order_by(src.c.date)
            )).scalars())  # fmt: skip
        removed: list[Removal] = []
        for day in days:
            label = f"{partitions.PARENT}_d{day:%Y%m%d}"
            path = self._archive_path(label)
            where = src.c.date == day
            if path is not None and not dry_run:
                try:
                    async with self.engine.begin() as conn:
                        _totals, path = await archive.write(
                            conn, name, where, path, f"{day}..{day}"
                        )
                except archive.ArchiveError as error:
                    logger.error("retention: kept %s day %s: archive failed: %s", name, day, error)
                    continue
            removal = await self._delete_where(src, src.c.id, where, f"day {day}", dry_run)
            removed.append(Removal(f"{name} day {day}", removal.rows, path))
        return removed

    async def _delete_where(
        self, t: TableClause, key: ColumnElement[Any], where: ColumnElement[bool], what: str,
        dry_run: bool,
    ) -> Removal:  # fmt: skip
        """Delete rows of ``t`` where ``where``, ``batch_rows`` per transaction."""
        name = t.name
        if dry_run:
            counted = select(func.count()).select_from(select(key).where(where).subquery())
            async with self.engine.connect() as conn:
                rows = (await conn.execute(counted)).scalar()
            return Removal(f"{name} {what}", int(rows or 0))
        total = 0
        batch = self.policy.batch_rows
        while True:
            chosen = select(key).where(where).limit(batch)
            async with self.engine.begin() as conn:
                count = (await conn.execute(delete(t).where(key.in_(chosen)))).rowcount
            total += count
            if count < batch:
                return Removal(f"{name} {what}", total)
