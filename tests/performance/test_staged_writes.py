"""The sink's staged bulk writes keep its semantics: duplicates skipped, rollups exact."""

from __future__ import annotations

from collector.pipeline import Work
from collector.report import Operation, Source, UsageReport
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.sink import SqlSink
from tests.support import query

DAY_MS = 1_700_000_000_000  # 2023-11-14 UTC


def _report(key: str, user: str, tokens: int, provider: str = "p1") -> UsageReport:
    return UsageReport(
        model="gpt.4o", source=Source.SPAN, dedup_key=key, received_at=DAY_MS,
        input_token=tokens, output_token=1, total_token=tokens + 1, completed_at=DAY_MS,
        user_id=user, provider_name=provider, operation=Operation.CHAT_COMPLETION,
    )  # fmt: skip


async def test_staged_writes_skip_duplicates_and_sum_rollups(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    sink = SqlSink(engine)
    try:
        first = await sink.write(Work(reports=[
            _report("a", "u1", 10), _report("b", "u1", 20, provider="p2"), _report("c", "u2", 5),
            _report("a", "u1", 999),  # same key in one batch: the first wins
        ]))  # fmt: skip
        second = await sink.write(Work(reports=[_report("b", "u1", 20), _report("d", "u1", 7)]))
    finally:
        await engine.dispose()
    assert (len(first.reports), first.duplicates) == (3, 1)
    assert ([r.dedup_key for r in second.reports], second.duplicates) == (["d"], 1)
    assert await query(database_url, "select count(*) from model_usage_details") == [(4,)]
    rollups = await query(
        database_url,
        "select user_id, provider_name, prompt_token_count, completion_token_count,"
        " request_count from model_usages order by user_id",
    )
    # Non-summed fields from the first report of the key in key order ("a" before "b").
    assert rollups == [("u1", "p1", 37, 3, 3), ("u2", "p1", 5, 1, 1)]
