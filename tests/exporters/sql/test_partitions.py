"""PostgreSQL's partitioned audit table: partitions ahead, DEFAULT, dedup across partitions,
and the migration of a populated unpartitioned table."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from exporters.sql import migrate
from exporters.sql.engine import create_engine
from tests.exporters.sql.retention_support import (
    TODAY,
    day_ms,
    ensure,
    execute,
    partition_names,
    report,
    totals,
    write,
)
from tests.support import ROOT, query


def _migrate_cli(url: str, tmp_path: Path, retention: dict[str, object]) -> str:
    config = tmp_path / "tokenbridge.yaml"
    config.write_text(yaml.safe_dump({"retention": retention}))
    done = subprocess.run(
        [sys.executable, "-m", "collector", "migrate", "-c", str(config), "--database-url", url],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def _months(first: date, count: int) -> list[str]:
    names, day = [], first.replace(day=1)
    for _ in range(count):
        names.append(f"model_usage_details_p{day:%Y%m}")
        day = (day + timedelta(days=32)).replace(day=1)
    return names


async def test_migrate_creates_month_partitions_ahead_and_a_default(
    postgres_url: str, tmp_path: Path
) -> None:
    out = _migrate_cli(postgres_url, tmp_path, {})
    today = datetime.now(UTC).date()
    expected = sorted([*_months(today, 4), "model_usage_details_default"])
    assert await partition_names(postgres_url) == expected
    assert "created partitions" in out
    kind = "select relkind::text from pg_class where relname = 'model_usage_details'"
    assert await query(postgres_url, kind) == [("p",)]
    again = _migrate_cli(postgres_url, tmp_path, {})  # nothing more to create
    assert "created" not in again and await partition_names(postgres_url) == expected


async def test_day_partitions_ahead_fill_the_days_a_month_partition_leaves(
    postgres_url: str, tmp_path: Path
) -> None:
    _migrate_cli(postgres_url, tmp_path, {"partition": "day", "partitions_ahead": 2})
    today = datetime.now(UTC).date()
    days = [f"model_usage_details_p{today + timedelta(days=n):%Y%m%d}" for n in range(3)]
    assert await partition_names(postgres_url) == sorted([*days, "model_usage_details_default"])


async def test_a_day_without_partition_lands_in_default_then_moves_into_its_partition(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    old = date(2023, 11, 14)
    assert await write(postgres_url, [report("a", old), report("b", old, 5)]) == (2, 0)
    assert await totals(postgres_url, "model_usage_details_default") == (2, 15, 4, 2)
    assert await ensure(postgres_url, old, old, "day") == ["model_usage_details_p20231114"]
    assert await totals(postgres_url, "model_usage_details_default") == (0, 0, 0, 0)
    assert await totals(postgres_url, "model_usage_details_p20231114") == (2, 15, 4, 2)
    assert await write(postgres_url, [report("a", old), report("c", old, 1)]) == (1, 1)
    assert await totals(postgres_url, "model_usages") == (1, 16, 6, 3)


async def test_duplicates_across_partitions_are_counted_once(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    days = [TODAY - timedelta(days=n) for n in (40, 2, 1, 0)]  # two months, three days
    await ensure(postgres_url, days[1], days[-1], "day")
    await ensure(postgres_url, days[0], days[0], "month")
    first = [report(f"k{n}", day, 10 + n) for n, day in enumerate(days)]
    assert await write(postgres_url, first) == (4, 0)
    resent = [*first, report("new", days[2], 100)]
    assert await write(postgres_url, resent[::-1]) == (1, 4)
    assert await write(postgres_url, first) == (0, 4)
    assert await totals(postgres_url) == (5, 146, 10, 5)
    assert await totals(postgres_url, "model_usages") == (4, 146, 10, 5)
    placed = await query(postgres_url, "select tableoid::regclass::text, count(*) from "
                                       "model_usage_details group by 1 order by 1")  # fmt: skip
    month = f"model_usage_details_p{days[0]:%Y%m}"
    assert placed == sorted([(month, 1), *((f"model_usage_details_p{d:%Y%m%d}", 1 + (d == days[2]))
                                          for d in days[1:])])  # fmt: skip


async def _populate_unpartitioned(url: str, rows: int) -> None:
    """``rows`` audit rows over about three months, ids 7 apart (several copy batches)."""
    await execute(url, f"""
        insert into model_usage_details (id, dedup_key, date, model_name, user_id,
            prompt_token_count, completion_token_count, request_count, total_token_count,
            completed, estimated, source, created_at, updated_at)
        select n * 7, 'key-' || n, date '2026-03-01' + (n % 95), 'm' || (n % 5), 'u' || (n % 9),
            n % 1000, n % 77, 1, n % 1000 + n % 77, true, n % 3 = 0, 'otlp_span',
            timestamp '2026-03-01' + (n % 95) * interval '1 day', now()
        from generate_series(1, {rows}) as n""")
    await execute(url, f"select setval('model_usage_details_id_seq', {rows * 7})")


CHECKSUM = ("select count(*), sum(prompt_token_count), sum(completion_token_count), "
            "sum(request_count), sum(hashtext(dedup_key)::bigint), sum(id), "
            "sum(hashtext(date::text || user_id || model_name)::bigint) from model_usage_details")


async def test_migration_turns_a_populated_table_into_partitions_row_for_row(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    try:
        await migrate.upgrade(engine, "0001")
        await _populate_unpartitioned(postgres_url, 40_000)
        before = await query(postgres_url, CHECKSUM)
        await migrate.upgrade(engine)
        assert await migrate.current(engine) == migrate.head()
    finally:
        await engine.dispose()
    assert await query(postgres_url, CHECKSUM) == before
    assert before[0][0] == 40_000
    months = ["model_usage_details_default", *_months(date(2026, 3, 1), 4)]
    assert await partition_names(postgres_url) == sorted(months)
    assert await totals(postgres_url, "model_usage_details_default") == (0, 0, 0, 0)
    assert await query(postgres_url, "select to_regclass('model_usage_details_unpartitioned')") == [
        (None,)
    ]
    # Ids go on from the old sequence; an old row's resend is a duplicate.
    old = report("key-5", date(2026, 3, 6))
    new = report("fresh", date(2026, 4, 2))
    assert await write(postgres_url, [old, new]) == (1, 1)
    assert await query(postgres_url, "select id > 280000 from model_usage_details "
                                     "where dedup_key = 'fresh'") == [(True,)]  # fmt: skip


async def test_sqlite_keeps_its_table_and_rows_through_the_migration(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        await migrate.upgrade(engine, "0001")
        for n in range(50):  # rows as revision 0001 stores them
            await execute(sqlite_url, f"""insert into model_usage_details (dedup_key, date,
                model_name, prompt_token_count, completion_token_count, request_count,
                completed, estimated, source, created_at, updated_at) values ('k{n}',
                '{date(2026, 3, 1 + n % 20)}', 'm1', {n}, 2, 1, 1, 0, 'otlp_span',
                '2026-03-01 00:00:00', '2026-03-01 00:00:00')""")
        before = await totals(sqlite_url)
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    assert await totals(sqlite_url) == before == (50, 1225, 100, 50)
    assert await write(sqlite_url, [report("k3", date(2026, 3, 4), 3)]) == (0, 1)





async def test_a_report_without_timestamp_resent_after_midnight_is_counted_once(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    day = date(2026, 6, 14)
    await ensure(postgres_url, day, day + timedelta(days=1), "day")
    sent = report("push-1", day)._replace(completed_at=None, received_at=day_ms(day, 86_399))
    resent = sent._replace(received_at=day_ms(day + timedelta(days=1), 30))
    timed = report("span-1", day + timedelta(days=1))
    assert await write(postgres_url, [sent]) == (1, 0)
    assert await write(postgres_url, [resent, timed]) == (1, 1)
    assert await totals(postgres_url) == (2, 20, 4, 2)
    assert await totals(postgres_url, "model_usages") == (2, 20, 4, 2)
