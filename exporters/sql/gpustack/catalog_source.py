"""GPUStack's catalog tables, read as plain rows at start and every few seconds.

Every ``interval`` seconds (``database.catalog_refresh``, default 2) the six tables are read in
one transaction and handed to ``install`` (the wiring builds a new
``collector.mapping.gpustack_catalog.GpustackCatalog`` from them and swaps it in), so a model,
user, route or key added in GPUStack's UI counts within seconds; until then its reports are
rejected with the reason (kept in ``tokenbridge_rejects``). A failed read is logged and the last
catalog stays. Soft-deleted rows are read too: GPUStack's own collector validates with them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exporters.sql.gpustack import tables as t

logger = logging.getLogger(__name__)
CatalogRows = dict[str, list[dict[str, Any]]]
"""Table name -> its rows (column name -> value), for the columns in ``tables``."""
TABLES = (t.models, t.model_routes, t.model_providers, t.principals, t.api_keys, t.clusters)


async def read(conn: AsyncConnection) -> CatalogRows:
    return {table.name: [dict(row._mapping) for row in await conn.execute(select(table))]
            for table in TABLES}  # fmt: skip


async def load(engine: AsyncEngine) -> CatalogRows:
    async with engine.connect() as conn:
        return await read(conn)


async def refresh(engine: AsyncEngine, interval: float,
                  install: Callable[[CatalogRows], None]) -> None:  # fmt: skip
    """Read the catalog every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            install(await load(engine))
        except Exception as exc:  # a database outage must not stop the refresh
            logger.warning("GPUStack catalog not refreshed, keeping the last one: %s", exc)
