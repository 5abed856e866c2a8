"""The source rule against ``producer_sources`` in the commit transaction, through the SQL
sink: what counts, what each request is told was ignored, and streams that keep moving while
their points are ignored."""

from __future__ import annotations

from collections import Counter

from collector.aggregation.sources import producer_identity, producer_key
from collector.model import (
    BatchWriter,
    Ignored,
    PointSample,
    ProducerItems,
    Source,
    UsageReport,
    Work,
)
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.sink import SqlSink
from tests.support import query

MS = 1_700_000_000_000
NS = MS * 1_000_000
IDENTITY = producer_identity({"service.name": "app", "service.instance.id": "1"})
SUMS = "select sum(prompt_token_count), sum(request_count) from model_usages"


def _items(tally: Counter[str]) -> ProducerItems:
    return ProducerItems(producer_key(IDENTITY), IDENTITY, tally)


def _span(n: int, end_ns: int, items: ProducerItems) -> None:
    items.spans.append(UsageReport(model="m", source=Source.SPAN, dedup_key=f"s{n}",
                                   received_at=MS, input_token=10, total_token=10,
                                   completed_at=end_ns // 1_000_000))  # fmt: skip
    items.ends.append(end_ns)


def _point(time_ns: int, value: int, count: int) -> PointSample:
    template = UsageReport(model="m", source=Source.METRIC, dedup_key=f"pt{time_ns}",
                           received_at=MS, request_count=0)  # fmt: skip
    return PointSample("stream-1", NS, time_ns, value, count, True, "input_token", template)


def _work(items: ProducerItems) -> Work:
    return Work(producers=[items], ignored=items.ignored)


async def switching_writes(sink: BatchWriter) -> None:
    """One producer's metrics, then its spans, then metrics again, then forced metrics,
    through ``sink`` (either layout's): each write's accepted and ignored counts checked."""
    first = Counter[str]()  # metrics: 3 calls, 30 tokens up to T1
    items = _items(first)
    items.points.append(_point(NS + 10, 30, 3))
    assert (await sink.write(_work(items))).accepted == 1
    second = Counter[str]()  # spans: two ended before T1, one after
    items = _items(second)
    for n, end in enumerate((NS + 5, NS + 9, NS + 20)):
        _span(n, end, items)
    assert (await sink.write(_work(items))).accepted == 1
    third = Counter[str]()  # the stream at T2 (after the switch) and a late one at T1
    items = _items(third)
    items.points += [_point(NS + 30, 50, 5), _point(NS + 10, 30, 3)]
    assert (await sink.write(_work(items))).accepted == 1
    # Forced to metrics from now on (sources.genai_metrics: true): the stream moved on while
    # ignored, so only what came after T2 counts.
    forced = await sink.write(Work(samples=[_point(NS + 40, 60, 6)]))
    assert forced.accepted == 1
    assert (first, second, third) == (Counter(), Counter({Ignored.FROM_METRICS: 2}),
                                      Counter({Ignored.FROM_SPANS: 1}))  # fmt: skip


async def test_switching_sources_counts_each_token_once(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    try:
        await switching_writes(SqlSink(engine))
        rows = await query(database_url, "select producer_key, service_name, "
                           "service_instance_id, spans, metrics_until from producer_sources")
    finally:
        await engine.dispose()
    assert await query(database_url, SUMS) == [(30 + 10 + 10, 3 + 1 + 1)]
    assert [(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows] == [
        (producer_key(IDENTITY), "app", "1", True, NS + 10)]  # fmt: skip
