"""``tokenbridge reprice``: the audit rows of some days priced again from the current price
table, and their rollups' cost rebuilt from the audit rows; safe beside ``serve``.

Per day (the ``date`` column: the rollup day), in bounded transactions:

1. audit rows in ``id`` order, ``batch`` at a time: each priced again at its instant
   (``completed_at``, else ``started_at``, else ``created_at``, the instant the row was
   dated by) from its stored counts; rows whose cost, status or version differ are updated.
   Serving processes only ever insert audit rows, so nothing they do waits on this for
   long, and this waits on nothing of theirs.
2. every rollup of the rows seen, ``keys`` at a time in ``rollup_key`` order: the rollup rows
   are locked first (PostgreSQL ``SELECT ... ORDER BY rollup_key FOR UPDATE``, the order the
   commit locks them in; SQLite: the write lock), then ``cost`` and
   ``unpriced_request_count`` are set to the SUM over their audit rows, read by a statement
   that starts after the lock is held.

Why that is exact while replicas commit into the same rollups: a commit inserts its audit
rows and adds their cost to the rollup in one transaction. If it locked the rollup first,
the rebuild waits for its commit and then sums its rows too; if not, the rebuild cannot see
its uncommitted rows and the commit adds them after the rebuild's absolute value. Either way
each row is counted once. Rows committed after step 1 were priced by the serving process
with its table at the time: run ``reprice`` once every process has loaded the edited file
(log line "prices reloaded", within ``pricing.reload_interval``). Running it again changes
nothing (idempotent); a run stopped half way is finished by the next one, since step 2
rebuilds every rollup of the days seen, changed or not.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, case, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.aggregation.pricing.table import UNPRICED, PriceTable
from collector.aggregation.rules import EXTRA_DIMENSIONS, RollupKey
from exporters.sql import schema
from exporters.sql.engine import is_conflict
from exporters.sql.money import to_column, to_pico
from exporters.sql.rows import rollup_key

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
KEY_COLUMNS = ("model_id", "provider_id", "model_name", "user_id", "access_key", "operation")
RETRIES = 8


@dataclass
class ModelChange:
    rows: int = 0
    changed: int = 0
    old_cost: int = 0
    new_cost: int = 0
    old_unpriced: int = 0
    new_unpriced: int = 0


@dataclass
class Summary:
    models: dict[str, ModelChange] = field(default_factory=dict)
    rollups: int = 0
    rollups_changed: int = 0

    def add(self, other: Summary) -> None:
        """Counts of a committed transaction (a retried one reports its last attempt only)."""
        for model, theirs in other.models.items():
            mine = self.models.setdefault(model, ModelChange())
            for name in ("rows", "changed", "old_cost", "new_cost", "old_unpriced",
                         "new_unpriced"):  # fmt: skip
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
        self.rollups += other.rollups
        self.rollups_changed += other.rollups_changed


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _instant_ms(row: Any) -> int:
    for at in (row.completed_at, row.started_at, row.created_at):
        if at is not None and at > _EPOCH:
            return int((at - _EPOCH) // _MS)
    return int((row.created_at - _EPOCH) // _MS)


class Repricer:
    def __init__(
        self, engine: AsyncEngine, table: PriceTable, extra: tuple[str, ...] = (),
        batch: int = 1000, keys: int = 500,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.table = table
        self.extra = tuple(d for d in EXTRA_DIMENSIONS if d in extra)
        self.batch = batch
        self.keys = keys
        self.dialect = engine.dialect.name
        self._money = to_column(self.dialect)

    async def run(self, start: date, end: date, model: str | None = None) -> Summary:
        summary = Summary()
        for day in _days(start, end):
            await self._day(day, model, summary)
        return summary

    async def _day(self, day: date, model: str | None, summary: Summary) -> None:
        seen: set[str] = set()
        last, count = 0, self.batch
        while count == self.batch:
            step = functools.partial(self._reprice_rows, day=day, model=model, after=last)
            last, count, part, keys = await self._retry(step)
            summary.add(part)
            seen |= keys
        ordered = sorted(seen)
        for n in range(0, len(ordered), self.keys):
            rebuild = functools.partial(self._rebuild, day=day, keys=ordered[n : n + self.keys])
            summary.add(await self._retry(rebuild))

    async def _retry(self, step: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        for attempt in range(RETRIES + 1):
            try:
                async with self.engine.begin() as conn:
                    return await step(conn)
            except DBAPIError as error:
                if not is_conflict(error) or attempt == RETRIES:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    async def _reprice_rows(
        self, conn: AsyncConnection, day: date, model: str | None, after: int
    ) -> tuple[int, int, Summary, set[str]]:
        """One batch of audit rows after id ``after``: (last id, rows read, counts, the
        rollup keys of the rows)."""
        summary, seen = Summary(), set()
        d = schema.model_usage_details
        query = (select(d.c.id, *(d.c[n] for n in KEY_COLUMNS), *(d.c[n] for n in self.extra),
                        d.c.provider_name, d.c.provider_type, d.c.prompt_token_count,
                        d.c.completion_token_count, d.c.prompt_cached_token_count,
                        d.c.prompt_cache_write_token_count,
                        d.c.completion_reasoning_token_count, d.c.request_count,
                        d.c.completed_at, d.c.started_at, d.c.created_at, d.c.cost,
                        d.c.cost_status, d.c.price_version)
                 .where(d.c.date == day, d.c.id > after).order_by(d.c.id)
                 .limit(self.batch))  # fmt: skip
        if model is not None:
            query = query.where(d.c.model_name == model)
        rows = (await conn.execute(query)).all()
        updates = []
        for row in rows:
            seen.add(self._key(row, day))
            counts = (row.prompt_token_count, row.completion_token_count,
                      row.prompt_cached_token_count, row.prompt_cache_write_token_count,
                      row.completion_reasoning_token_count, row.request_count)  # fmt: skip
            priced = self.table.price(row.model_name, row.provider_name, row.provider_type,
                                      _instant_ms(row), *counts)  # fmt: skip
            cost, status, version = priced
            old = to_pico(self.dialect, row.cost)
            change = summary.models.setdefault(row.model_name, ModelChange())
            change.rows += 1
            change.old_cost += old or 0
            change.new_cost += cost or 0
            change.old_unpriced += row.request_count if row.cost_status == UNPRICED else 0
            change.new_unpriced += row.request_count if status == UNPRICED else 0
            if (old, row.cost_status, row.price_version) != priced:
                change.changed += 1
                updates.append({"row_id": row.id, "new_cost": self._money(cost),
                                "new_status": status, "new_version": version})
        if updates:
            await conn.execute(
                # The day too: a date-partitioned audit table is then searched in one part.
                update(d).where(d.c.id == bindparam("row_id"), d.c.date == day).values(
                    cost=bindparam("new_cost"), cost_status=bindparam("new_status"),
                    price_version=bindparam("new_version")),
                updates,
            )  # fmt: skip
        return (rows[-1].id if rows else after), len(rows), summary, seen

    def _key(self, row: Any, day: date) -> str:
        extra = tuple(getattr(row, n) for n in self.extra)
        return rollup_key(RollupKey(row.model_id, row.provider_id, row.model_name, row.user_id,
                                    row.access_key, row.operation, day, extra))  # fmt: skip

    async def _rebuild(self, conn: AsyncConnection, day: date, keys: list[str]) -> Summary:
        u = schema.model_usages
        d = schema.model_usage_details
        wanted = select(u.c.rollup_key, u.c.model_name, u.c.cost, u.c.unpriced_request_count
                        ).where(u.c.rollup_key.in_(keys)).order_by(u.c.rollup_key)  # fmt: skip
        if self.dialect == "postgresql":
            wanted = wanted.with_for_update()
        else:  # take SQLite's write lock before reading the sums
            await conn.execute(text("UPDATE model_usages SET id = id WHERE false"))
        current = {r.rollup_key: r for r in await conn.execute(wanted)}
        models = sorted({r.model_name for r in current.values()})
        group = [*(d.c[n] for n in KEY_COLUMNS), *(d.c[n] for n in self.extra)]
        unpriced = func.sum(case((d.c.cost_status == UNPRICED, d.c.request_count), else_=0))
        sums = (select(*group, func.sum(d.c.cost), unpriced)
                .where(d.c.date == day, d.c.model_name.in_(models)).group_by(*group))  # fmt: skip
        updates = []
        summary = Summary()
        width = len(group)
        for row in await conn.execute(sums):
            key = rollup_key(RollupKey(*row[:6], day, tuple(row[6:width])))
            found = current.get(key)
            if found is None:
                continue
            summary.rollups += 1
            cost, count = row[width], int(row[width + 1] or 0)
            if (to_pico(self.dialect, found.cost), found.unpriced_request_count) != (
                    to_pico(self.dialect, cost), count):  # fmt: skip
                summary.rollups_changed += 1
                updates.append({"key": key, "new_cost": cost, "new_unpriced": count})
        if updates:
            await conn.execute(
                update(u).where(u.c.rollup_key == bindparam("key")).values(
                    cost=bindparam("new_cost"), unpriced_request_count=bindparam("new_unpriced")),
                updates,
            )  # fmt: skip
        return summary
