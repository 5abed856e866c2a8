"""The GPUStack layout's schema: GPUStack's tables checked, tokenbridge's bookkeeping migrated.

GPUStack's own tables come from GPUStack's migrations; tokenbridge only checks that they are
there, at a revision it was written for (``SUPPORTED``, read from GPUStack's
``alembic_version``), and refuses to start otherwise. Its own tables have their own history in
``tokenbridge_alembic_version``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exporters.sql.gpustack.tables import REQUIRED_TABLES, VERSION_TABLE
from exporters.sql.migrate import LOCK_ID, alembic_config, head_of

MIGRATIONS = Path(__file__).with_name("migrations")
SUPPORTED = {"a7e2c9d4f681": "GPUStack 2.3"}
"""GPUStack schema revisions (its alembic head) whose usage tables this layout writes."""


class SchemaError(ValueError):
    """GPUStack's tables are missing or from a revision this layout does not know."""


def _config(connection: Connection | None = None) -> Config:
    return alembic_config(MIGRATIONS, connection)


def head() -> str | None:
    return head_of(MIGRATIONS)


async def check(conn: AsyncConnection) -> None:
    """Raise ``SchemaError`` (one line saying what to do) unless GPUStack's schema is there."""
    if conn.dialect.name != "postgresql":
        raise SchemaError("database.layout gpustack needs GPUStack's PostgreSQL database "
                          f"(database.url is {conn.dialect.name})")  # fmt: skip
    tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    if "alembic_version" not in tables:
        raise SchemaError("database.layout gpustack: no GPUStack schema in this database "
                          "(no alembic_version table); point database.url at GPUStack's "
                          "database, or start GPUStack once to create it")  # fmt: skip
    result = await conn.execute(text("SELECT version_num FROM alembic_version"))
    versions = [row[0] for row in result]
    if len(versions) != 1 or versions[0] not in SUPPORTED:
        known = ", ".join(f"{rev} ({name})" for rev, name in SUPPORTED.items())
        raise SchemaError(f"database.layout gpustack: GPUStack schema revision "
                          f"{', '.join(versions) or 'none'} is not supported (supported: {known})")
    missing = [name for name in REQUIRED_TABLES if name not in tables]
    if missing:
        raise SchemaError(
            f"database.layout gpustack: GPUStack tables missing: {', '.join(missing)}"
        )


async def upgrade(engine: AsyncEngine) -> None:
    """Check GPUStack's schema, then bring tokenbridge's bookkeeping tables to their head."""
    async with engine.begin() as conn:
        await check(conn)
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_ID})"))
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), "head"))


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(
                sync, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
        )


async def is_current(engine: AsyncEngine) -> bool:
    """The database answers and tokenbridge's bookkeeping is at its head revision."""
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
            versions = [row[0] for row in result]
    except Exception:
        return False
    return versions == [head()]
