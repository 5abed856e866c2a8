"""Retention: what is past the horizon goes (whole partitions on PostgreSQL, batched deletes
on SQLite), rollups stay, one replica prunes at a time, archives load back."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, select, text

from exporters.sql import archive, migrate, schema
from exporters.sql.engine import create_engine
from exporters.sql.retention import PRUNE_LOCK, Policy, Pruner
from tests.exporters.sql.retention_support import (
    NOW,
    TODAY,
    days_back,
    ensure,
    execute,
    partition_names,
    prune,
    report,
    totals,
    write,
)
from tests.support import query


async def _setup(url: str, days: list[int], per_day: int = 3) -> None:
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    reports = [
        report(f"d{n}-{i}", TODAY - timedelta(days=n), 10 + i, user=f"u{i}")
        for n in days for i in range(per_day)
    ]  # fmt: skip
    assert await write(url, reports) == (len(reports), 0)


async def test_prune_drops_only_day_partitions_past_the_horizon(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    await ensure(postgres_url, TODAY - timedelta(days=14), TODAY, "day")
    await _setup(postgres_url, [14, 11, 10, 9, 0])
    # A row of an old day in DEFAULT (a day before any partition) goes too.
    assert await write(postgres_url, [report("stray", TODAY - timedelta(days=30))]) == (1, 0)
    rollups = await totals(postgres_url, "model_usages")
    kept = await totals(postgres_url, where=f"date >= '{TODAY - timedelta(days=10)}'")
    dry = await prune(postgres_url, dry_run=True, details_days=10)
    assert dry is not None and len(dry) == 3
    assert await totals(postgres_url) == (16, 175, 32, 16)  # nothing removed by a dry run
    removed = await prune(postgres_url, details_days=10)
    assert removed == [
        f"partition model_usage_details_p{d:%Y%m%d} ({d}..{d}): 3 rows" for d in days_back(14, 11)
        if d in (TODAY - timedelta(days=14), TODAY - timedelta(days=11))
    ] + [f"model_usage_details_default day {TODAY - timedelta(days=30)}: 1 rows"]
    names = await partition_names(postgres_url)
    assert f"model_usage_details_p{TODAY - timedelta(days=11):%Y%m%d}" not in names
    assert f"model_usage_details_p{TODAY - timedelta(days=10):%Y%m%d}" in names
    assert await totals(postgres_url) == kept == (9, 99, 18, 9)
    assert await totals(postgres_url, "model_usages") == rollups


async def test_prune_removes_old_rejects_and_stream_state(database_url: str) -> None:
    await _setup(database_url, [0])
    now = TODAY.isoformat()
    old = (TODAY - timedelta(days=31)).isoformat()
    for n, at in enumerate([old, old, now]):
        await execute(database_url, f"insert into usage_rejects (reject_key, received_at, source,"
                      f" reason, item) values ('r{n}', '{at} 01:00:00', 'otlp_span', 'x', 'y')")
        stamp = (TODAY - timedelta(days=400 * (n < 1))).isoformat()
        await execute(database_url, f"insert into metric_streams values "
                      f"('s{n}', 1, 1, 1, '{stamp} 01:00:00')")  # fmt: skip
    removed = await prune(database_url, details_days=300, rejects_days=30)
    assert removed is not None and len(removed) == 2
    assert "usage_rejects received before" in removed[0] and removed[0].endswith(": 2 rows")
    assert "metric_streams updated before" in removed[1] and removed[1].endswith(": 1 rows")
    assert await query(database_url, "select reject_key from usage_rejects") == [("r2",)]
    assert await query(database_url, "select stream_key from metric_streams order by 1") == [
        ("s1",), ("s2",)
    ]  # fmt: skip


async def test_sqlite_prune_deletes_old_days_in_bounded_batches(sqlite_url: str) -> None:
    await _setup(sqlite_url, [20, 12, 3], per_day=250)
    engine = create_engine(sqlite_url)
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    try:
        removed = await Pruner(engine, Policy(details_days=10, batch_rows=100),
                               clock=lambda: NOW).run()  # fmt: skip
    finally:
        await engine.dispose()
    assert removed is not None
    assert [(r.what, r.rows) for r in removed if r.rows] == [
        (f"model_usage_details day {TODAY - timedelta(days=20)}", 250),
        (f"model_usage_details day {TODAY - timedelta(days=12)}", 250),
    ]
    assert len(commits) >= 6  # 250 rows a day, at most 100 a transaction: 3 per day
    assert await totals(sqlite_url) == (250, 250 * 10 + sum(range(250)), 500, 250)


async def test_one_replica_prunes_at_a_time(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    await ensure(postgres_url, TODAY - timedelta(days=5), TODAY, "day")
    await _setup(postgres_url, [5, 4, 0])
    holder = create_engine(postgres_url)
    try:
        async with holder.connect() as conn:  # another replica, mid-prune
            await conn.execute(text(f"SELECT pg_advisory_lock({PRUNE_LOCK})"))
            assert await prune(postgres_url, details_days=3) is None
            assert await totals(postgres_url) == (9, 99, 18, 9)
            await conn.execute(text(f"SELECT pg_advisory_unlock({PRUNE_LOCK})"))
    finally:
        await holder.dispose()
    both = await asyncio.gather(*(prune(postgres_url, details_days=3) for _ in range(2)))
    done = [r for r in both if r]
    assert len(done) == 1 and len(done[0]) == 2  # two partitions, dropped once, no error
    assert all(r in (None, []) for r in both if r is not done[0])
    assert await totals(postgres_url) == (3, 33, 6, 3)


async def test_archive_before_drop_and_restore_round_trip(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("postgresql"):
        engine = create_engine(database_url)
        await migrate.upgrade(engine)
        await engine.dispose()
        await ensure(database_url, TODAY - timedelta(days=60), TODAY, "month")
    await _setup(database_url, [60, 59, 1])
    await write(database_url, [report("odd\\N", TODAY - timedelta(days=60), 7)._replace(
        user_id=None, provider_name="\\backslash", request_id="")])  # fmt: skip
    old = f"date < '{TODAY - timedelta(days=30)}'"
    before = await totals(database_url, where=old)
    t = schema.model_usage_details
    rows = select(t.c.dedup_key, t.c.date, t.c.user_id, t.c.provider_name, t.c.request_id,
                  t.c.completed_at, t.c.estimated).order_by(t.c.dedup_key)  # fmt: skip
    everything = await query(database_url, rows)
    removed = await prune(database_url, details_days=30, archive_dir=tmp_path / "archive")
    assert removed and all("archived to" in r for r in removed)
    files = sorted((tmp_path / "archive").glob("*.csv.gz"))
    assert files and await totals(database_url, where=old) == (0, 0, 0, 0)
    assert sum(archive.read_totals(f).rows for f in files) == before[0] == 7
    engine = create_engine(database_url)
    try:
        restored = [await archive.restore(engine, f) for f in files]
        again = [await archive.restore(engine, f) for f in files]
    finally:
        await engine.dispose()
    assert sum(r[1] for r in restored) == 7 and sum(r[0] for r in again) == 7
    assert sum(r[1] for r in again) == 0
    assert await totals(database_url, where=old) == before
    assert await query(database_url, rows) == everything
    # Pruned again: the first archives are kept, the new ones take the next free names.
    assert await prune(database_url, details_days=30, archive_dir=tmp_path / "archive")
    names = sorted(f.name for f in (tmp_path / "archive").glob("*.csv.gz"))
    assert names == sorted([*(f.name for f in files),
                            *(f.name.replace(".csv.gz", ".1.csv.gz") for f in files)])


async def test_a_failed_archive_keeps_the_rows(database_url: str, tmp_path: Path) -> None:
    await _setup(database_url, [40, 1])
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the archive folder should be")
    before = await totals(database_url)
    removed = await prune(database_url, details_days=30, archive_dir=blocked / "sub")
    assert removed == []
    assert await totals(database_url) == before == (6, 66, 12, 6)


async def test_without_a_default_partition_old_partitions_detach_concurrently(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    await ensure(postgres_url, TODAY - timedelta(days=5), TODAY, "day")
    await _setup(postgres_url, [5, 0])
    await execute(postgres_url, "DROP TABLE model_usage_details_default")
    day = TODAY - timedelta(days=5)
    assert await prune(postgres_url, details_days=3) == [
        f"partition model_usage_details_p{day:%Y%m%d} ({day}..{day}): 3 rows"
    ]
    assert await totals(postgres_url) == (3, 33, 6, 3)
    assert await query(postgres_url, "select count(*) from pg_inherits where inhdetachpending") == [
        (0,)
    ]
