"""Alembic migrations, run programmatically (``tokenbridge migrate`` and ``serve`` at start)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x70CE_B51D
"""PostgreSQL advisory lock taken while migrating, so replicas starting together take turns."""
VERSION_QUERY = "SELECT version_num FROM alembic_version"


def alembic_config(location: Path, connection: Connection | None = None) -> Config:
    """An alembic configuration over the migrations in ``location`` (run on ``connection``,
    which the migrations' env.py reads)."""
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_of(location: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config(location)).get_current_head()


def _config(connection: Connection | None = None) -> Config:
    return alembic_config(MIGRATIONS, connection)


def head() -> str | None:
    return head_of(MIGRATIONS)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_ID})"))
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def is_current(engine: AsyncEngine) -> bool:
    """Ready to take work: the database answers and its schema is at the head revision.

    Reads ``alembic_version`` directly: this runs on every readiness probe and on every
    probe while the database is down, where alembic's context would log each time."""
    try:
        async with engine.connect() as conn:
            versions = [row[0] for row in await conn.execute(text(VERSION_QUERY))]
    except Exception:
        return False
    return versions == [head()]
