"""``make bench`` (partitions): the partitioned audit table's cost and the price of pruning.

    python -m bench.partitions [--duration 3] [--prune-rows 1000000] [--sqlite-rows 200000]

- ingest: the same 2000-report batches through ``SqlSink.write`` into PostgreSQL with
  ``model_usage_details`` partitioned by day, and into a plain table with the same columns
  and indexes, passes interleaved in this run (target: partitioned >= 0.9x plain); and the
  retention horizon check on vs off (the late-report filter on the commit path);
- prune: seconds per million audit rows removed, PostgreSQL dropping day partitions (without
  and with a gzip CSV archive) and SQLite deleting in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.common import drop_all, fresh_postgres, fresh_sqlite
from bench.run import reports, row, table, target
from collector.aggregation.horizon import Horizon
from collector.model import UsageReport, Work
from exporters.sql import migrate, partitions
from exporters.sql.engine import create_engine
from exporters.sql.retention import Policy, Pruner
from exporters.sql.sink import SqlSink, split_late

DAY_MS = 86_400_000


def _spread(batches: list[list[UsageReport]], days: int) -> list[list[UsageReport]]:
    """The reports moved onto the last ``days`` days (several partitions per batch)."""
    now = int(time.time() * 1000)
    return [[r._replace(completed_at=now - (i % days) * DAY_MS - i % 1000, started_at=None)
             for i, r in enumerate(batch)] for batch in batches]  # fmt: skip


async def _database(partitioned: bool) -> str:
    url = await fresh_postgres()
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        today = datetime.now(UTC).date()
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: partitions.ensure(c, today - timedelta(days=3), today,
                                                            "day"))  # fmt: skip
            if not partitioned:  # the same columns and indexes, one plain table
                await conn.exec_driver_sql("ALTER TABLE model_usage_details RENAME TO parted")
                await conn.exec_driver_sql(
                    "CREATE TABLE model_usage_details (LIKE parted INCLUDING ALL)"
                )
                await conn.exec_driver_sql("ALTER SEQUENCE model_usage_details_id_seq "
                                           "OWNED BY model_usage_details.id")
                await conn.exec_driver_sql("DROP TABLE parted")
    finally:
        await engine.dispose()
    return url


async def _rate(sink: SqlSink, batches: list[list[UsageReport]], suffix: str) -> float:
    """Rows/s of ``SqlSink.write`` alone over ``batches`` (fresh keys made outside the
    timing)."""
    written = 0
    spent = 0.0
    for batch in batches:
        fresh = [r._replace(dedup_key=f"{r.dedup_key}/{suffix}") for r in batch]
        started = time.perf_counter()
        written += len((await sink.write(Work(reports=fresh))).reports)
        spent += time.perf_counter() - started
    return written / spent


async def ingest(seconds: float) -> None:
    """Rounds of a few batches per variant, in turning order; each round's ratios are taken
    between neighbours in time, and the median round is reported (a shared machine's load
    drifts between rounds, not within one)."""
    batches = _spread(reports(12, 2000), 3)
    parted, plain = await _database(True), await _database(False)
    engines = [create_engine(url) for url in (plain, parted)]
    sinks = {"plain": SqlSink(engines[0]), "parted": SqlSink(engines[1]),
             "horizon": SqlSink(engines[1], horizon=Horizon(400))}  # fmt: skip
    rounds: list[dict[str, float]] = []
    names = list(sinks)
    deadline = time.perf_counter() + seconds * 3
    try:
        while time.perf_counter() < deadline or len(rounds) < 3:
            n = len(rounds)
            order = names[n % 3:] + names[:n % 3]
            part = batches[(n * 4) % len(batches):][:4] or batches[:4]
            rounds.append({k: await _rate(sinks[k], part, f"{k}{n}") for k in order})
    finally:
        for engine in engines:
            await engine.dispose()
    ratio = statistics.median(r["parted"] / r["plain"] for r in rounds)
    cost = statistics.median(r["horizon"] / r["parted"] for r in rounds)
    p = statistics.median(r["parted"] for r in rounds)
    u = statistics.median(r["plain"] for r in rounds)
    row(f"PostgreSQL ingest, audit table partitioned by day ({len(rounds)} rounds)",
        f"{p:,.0f} rows/s", f"plain table {u:,.0f} rows/s",
        target(ratio >= 0.9, f"median round {ratio:.2f}x, target >= 0.9x"))  # fmt: skip
    row("PostgreSQL ingest with the retention horizon check", f"median round {cost:.2f}x",
        "of the same table without")  # fmt: skip
    await drop_all()
    horizon = Horizon(400)
    started = time.perf_counter()
    for batch in batches:
        split_late(batch, horizon.earliest_ms(int(time.time() * 1000)))
    spent = (time.perf_counter() - started) / sum(map(len, batches))
    row("retention horizon check, in process", f"{spent * 1e9:.0f} ns per report",
        f"one 2000-report commit at {p:,.0f} rows/s: {2000 / p * 1e3:.0f} ms")


async def _fill_old(url: str, rows: int, days: int, postgres: bool) -> date:
    first = datetime.now(UTC).date() - timedelta(days=500)
    engine = create_engine(url, command_timeout=600)
    try:
        await migrate.upgrade(engine)
        prefix, series = "", f"generate_series(1, {rows}) AS n"
        day = f"date '{first}' + (n % {days})"
        if not postgres:
            prefix = (f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                      f"WHERE n < {rows}) ")  # fmt: skip
            series, day = "s", f"date('{first}', '+' || (n % {days}) || ' days')"
        async with engine.begin() as conn:
            if postgres:
                await conn.run_sync(lambda c: partitions.ensure(
                    c, first, first + timedelta(days=days - 1), "day"))  # fmt: skip
            await conn.exec_driver_sql(f"""{prefix}
                INSERT INTO model_usage_details (dedup_key, date, model_name, user_id,
                    prompt_token_count, completion_token_count, request_count,
                    total_token_count, completed, estimated, source, created_at, updated_at)
                SELECT 'k' || n, {day}, 'model-' || (n % 7), 'user-' || (n % 97), n % 1000,
                    n % 50, 1, n % 1000 + n % 50, true, false, 'otlp_span',
                    CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
                FROM {series}""")
    finally:
        await engine.dispose()
    return first


async def _prune_seconds(url: str, archive: Path | None) -> tuple[float, int]:
    engine = create_engine(url)
    try:
        pruner = Pruner(engine, Policy(details_days=400, partition="day", archive_dir=archive))
        started = time.perf_counter()
        removed = await pruner.run()
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    return seconds, sum(r.rows for r in removed or [])


async def prune(pg_rows: int, sqlite_rows: int) -> None:
    for archive in (None, Path(tempfile.mkdtemp(prefix="tb-archive-"))):
        url = await fresh_postgres()
        await _fill_old(url, pg_rows, 10, postgres=True)
        seconds, rows = await _prune_seconds(url, archive)
        how = "drop" if archive is None else "archive (gzip CSV) + drop"
        row(f"PostgreSQL prune, 10 day partitions ({how})",
            f"{seconds / rows * 1e6:.2f} s per million rows", f"({rows:,} rows in {seconds:.2f} s)")
        await drop_all()
    url = fresh_sqlite()
    await _fill_old(url, sqlite_rows, 10, postgres=False)
    seconds, rows = await _prune_seconds(url, None)
    row("SQLite prune, batched deletes of 10,000 rows",
        f"{seconds / rows * 1e6:.2f} s per million rows", f"({rows:,} rows in {seconds:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per ingest pass")
    parser.add_argument("--prune-rows", type=int, default=1_000_000)
    parser.add_argument("--sqlite-rows", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(ingest(args.duration))
    asyncio.run(prune(args.prune_rows, args.sqlite_rows))
    print("\n" + table())


if __name__ == "__main__":
    main()
