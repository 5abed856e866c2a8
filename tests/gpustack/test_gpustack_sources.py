"""The source rule in the GPUStack layout: the same switch from metrics to spans as
``tests/exporters/sql/test_producer_sources.py``, its state in ``tokenbridge_producer_sources``
beside GPUStack's tables."""

from __future__ import annotations

import pytest

from exporters.sql.engine import create_engine
from exporters.sql.gpustack import migrate
from exporters.sql.gpustack.sink import GpustackSink
from tests.exporters.sql.test_producer_sources import IDENTITY, NS, switching_writes
from tests.support import query

pytestmark = [pytest.mark.gpustack, pytest.mark.postgres]


async def test_switching_sources_counts_each_token_once_in_gpustack_tables(
    gpustack_db: tuple[str, dict[str, int]],
) -> None:
    url, _ids = gpustack_db
    engine = create_engine(url)
    await migrate.upgrade(engine)
    try:
        await switching_writes(GpustackSink(engine))
    finally:
        await engine.dispose()
    assert await query(url, "SELECT sum(prompt_token_count), sum(request_count) "
                            "FROM model_usages") == [(30 + 10 + 10, 3 + 1 + 1)]  # fmt: skip
    rows = await query(url, "SELECT service_name, spans, metrics_until "
                            "FROM tokenbridge_producer_sources")  # fmt: skip
    assert rows == [(IDENTITY[1], True, NS + 10)]
    assert await query(url, "SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name = 'producer_sources'") == [(0,)]  # fmt: skip
