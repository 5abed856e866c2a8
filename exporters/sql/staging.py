"""Bulk statements of the commit transaction, through a per-connection staging table.

Compiling a multi-row ``INSERT ... VALUES`` with tens of thousands of bind parameters costs
the ORM layer far more than the database spends running it. So rows are first loaded into a
temporary table of the same column types (PostgreSQL: binary ``COPY`` through asyncpg; SQLite:
one ``executemany``), then moved by one ``INSERT ... SELECT ... ORDER BY key ON CONFLICT``,
which keeps the sink's semantics: conflicting audit rows are skipped, rollups are summed, and
rows are written in key order so concurrent writers lock in one order.

Everything runs inside the caller's transaction: the staging table is emptied at commit on
PostgreSQL (``ON COMMIT DELETE ROWS``) and explicitly after each use on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


async def _stage(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> str:
    """Load ``rows`` into this connection's staging table for ``table``; its name."""
    stage = f"tb_stage_{table.name}"
    cols = _quoted(columns)
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {cols} FROM {table.name} WITH NO DATA"
        )
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if driver is None or not driver.is_in_transaction():
            raise RuntimeError("staging must run inside the commit transaction")
        await driver.copy_records_to_table(stage, records=rows, columns=list(columns))
    else:
        await conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {table.name} WHERE 0"
        )
        marks = ", ".join("?" * len(columns))
        await conn.exec_driver_sql(f"INSERT INTO {stage} ({cols}) VALUES ({marks})", list(rows))
    return stage


async def _unstage(conn: AsyncConnection, stage: str) -> None:
    if conn.dialect.name != "postgresql":
        await conn.exec_driver_sql(f"DELETE FROM {stage}")


async def insert_new(
    conn: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    key: str,
) -> set[str]:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``; the keys of the rows actually inserted."""
    if not rows:
        return set()
    stage = await _stage(conn, table, columns, rows)
    cols = _quoted(columns)
    result = await conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} WHERE true "
        f'ORDER BY "{key}" ON CONFLICT ("{key}") DO NOTHING RETURNING "{key}"'
    )
    inserted = {row[0] for row in result}
    await _unstage(conn, stage)
    return inserted


async def upsert_sum(
    conn: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    key: str,
    summed: Sequence[str],
    replaced: Sequence[str] = (),
) -> None:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET n = n + excluded.n`` for ``summed``
    columns and ``c = excluded.c`` for ``replaced`` ones."""
    if not rows:
        return
    stage = await _stage(conn, table, columns, rows)
    cols = _quoted(columns)
    sets = [f'"{n}" = {table.name}."{n}" + excluded."{n}"' for n in summed]
    sets += [f'"{n}" = excluded."{n}"' for n in replaced]
    await conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} WHERE true "
        f'ORDER BY "{key}" ON CONFLICT ("{key}") DO UPDATE SET {", ".join(sets)}'
    )
    await _unstage(conn, stage)
