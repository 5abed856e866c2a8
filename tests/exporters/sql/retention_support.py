"""Reports on chosen days, and a fixed "now", for the partition and retention tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from collector.model import Operation, Source, UsageReport, Work
from exporters.sql import partitions
from exporters.sql.engine import create_engine
from exporters.sql.retention import Policy, Pruner
from exporters.sql.sink import SqlSink
from tests.support import query

TODAY = date(2026, 6, 15)
NOW = datetime.combine(TODAY, time(12), UTC).timestamp()
"""A fixed clock: 2026-06-15 12:00 UTC."""
TOTALS = ("select count(*), coalesce(sum(prompt_token_count), 0), "
          "coalesce(sum(completion_token_count), 0), coalesce(sum(request_count), 0) from {}")


def day_ms(day: date, second: int = 0) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp() * 1000) + second * 1000


def report(
    key: str, day: date, tokens: int = 10, user: str = "u1", second: int = 60
) -> UsageReport:
    at = day_ms(day, second)
    return UsageReport(
        model="m1", source=Source.SPAN, dedup_key=key, received_at=at, input_token=tokens,
        output_token=2, total_token=tokens + 2, completed_at=at, user_id=user,
        operation=Operation.CHAT_COMPLETION,
    )  # fmt: skip


def days_back(first: int, last: int) -> list[date]:
    """TODAY minus ``first`` .. TODAY minus ``last`` days (first >= last)."""
    return [TODAY - timedelta(days=n) for n in range(first, last - 1, -1)]


async def write(url: str, reports: list[UsageReport]) -> tuple[int, int]:
    """(counted, duplicates) of one commit of ``reports`` through the sink (no horizon)."""
    engine = create_engine(url)
    try:
        done = await SqlSink(engine, clock=lambda: NOW).write(Work(reports=reports))
    finally:
        await engine.dispose()
    return len(done.reports), done.duplicates


async def ensure(url: str, first: date, last: date, period: partitions.Period) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(lambda c: partitions.ensure(c, first, last, period))
    finally:
        await engine.dispose()


async def prune(url: str, dry_run: bool = False, **policy: Any) -> list[str] | None:
    engine = create_engine(url)
    try:
        removed = await Pruner(engine, Policy(**policy), clock=lambda: NOW).run(dry_run)
    finally:
        await engine.dispose()
    return None if removed is None else [str(r) for r in removed if r.rows]


async def totals(url: str, table: str = "model_usage_details", where: str = "") -> tuple[int, ...]:
    sql = TOTALS.format(table) + (f" where {where}" if where else "")
    return tuple(int(v) for v in (await query(url, sql))[0])


async def execute(url: str, sql: str) -> None:
    """Run one statement and commit."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


async def partition_names(url: str) -> list[str]:
    rows = await query(
        url,
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = 'model_usage_details'::regclass order by 1",
    )
    return [r[0] for r in rows]
