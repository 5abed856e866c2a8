"""The reject table: bounded, and readable through ``tokenbridge report --rejects``.

Retention policy: ``usage_rejects`` keeps the newest ``max_reject_rows`` rows by insertion
order (``id``). Every transaction that inserts rejects deletes the older ones in the same
transaction, so the table never holds more than the bound after a commit, whatever the rate of
bad input. Rejects are evidence for the operator, not usage: dropping the oldest loses no count.
The same reject (source, reason and item alike) is stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exporters.sql import schema

COLUMNS = ("received_at", "source", "reason", "item")


async def prune(conn: AsyncConnection, keep: int) -> None:
    """Delete all but the newest ``keep`` rows."""
    t = schema.usage_rejects
    oldest_kept = select(t.c.id).order_by(t.c.id.desc()).offset(keep - 1).limit(1)
    boundary = (await conn.execute(oldest_kept)).scalar()
    if boundary is not None:
        await conn.execute(delete(t).where(t.c.id < boundary))


async def recent(
    engine: AsyncEngine, start: date | None, end: date | None, limit: int | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Rejects received from ``start`` to ``end`` (days, UTC, both included), oldest first."""
    t = schema.usage_rejects
    query = select(*(t.c[c] for c in COLUMNS)).order_by(t.c.received_at, t.c.id)
    if start is not None:
        query = query.where(t.c.received_at >= datetime.combine(start, time.min))
    if end is not None:
        query = query.where(t.c.received_at < datetime.combine(end + timedelta(days=1), time.min))
    if limit is not None:
        query = query.limit(limit)
    async with engine.connect() as conn:
        rows: Sequence[Any] = (await conn.execute(query)).all()
    return list(COLUMNS), [(row[0].isoformat(sep=" "), *row[1:]) for row in rows]


class Stored(NamedTuple):
    id: int
    source: str
    reason: str
    item: str


async def matching(
    engine: AsyncEngine, start: date | None, end: date | None, reason: str | None
) -> list[Stored]:
    """Rejects received from ``start`` to ``end`` whose reason contains ``reason``, oldest
    first (what ``tokenbridge rejects replay`` re-ingests)."""
    t = schema.usage_rejects
    query = select(t.c.id, t.c.source, t.c.reason, t.c.item).order_by(t.c.id)
    if start is not None:
        query = query.where(t.c.received_at >= datetime.combine(start, time.min))
    if end is not None:
        query = query.where(t.c.received_at < datetime.combine(end + timedelta(days=1), time.min))
    if reason:
        query = query.where(t.c.reason.contains(reason, autoescape=True))
    async with engine.connect() as conn:
        return [Stored(*row) for row in (await conn.execute(query)).all()]


async def remove(engine: AsyncEngine, ids: Sequence[int]) -> None:
    """Delete the rejects ``ids`` (replayed: they count now, or were rejected anew)."""
    t = schema.usage_rejects
    async with engine.begin() as conn:
        for start in range(0, len(ids), 500):
            await conn.execute(delete(t).where(t.c.id.in_(ids[start : start + 500])))
