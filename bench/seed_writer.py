"""A seed-style writer, for the persistence ratio: GPUStack's way of storing a flush.

For every rollup row of a batch (aggregated in memory first, as GPUStack's buffer does), an ORM
``SELECT`` by the key columns, then either an attribute update of the loaded row or an ORM add;
every audit row is an ORM add; one commit per batch. The same reports go through
``SqlSink.write`` for the reference.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry

from collector.model import UsageReport, Work
from exporters.sql import migrate, schema
from exporters.sql.engine import create_engine
from exporters.sql.rows import SUMMED, detail_row, rollups
from exporters.sql.sink import SqlSink

_registry = registry()
KEY_COLUMNS = ("model_id", "user_id", "provider_id", "provider_name", "provider_type",
               "model_name", "access_key", "operation", "date")  # fmt: skip


class ModelUsage:
    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


class ModelUsageDetail(ModelUsage):
    pass


_registry.map_imperatively(ModelUsage, schema.model_usages)
_registry.map_imperatively(ModelUsageDetail, schema.model_usage_details)


async def seed_write(session: AsyncSession, reports: list[UsageReport]) -> None:
    now = datetime.now(UTC)
    for row in rollups(reports, UTC, (), now):
        query = select(ModelUsage).filter_by(**{k: row[k] for k in KEY_COLUMNS})
        current = (await session.execute(query)).scalar_one_or_none()
        if current is None:
            session.add(ModelUsage(**row))
            await session.flush()
        else:
            for name in SUMMED:
                setattr(current, name, getattr(current, name) + row[name])
            await session.flush()
    session.add_all([ModelUsageDetail(**detail_row(r, UTC)) for r in reports])
    await session.commit()


async def rows_per_second(url: str, batches: list[list[UsageReport]], seconds: float,
                          seed_style: bool) -> tuple[float, int]:  # fmt: skip
    """Audit rows per second writing ``batches`` in order for at most ``seconds``."""
    engine = create_engine(url)
    await migrate.upgrade(engine)
    written = 0
    started = time.perf_counter()
    try:
        if seed_style:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                for batch in batches:
                    await seed_write(session, batch)
                    written += len(batch)
                    if time.perf_counter() - started > seconds:
                        break
        else:
            sink = SqlSink(engine)
            for batch in batches:
                written += len((await sink.write(Work(reports=batch))).reports)
                if time.perf_counter() - started > seconds:
                    break
        elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    return written / elapsed, written
