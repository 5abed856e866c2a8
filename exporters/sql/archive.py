"""Archives of audit rows: gzip CSV with a header, checked against the database before a drop.

Why gzip CSV and not Parquet: the standard library writes and reads it (no ~100 MB pyarrow
in a metering bridge's image), every tool reads it (``zcat``, ``psql \\copy``, DuckDB,
pandas), and audit rows compress well as text. The header names the columns of
``model_usage_details``; a JSON manifest beside it (``F.json``) records the format, the days,
the column types, the row count and the token sums. NULL is written ``\\N`` (as PostgreSQL's
COPY does) and a text value starting with a backslash gets one more, so every value reads
back exactly.

``write`` streams the rows to a temporary file, reads the file back and compares its row count
and sums with the database's; only then is the file renamed into place. A mismatch raises
``ArchiveError`` and the caller keeps the rows. ``restore`` inserts a file's rows with
``ON CONFLICT DO NOTHING`` on the dedup key: loading the same file twice adds nothing.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Integer,
    Numeric,
    String,
    TableClause,
    Text,
    case,
    cast,
    column,
    func,
    literal,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from exporters.sql import partitions, schema
from exporters.sql.dialect import upsert_builder

FORMAT = "tokenbridge-archive/1"
NULL = "\\N"
SUMMED = ("prompt_token_count", "completion_token_count", "total_token_count",
          "prompt_cached_token_count", "request_count")  # fmt: skip
COLUMNS = tuple(c.name for c in schema.model_usage_details.c)
BATCH = 2000
COMPRESS_LEVEL = 6
"""gzip's default 9 costs about twice the time for a few percent of size on audit rows."""


class ArchiveError(ValueError):
    """An archive that could not be written or does not match the database."""


@dataclass(frozen=True, slots=True)
class Totals:
    rows: int
    sums: tuple[int, ...]


@functools.cache
def source(name: str) -> TableClause:
    """``model_usage_details``'s columns, typed, on the table or partition ``name``."""
    return table(name, *(column(c.name, c.type) for c in schema.model_usage_details.c))


async def totals(conn: AsyncConnection, name: str, where: ColumnElement[bool]) -> Totals:
    """Row count and token sums of ``name`` (a table or partition) where ``where``."""
    src = source(name)
    sums = [func.coalesce(func.sum(src.c[c]), 0) for c in SUMMED]
    row = (await conn.execute(select(func.count(), *sums).where(where))).one()
    return Totals(int(row[0]), tuple(int(v) for v in row[1:]))


def _as_text(col: ColumnElement[Any]) -> ColumnElement[str]:
    """A column as the archive's text, computed by the database (so rows reach the CSV
    writer as ready strings): NULL as ``\\N``, booleans ``true``/``false``, a text value
    starting with a backslash with one more in front."""
    kind = col.type
    if isinstance(kind, Boolean):
        value: ColumnElement[str] = case((col, literal("true")), else_=literal("false"))
    elif isinstance(kind, String):
        value = case((func.substr(col, 1, 1) == "\\", literal("\\") + col), else_=col)
    else:
        value = cast(col, Text)
    return case((col.is_(None), literal(NULL)), else_=value)


async def write(
    conn: AsyncConnection, name: str, where: ColumnElement[bool], path: Path, days: str
) -> tuple[Totals, Path]:
    """Rows of ``name`` where ``where`` into ``path`` (gzip CSV) and ``path``.json, checked
    against the database; ``days`` describes the range in the manifest. Raises
    ``ArchiveError`` (and leaves no file at ``path``) when the file does not add up. An
    existing archive is kept: the new one gets the next free name (``_unused``)."""
    expected = await totals(conn, name, where)
    src = source(name)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        query = select(*(_as_text(c).label(c.name) for c in src.c)).where(where)
        if conn.dialect.name == "postgresql":
            await _copy_out(conn, query, partial)
            found = await _copy_back_totals(conn, partial)
        else:
            with gzip.open(partial, "wt", COMPRESS_LEVEL, newline="", encoding="utf-8") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(COLUMNS)
                async for part in (await conn.stream(query)).partitions(BATCH):
                    writer.writerows(part)
            found = read_totals(partial)
    except OSError as error:
        _discard(partial)
        raise ArchiveError(f"{path}: {error}") from error
    if found != expected:
        _discard(partial)
        raise ArchiveError(f"{path}: file holds {found}, database {expected}")
    path = _unused(path)
    os.replace(partial, path)
    manifest = {
        "format": FORMAT, "table": schema.model_usage_details.name, "days": days,
        "columns": {c.name: str(c.type) for c in schema.model_usage_details.c},
        "rows": expected.rows, "sums": dict(zip(SUMMED, expected.sums, strict=True)),
    }  # fmt: skip
    Path(f"{path}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return expected, path


async def _copy_out(conn: AsyncConnection, query: ClauseElement, path: Path) -> None:
    """PostgreSQL writes the CSV itself (``COPY ... TO STDOUT``): no Python work per row.
    Every selected value is already text (``_as_text``), so COPY's own NULL never appears."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise ArchiveError("no PostgreSQL connection to copy from")
    with gzip.open(path, "wb", COMPRESS_LEVEL) as out:

        async def sink(chunk: bytes) -> None:
            out.write(chunk)

        await driver.copy_from_query(sql, output=sink, format="csv", header=True)


async def _copy_back_totals(conn: AsyncConnection, path: Path) -> Totals:
    """PostgreSQL reads the file back (``COPY ... FROM STDIN`` into a temporary table) and
    sums it: the file as the database parses it, without Python work per row."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise ArchiveError("no PostgreSQL connection to check the archive with")
    columns = ", ".join(f'"{c}" text' for c in COLUMNS)
    await conn.exec_driver_sql(f"CREATE TEMP TABLE tb_archive_check ({columns}) ON COMMIT DROP")
    with gzip.open(path, "rb") as src:
        await driver.copy_to_table("tb_archive_check", source=src, format="csv", header=True)
    sums = ", ".join(f'coalesce(sum("{c}"::bigint), 0)' for c in SUMMED)
    row = (await conn.exec_driver_sql(f"SELECT count(*), {sums} FROM tb_archive_check")).one()
    await conn.exec_driver_sql("DROP TABLE tb_archive_check")
    values: list[int] = [int(v) for v in row]
    return Totals(values[0], tuple(values[1:]))


def _unused(path: Path) -> Path:
    """``path``, or ``NAME.1.csv.gz``, ``NAME.2.csv.gz``... when taken: an archive is never
    replaced (a second pruner's, or a rerun's after a failed drop, may hold fewer rows; a
    restore loads every file, and dedup keys make the overlap harmless)."""
    stem = path.name.removesuffix(".csv.gz")
    found, n = path, 0
    while found.exists():
        n += 1
        found = path.with_name(f"{stem}.{n}.csv.gz")
    return found


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of an archive as typed values, by column name."""
    types = {c.name: c.type for c in schema.model_usage_details.c}
    with gzip.open(path, "rt", newline="", encoding="utf-8") as src:
        reader = csv.reader(src)
        header = next(reader, None)
        if header is None or not set(header) <= set(types) or "dedup_key" not in header:
            raise ArchiveError(f"{path}: not a tokenbridge archive of model_usage_details")
        for cells in reader:
            yield {name: _value(cell, types[name]) for name, cell in zip(header, cells,
                                                                          strict=True)}


def _value(cell: str, kind: Any) -> Any:
    if cell == NULL:
        return None
    if isinstance(kind, Boolean):
        return cell == "true"
    if isinstance(kind, DateTime):
        return datetime.fromisoformat(cell)
    if isinstance(kind, Date):
        return date.fromisoformat(cell)
    if isinstance(kind, Integer):
        return int(cell)
    if isinstance(kind, Numeric):
        return Decimal(cell)
    return cell[1:] if cell.startswith("\\") else cell


def read_totals(path: Path) -> Totals:
    """Row count and token sums of an archive file (only the summed columns are parsed)."""
    with gzip.open(path, "rt", newline="", encoding="utf-8") as src:
        reader = csv.reader(src)
        header = next(reader, None) or []
        if not set(SUMMED) <= set(header):
            raise ArchiveError(f"{path}: not a tokenbridge archive of model_usage_details")
        at = [header.index(name) for name in SUMMED]
        rows = 0
        sums = [0] * len(SUMMED)
        for cells in reader:
            rows += 1
            for i, index in enumerate(at):
                sums[i] += int(cells[index])
    return Totals(rows, tuple(sums))


async def restore(
    engine: AsyncEngine, path: Path, period: partitions.Period = "month"
) -> tuple[int, int]:
    """Load an archive back: (rows in the file, rows inserted). Rows already present (same
    dedup key and day) are skipped, so a second restore inserts nothing. On PostgreSQL the
    partitions of the file's days are created first. Rollups are not touched: they kept
    these rows' sums all along."""
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive file")
    try:
        days = sorted({r["date"] for r in _rows(path)})
    except (OSError, EOFError, ValueError, csv.Error) as error:
        raise ArchiveError(f"{path}: unreadable archive ({error})") from error
    read = inserted = 0
    insert = upsert_builder(engine.dialect.name)
    unique = list(schema.DETAILS_UNIQUE[engine.dialect.name])
    async with engine.begin() as conn:
        if days:
            await conn.run_sync(lambda c: partitions.ensure(c, days[0], days[-1], period))
        batch: list[dict[str, Any]] = []
        for row in _rows(path):
            row.pop("id", None)
            batch.append(row)
            read += 1
            if len(batch) >= BATCH:
                inserted += await _insert(conn, insert, unique, batch)
                batch = []
        if batch:
            inserted += await _insert(conn, insert, unique, batch)
    return read, inserted


async def _insert(
    conn: AsyncConnection, insert: Any, unique: Sequence[str], rows: list[dict[str, Any]]
) -> int:
    stmt = insert(schema.model_usage_details).on_conflict_do_nothing(index_elements=unique)
    result = await conn.execute(stmt.returning(schema.model_usage_details.c.id), rows)
    return len(result.all())


def describe(path: Path) -> str:
    """One line about an archive (its manifest when there is one)."""
    manifest = Path(f"{path}.json")
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        return f"{path}: {data.get('rows')} rows of {data.get('days')}"
    return str(path)

