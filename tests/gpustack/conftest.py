"""Fixtures of the ``gpustack`` tests: GPUStack 2.3's environment and a database it made."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, _admin_dsn
from tests.gpustack.support import SPEC, GpuStack, gpustack_python


@pytest.fixture(scope="session")
def gpustack() -> GpuStack:
    return GpuStack(gpustack_python())


async def make_gpustack_db(gpustack: GpuStack, url: str) -> dict[str, int]:
    """GPUStack's migrations on the empty database ``url``, then the catalog through its own
    models; the ids of the catalog rows by reference."""
    await asyncio.to_thread(gpustack.run, "migrate", url)
    ids: dict[str, int] = await asyncio.to_thread(gpustack.run, "seed", url, SPEC)
    return ids


@pytest.fixture
async def gpustack_db(gpustack: GpuStack, postgres_url: str) -> tuple[str, dict[str, Any]]:
    return postgres_url, await make_gpustack_db(gpustack, postgres_url)


@pytest.fixture
async def oracle_db(
    gpustack: GpuStack, postgres_url: str
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A second GPUStack database beside ``postgres_url``'s, for GPUStack's own collector."""
    admin = await asyncpg.connect(_admin_dsn(), timeout=5)
    name = f"tb_oracle_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        yield url, await make_gpustack_db(gpustack, url)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
