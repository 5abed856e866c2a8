"""Bulk statements of the commit transaction, through a per-connection staging table.

Compiling a multi-row ``INSERT ... VALUES`` with tens of thousands of bind parameters costs
the ORM layer far more than the database spends running it. So audit rows are first loaded
into a temporary table of the same column types, plus the ``rollup_key`` each row is summed
under (PostgreSQL: binary ``COPY`` through asyncpg; SQLite: one ``executemany``). Then, in the
caller's transaction:

1. ``INSERT ... SELECT ... ORDER BY dedup_key ON CONFLICT (<unique key>) DO NOTHING
   RETURNING dedup_key`` writes the audit rows not seen before (the unique key is
   ``(dedup_key, date)`` on PostgreSQL's partitioned table, ``dedup_key`` on SQLite); the
   rows that conflicted are dropped from the stage;
2. ``INSERT INTO model_usages SELECT ... GROUP BY rollup_key ORDER BY rollup_key ON CONFLICT
   DO UPDATE SET n = n + excluded.n`` adds what is left to the rollups. The database sums, so
   the bridge's one Python core only builds audit rows; non-summed fields come from the
   group's first row by ``dedup_key``, as ``rows.RowBuilder.rollups`` does in memory.

Rows are written in key order so concurrent writers lock in one order. The staging table is
emptied at commit on PostgreSQL (``ON COMMIT DELETE ROWS``) and explicitly on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Table, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

DELETE_CHUNK = 5000
"""Keys bound in one ``DELETE ... IN`` (SQLite allows 32766 parameters a statement)."""


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


class Stage:
    """This connection's staging table for ``table``: its columns, then ``rollup_key``.

    ``converted`` (PostgreSQL only): stage columns of another type than the table's, as
    column -> (stage type, SQL expression of the table's value), applied by ``insert_new``
    and ``roll_up`` (money is staged as integer pico-units, so no Python Decimal is built
    per row)."""

    def __init__(
        self, table: Table, columns: Sequence[str], key: str,
        converted: Mapping[str, tuple[str, str]] | None = None,
        unique: Mapping[str, Sequence[str]] | None = None,
    ) -> None:  # fmt: skip
        """``unique``: per dialect, the columns of the unique key the insert conflicts on
        (default: ``key`` alone)."""
        self.unique = dict(unique or {})
        self.table = table
        self.columns = tuple(columns)
        self.key = key
        self.name = f"tb_stage_{table.name}_rollup"
        self.converted = dict(converted or {})

    def _read(self, name: str, expr: str) -> str:
        found = self.converted.get(name)
        return expr if found is None else found[1]

    async def load(self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows in ``columns`` order followed by their rollup key."""
        cols = _quoted(self.columns)
        if conn.dialect.name == "postgresql":
            typed = ", ".join(f'CAST(NULL AS {self.converted[n][0]}) AS "{n}"'
                              if n in self.converted else f'"{n}"' for n in self.columns)
            await conn.exec_driver_sql(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.name} ON COMMIT DELETE ROWS AS "
                f'SELECT {typed}, CAST(NULL AS varchar(32)) AS "rollup_key" '
                f"FROM {self.table.name} WITH NO DATA"
            )
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if driver is None or not driver.is_in_transaction():
                raise RuntimeError("staging must run inside the commit transaction")
            await driver.copy_records_to_table(
                self.name, records=rows, columns=[*self.columns, "rollup_key"]
            )
        else:
            await conn.exec_driver_sql(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.name} AS "
                f"SELECT {cols}, '' AS rollup_key FROM {self.table.name} WHERE 0"
            )
            # Without it SQLite joins each group back to its first row by a full scan.
            await conn.exec_driver_sql(
                f'CREATE INDEX IF NOT EXISTS {self.name}_key ON {self.name} ("{self.key}")'
            )
            marks = ", ".join("?" * (len(self.columns) + 1))
            await conn.exec_driver_sql(
                f'INSERT INTO {self.name} ({cols}, "rollup_key") VALUES ({marks})', list(rows)
            )

    async def insert_new(self, conn: AsyncConnection, staged: Sequence[str]) -> set[str]:
        """Insert the staged rows whose key is new and drop the others from the stage; the
        keys of the rows inserted. ``staged``: the keys of the rows loaded."""
        cols = _quoted(self.columns)
        picked = ", ".join(self._read(n, f'"{n}"') for n in self.columns)
        key = self.key
        target = _quoted(self.unique.get(conn.dialect.name, (key,)))
        result = await conn.exec_driver_sql(
            f"INSERT INTO {self.table.name} ({cols}) SELECT {picked} FROM {self.name} WHERE true "
            f'ORDER BY "{key}" ON CONFLICT ({target}) DO NOTHING RETURNING "{key}"'
        )
        inserted = {row[0] for row in result}
        if len(inserted) < len(staged):  # resent rows: only what is new is summed
            seen = [k for k in staged if k not in inserted]
            delete = text(f'DELETE FROM {self.name} WHERE "{key}" IN :keys').bindparams(
                bindparam("keys", expanding=True)
            )
            for start in range(0, len(seen), DELETE_CHUNK):
                await conn.execute(delete, {"keys": seen[start : start + DELETE_CHUNK]})
        return inserted

    async def drop_stored_day_before(self, conn: AsyncConnection, keys: Sequence[str]) -> set[str]:
        """Of the staged (just inserted) rows with ``keys``, those whose key is stored on the
        day before: removed from the table and the stage; their keys. For reports dated
        when received (they carry no timestamp), whose resend after midnight gets the next
        day, and so is not caught by a unique key that holds the day."""
        key = self.key
        table = self.table.name
        found = text(
            f'SELECT s."{key}" FROM {self.name} AS s WHERE s."{key}" IN :keys AND EXISTS '
            f'(SELECT 1 FROM {table} AS o WHERE o."{key}" = s."{key}" '
            f'AND o."date" = s."date" - 1)'
        ).bindparams(bindparam("keys", expanding=True))
        repeated: set[str] = set()
        for start in range(0, len(keys), DELETE_CHUNK):
            part = list(keys[start : start + DELETE_CHUNK])
            repeated.update(row[0] for row in await conn.execute(found, {"keys": part}))
        if not repeated:
            return repeated
        ordered = sorted(repeated)
        for sql in (
            f'DELETE FROM {table} AS t USING {self.name} AS s WHERE t."{key}" = s."{key}" '
            f'AND t."date" = s."date" AND s."{key}" IN :keys',
            f'DELETE FROM {self.name} WHERE "{key}" IN :keys',
        ):
            statement = text(sql).bindparams(bindparam("keys", expanding=True))
            for start in range(0, len(ordered), DELETE_CHUNK):
                await conn.execute(statement, {"keys": ordered[start : start + DELETE_CHUNK]})
        return repeated

    async def roll_up(
        self,
        conn: AsyncConnection,
        target: Table,
        identity: Sequence[str],
        sums: Sequence[tuple[str, str]],
        stamp: datetime,
        merges: Mapping[str, str] | None = None,
    ) -> None:
        """Sum the staged rows into ``target`` by ``rollup_key``: ``identity`` columns from
        each group's first row by key, ``sums`` as (target column, SQL expression over the
        stage), ``created_at``/``updated_at`` = ``stamp``; an existing row gets the sums added
        (or merged by ``merges``' expression of ``{t}``, the target, and ``excluded``) and
        ``updated_at`` replaced."""
        merges = merges or {}
        key = self.key
        first = ", ".join(f'f."{n}"' for n in identity)
        summed = ", ".join(f'sum({self._read(name, expr)}) AS "{name}"' for name, expr in sums)
        sum_names = [name for name, _expr in sums]
        sets = ", ".join(
            [f'"{n}" = ' + merges.get(n, f'{{t}}."{n}" + excluded."{n}"').format(t=target.name)
             for n in sum_names]
            + ['"updated_at" = excluded."updated_at"']
        )
        columns = _quoted(["rollup_key", *identity, *sum_names, "created_at", "updated_at"])
        picked = ", ".join(f's."{n}"' for n in sum_names)
        # PostgreSQL types a bare parameter in a select list as text; SQLite stores it as is.
        at = "CAST(:stamp AS timestamp)" if conn.dialect.name == "postgresql" else ":stamp"
        await conn.execute(
            text(
                f"INSERT INTO {target.name} ({columns}) "
                f"SELECT s.rollup_key, {first}, {picked}, {at}, {at} "
                f'FROM (SELECT rollup_key, min("{key}") AS first_key, {summed} '
                f"FROM {self.name} GROUP BY rollup_key) AS s "
                f'JOIN {self.name} AS f ON f."{key}" = s.first_key WHERE true '
                f"ORDER BY s.rollup_key ON CONFLICT (rollup_key) DO UPDATE SET {sets}"
            ).bindparams(bindparam("stamp", type_=DateTime())),
            {"stamp": stamp},
        )

    async def clear(self, conn: AsyncConnection) -> None:
        if conn.dialect.name != "postgresql":
            await conn.exec_driver_sql(f"DELETE FROM {self.name}")
