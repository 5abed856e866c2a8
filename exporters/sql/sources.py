"""The source rule (``collector.aggregation.sources``) in the commit transaction, against
``producer_sources``.

First every producer of the batch is read without a lock and ruled. A switched producer's
state never changes again, and a point not after ``metrics_until`` counts under any state a
concurrent transaction may write (``metrics_until`` only grows until it freezes), so most
decisions need no lock: a spans-only producer costs one unlocked read per transaction. Only
producers whose state this transaction changes (new, first spans, newer points) are locked:
a placeholder row is inserted (ON CONFLICT DO NOTHING; on SQLite this write takes the
database lock before the read), the rows are read ``FOR UPDATE`` in key order, ruled again
and written. Producer rows are locked before stream rows (``exporters.sql.streams``) in every
transaction, so replicas cannot deadlock on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.aggregation.sources import NEVER, ProducerState, Ruling, rule
from collector.model import Ignored, PointSample, ProducerItems, UsageReport
from exporters.sql import schema
from exporters.sql.dialect import InsertBuilder

MAX_KEYS = 5000
Tally = tuple[Counter[str], str, int]
"""(a request's ignored tally, reason, items): added once the transaction commits."""


class Ruled(NamedTuple):
    reports: list[UsageReport]
    """Usage spans and delta points that count."""
    samples: list[PointSample]
    """Cumulative points that count."""
    muted: list[PointSample]
    """Cumulative points ignored: their stream state still advances, so a later point of
    the stream yields only what is new."""
    ignored: list[Tally]
    accepted: int


async def apply(
    conn: AsyncConnection,
    insert: InsertBuilder,
    batches: Sequence[ProducerItems],
    now: datetime,
) -> Ruled:
    by_key: dict[str, list[ProducerItems]] = {}
    for items in batches:
        by_key.setdefault(items.key, []).append(items)
    keys = sorted(by_key)
    states = await _read(conn, keys, lock=False)
    rulings = {key: _rule(states.get(key), by_key[key]) for key in keys}
    moving = [key for key in keys if rulings[key].state is not None]
    if moving:
        await _lock(conn, insert, moving, by_key, now)
        locked = await _read(conn, moving, lock=True)
        changed: dict[str, ProducerState] = {}
        for key in moving:
            ruling = rulings[key] = _rule(locked.get(key), by_key[key])
            if ruling.state is not None:
                changed[key] = ruling.state
        await _store(conn, insert, changed, by_key, now)
    out = Ruled([], [], [], [], 0)
    for key in keys:
        for items in by_key[key]:
            _split(items, rulings[key], out)
    return out._replace(accepted=sum(len(i) for i in batches) - sum(t[2] for t in out.ignored))


def _rule(state: ProducerState | None, parts: list[ProducerItems]) -> Ruling:
    times = [s.time_ns for p in parts for s in p.points]
    times.extend(t for p in parts for t, _r in p.deltas)
    return rule(state, any(p.spans for p in parts), times)


def _split(items: ProducerItems, ruling: Ruling, out: Ruled) -> None:
    """Sort one request's items of a producer into counted and ignored."""
    switch = ruling.switch
    if items.spans:
        if switch == NEVER:
            out.reports.extend(items.spans)
        else:
            kept = [r for r, end in zip(items.spans, items.ends, strict=True) if end > switch]
            out.reports.extend(kept)
            if len(kept) < len(items.spans):
                dropped = len(items.spans) - len(kept)
                out.ignored.append((items.ignored, Ignored.FROM_METRICS, dropped))
    skipped = 0
    for sample in items.points:
        if ruling.spans and sample.time_ns > switch:
            out.muted.append(sample)
            skipped += 1
        else:
            out.samples.append(sample)
    for time_ns, report in items.deltas:
        if ruling.spans and time_ns > switch:
            skipped += 1
        elif report is not None:
            out.reports.append(report)
    if skipped:
        out.ignored.append((items.ignored, Ignored.FROM_SPANS, skipped))


async def _read(
    conn: AsyncConnection, keys: Sequence[str], lock: bool
) -> dict[str, ProducerState]:
    table = schema.producer_sources
    found: dict[str, ProducerState] = {}
    for start in range(0, len(keys), MAX_KEYS):
        query = select(table.c.producer_key, table.c.spans, table.c.metrics_until).where(
            table.c.producer_key.in_(keys[start : start + MAX_KEYS])
        )
        if lock and conn.dialect.name == "postgresql":
            query = query.order_by(table.c.producer_key).with_for_update()
        for key, spans, until in await conn.execute(query):
            found[key] = ProducerState(bool(spans), until)
    return found


def _row(
    key: str, state: ProducerState, parts: list[ProducerItems], now: datetime
) -> dict[str, object]:
    namespace, name, instance = parts[0].identity
    return {"producer_key": key, "service_namespace": namespace, "service_name": name,
            "service_instance_id": instance, "spans": state.spans,
            "metrics_until": state.metrics_until, "updated_at": now}  # fmt: skip


async def _lock(
    conn: AsyncConnection,
    insert: InsertBuilder,
    keys: Sequence[str],
    by_key: dict[str, list[ProducerItems]],
    now: datetime,
) -> None:
    """Placeholder rows for producers not seen before, so every one has a row to lock."""
    table = schema.producer_sources
    blank = ProducerState(False, NEVER)
    for start in range(0, len(keys), MAX_KEYS):
        rows = [_row(k, blank, by_key[k], now) for k in keys[start : start + MAX_KEYS]]
        await conn.execute(
            insert(table).on_conflict_do_nothing(index_elements=["producer_key"]), rows
        )


async def _store(
    conn: AsyncConnection,
    insert: InsertBuilder,
    changed: dict[str, ProducerState],
    by_key: dict[str, list[ProducerItems]],
    now: datetime,
) -> None:
    table = schema.producer_sources
    rows = [_row(k, s, by_key[k], now) for k, s in sorted(changed.items())]
    stmt = insert(table)
    upsert = stmt.on_conflict_do_update(
        index_elements=["producer_key"],
        set_={
            "spans": stmt.excluded.spans,
            "metrics_until": stmt.excluded.metrics_until,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    for start in range(0, len(rows), MAX_KEYS):  # one cached statement (see streams._store)
        await conn.execute(upsert, rows[start : start + MAX_KEYS])
