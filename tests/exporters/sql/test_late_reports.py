"""Reports and cumulative points older than the retention horizon are rejected at commit,
kept in ``usage_rejects`` and counted as rejected, never summed."""

from __future__ import annotations

from datetime import timedelta

from collector.aggregation.horizon import Horizon
from collector.model import PointSample, Source, UsageReport, Work
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.sink import SqlSink
from tests.exporters.sql.retention_support import NOW, TODAY, day_ms, report, totals
from tests.support import query

NS = 1_000_000


def _sample(stream: str, start_ms: int, at_ms: int, value: int) -> PointSample:
    template = UsageReport(model="m1", source=Source.METRIC, dedup_key=f"{stream}/{at_ms}",
                           received_at=at_ms, completed_at=at_ms)  # fmt: skip
    return PointSample(stream, start_ms * NS, at_ms * NS, value, 1, True, "input_token", template)


async def _sink(url: str) -> SqlSink:
    engine = create_engine(url)
    await migrate.upgrade(engine)
    return SqlSink(engine, clock=lambda: NOW, horizon=Horizon(30))


async def test_a_report_before_the_horizon_is_rejected_at_commit(database_url: str) -> None:
    sink = await _sink(database_url)
    old, edge, kept = (TODAY - timedelta(days=n) for n in (31, 30, 0))
    try:
        done = await sink.write(Work(reports=[
            report("old", old, 100, second=86_399), report("edge", edge, 5, second=0),
            report("kept", kept, 7),
        ]))  # fmt: skip
    finally:
        await sink.engine.dispose()
    assert sorted(r.dedup_key for r in done.reports) == ["edge", "kept"]
    assert (done.duplicates, done.rejects, done.accepted) == (0, 1, 2)
    assert await totals(database_url, "model_usages") == (2, 12, 4, 2)
    rejects = await query(database_url, "select source, reason from usage_rejects")
    assert rejects == [("otlp_span", f"older than retention: day {old} is before {edge}, "
                                     "the first day kept")]  # fmt: skip


async def test_a_cumulative_stream_with_state_older_than_the_horizon_is_rejected(
    database_url: str,
) -> None:
    sink = await _sink(database_url)
    long_ago = day_ms(TODAY - timedelta(days=45))
    now = day_ms(TODAY, 3600)
    # "a": state from 45 days ago (not pruned yet); "b": no state, started 45 days ago (its
    # state pruned); "c": a new stream started today counts in full, as before.
    sink_old = SqlSink(sink.engine, clock=lambda: long_ago / 1000 + 60)
    try:
        await sink_old.write(Work(samples=[_sample("a", long_ago - 1000, long_ago, 500)]))
        first = await sink.write(Work(samples=[
            _sample("a", long_ago - 1000, now, 800), _sample("b", long_ago, now, 300),
            _sample("c", now - 1000, now, 40),
        ]))  # fmt: skip
        later = await sink.write(Work(samples=[
            _sample("a", long_ago - 1000, now + 60_000, 810),
            _sample("b", long_ago, now + 60_000, 330),
        ]))  # fmt: skip
    finally:
        await sink.engine.dispose()
    assert ([r.input_token for r in first.reports], first.rejects) == ([40], 2)
    # The rejected points became the streams' state: later points count from them.
    assert (sorted(r.input_token for r in later.reports), later.rejects) == ([10, 30], 0)
    reasons = await query(database_url, "select reason from usage_rejects")
    assert [r[0].split(":")[0] for r in reasons] == ["older than retention"] * 2
    assert await query(database_url, "select sum(prompt_token_count) from model_usages") == [
        (500 + 40 + 10 + 30,)
    ]
