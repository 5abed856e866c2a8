"""GPUStack's catalog tables -> ``GpustackCatalog``, read at start and every few seconds.

Every ``interval`` seconds (``database.catalog_refresh``, default 2) the six tables are read in
one transaction and a new catalog replaces the old one (``install``), so a model, user, route
or key added in GPUStack's UI counts within seconds; until then its reports are rejected with
the reason (kept in ``tokenbridge_rejects``). A failed read is logged and the last catalog
stays. Soft-deleted rows stay valid, as GPUStack's own collector reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.mapping.gpustack_catalog import (
    GpustackCatalog,
    GsApiKey,
    GsModel,
    GsPrincipal,
    GsProvider,
    GsRoute,
)
from exporters.sql.gpustack import tables as t

logger = logging.getLogger(__name__)


async def read(conn: AsyncConnection) -> GpustackCatalog:
    models = {
        row.id: GsModel(row.name, frozenset(_names(row.categories)), row.cluster_id,
                        row.owner_principal_id)
        for row in await conn.execute(select(t.models))
    }  # fmt: skip
    routes = {
        row.id: GsRoute(row.name, row.created_model_id, row.owner_principal_id)
        for row in await conn.execute(select(t.model_routes))
    }
    providers = {
        row.id: GsProvider(row.name, _provider_type(row.config),
                           frozenset(_model_names(row.models)), row.owner_principal_id)
        for row in await conn.execute(select(t.model_providers))
    }  # fmt: skip
    principals = {
        row.id: GsPrincipal(row.name, str(row.kind).lower())
        for row in await conn.execute(select(t.principals))
    }
    keys = {
        row.access_key: GsApiKey(row.id, row.name, bool(row.is_custom), row.owner_principal_id)
        for row in await conn.execute(select(t.api_keys))
    }
    clusters = {row.id: row.name for row in await conn.execute(select(t.clusters))}
    return GpustackCatalog(models, routes, providers, principals, keys, clusters)


async def load(engine: AsyncEngine) -> GpustackCatalog:
    async with engine.connect() as conn:
        return await read(conn)


async def refresh(engine: AsyncEngine, interval: float,
                  install: Callable[[GpustackCatalog], None]) -> None:  # fmt: skip
    """Read the catalog every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            install(await load(engine))
        except Exception as exc:  # a database outage must not stop the refresh
            logger.warning("GPUStack catalog not refreshed, keeping the last one: %s", exc)


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _model_names(value: Any) -> list[str]:
    """Provider models: a JSON list of objects with a ``name`` (or of plain names)."""
    if not isinstance(value, list):
        return []
    names = [v.get("name") if isinstance(v, dict) else v for v in value]
    return [n for n in names if isinstance(n, str)]


def _provider_type(config: Any) -> str | None:
    kind = config.get("type") if isinstance(config, dict) else None
    return kind if isinstance(kind, str) else None
