"""The sink's staged bulk writes keep its semantics: duplicates skipped, rollups exact."""

from __future__ import annotations

from datetime import datetime

from collector.model import Operation, Source, UsageReport, Work
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.sink import SqlSink
from tests.support import query

DAY_MS = 1_700_000_000_000  # 2023-11-14 UTC


def _report(
    key: str, user: str, tokens: int, provider: str = "p1", estimated: bool = False
) -> UsageReport:
    return UsageReport(
        model="gpt.4o", source=Source.SPAN, dedup_key=key, received_at=DAY_MS,
        input_token=tokens, output_token=1, total_token=tokens + 1, completed_at=DAY_MS,
        user_id=user, provider_name=provider, operation=Operation.CHAT_COMPLETION,
        estimated=estimated,
    )  # fmt: skip


async def test_staged_writes_skip_duplicates_and_sum_rollups(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    clock = [1_700_000_100.0]
    sink = SqlSink(engine, clock=lambda: clock[0])
    try:
        first = await sink.write(Work(reports=[
            _report("a", "u1", 10), _report("b", "u1", 20, provider="p2", estimated=True),
            _report("c", "u2", 5),
            _report("a", "u1", 999),  # same key in one batch: the first wins
        ]))  # fmt: skip
        clock[0] += 60
        second = await sink.write(Work(reports=[_report("b", "u1", 20), _report("d", "u1", 7)]))
    finally:
        await engine.dispose()
    assert (len(first.reports), first.duplicates) == (3, 1)
    assert ([r.dedup_key for r in second.reports], second.duplicates) == (["d"], 1)
    assert await query(database_url, "select count(*) from model_usage_details") == [(4,)]
    rollups = await query(
        database_url,
        "select user_id, provider_name, prompt_token_count, completion_token_count,"
        " request_count, estimated_request_count, created_at, updated_at"
        " from model_usages order by user_id",
    )
    created, updated = datetime(2023, 11, 14, 22, 15), datetime(2023, 11, 14, 22, 16)
    # Non-summed fields from the first report of the key in key order ("a" before "b").
    assert [r[:6] for r in rollups] == [("u1", "p1", 37, 3, 3, 1), ("u2", "p1", 5, 1, 1, 0)]
    assert [tuple(_naive(t) for t in r[6:]) for r in rollups] == [
        (created, updated), (created, created),
    ]  # fmt: skip


def _naive(value: object) -> datetime:
    """A timestamp column as a naive datetime (SQLite hands back text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value


async def test_extra_dimensions_split_rollups_in_the_database(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    sink = SqlSink(engine, extra_dimensions=("model_route_id",))
    reports = [
        _report(key, "u1", tokens)._replace(model_route_id=route)
        for key, tokens, route in (("a", 1, 7), ("b", 2, 7), ("c", 4, 8), ("d", 8, None))
    ]
    try:
        await sink.write(Work(reports=reports[:2]))
        await sink.write(Work(reports=reports[2:]))
    finally:
        await engine.dispose()
    rows = await query(
        database_url,
        "select model_route_id, prompt_token_count, request_count from model_usages"
        " order by model_route_id nulls first",
    )
    assert rows == [(None, 8, 1), (7, 3, 2), (8, 4, 1)]
