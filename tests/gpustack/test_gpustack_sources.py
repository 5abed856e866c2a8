"""The source rule in the GPUStack layout: the same switch from metrics to spans as
``tests/exporters/sql/test_producer_sources.py``, its state in ``tokenbridge_producer_sources``
beside GPUStack's tables."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.model import Ignored, Work
from exporters.sql.engine import create_engine
from exporters.sql.gpustack import migrate
from exporters.sql.gpustack.sink import GpustackSink
from tests.exporters.sql.test_producer_sources import IDENTITY, NS, _items, _point, _span, _work
from tests.support import query

pytestmark = [pytest.mark.gpustack, pytest.mark.postgres]


async def test_switching_sources_counts_each_token_once_in_gpustack_tables(
    gpustack_db: tuple[str, dict[str, int]],
) -> None:
    url, _ids = gpustack_db
    engine = create_engine(url)
    await migrate.upgrade(engine)
    sink = GpustackSink(engine)
    try:
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
        forced = await sink.write(Work(samples=[_point(NS + 40, 60, 6)]))
        assert forced.accepted == 1
    finally:
        await engine.dispose()
    assert (first, second, third) == (Counter(), Counter({Ignored.FROM_METRICS: 2}),
                                      Counter({Ignored.FROM_SPANS: 1}))  # fmt: skip
    assert await query(url, "SELECT sum(prompt_token_count), sum(request_count) "
                            "FROM model_usages") == [(30 + 10 + 10, 3 + 1 + 1)]  # fmt: skip
    rows = await query(url, "SELECT service_name, spans, metrics_until "
                            "FROM tokenbridge_producer_sources")  # fmt: skip
    assert rows == [(IDENTITY[1], True, NS + 10)]
    assert await query(url, "SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name = 'producer_sources'") == [(0,)]  # fmt: skip
