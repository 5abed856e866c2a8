"""Cumulative samples -> delta reports, against the stream state kept in ``metric_streams``.

Runs inside the commit transaction. New streams get a placeholder row first (``time_ns = -1``,
ON CONFLICT DO NOTHING), then every stream row of the batch is read ``FOR UPDATE`` in key
order: two replicas that see the same stream take turns, and the second sees the first's
state. On SQLite the first write takes the database lock, which does the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.aggregation.cumulative import StreamState, delta
from collector.model import PointSample, UsageReport
from exporters.sql import schema
from exporters.sql.dialect import InsertBuilder

MAX_KEYS = 5000


async def deltas(
    conn: AsyncConnection,
    insert: InsertBuilder,
    samples: Sequence[PointSample],
    now: datetime,
    muted: Sequence[PointSample] = (),
    earliest_ns: int | None = None,
    table: Table = schema.metric_streams,
) -> tuple[list[UsageReport], list[PointSample]]:
    """(reports of the deltas of ``samples``, samples older than retention). ``muted``
    samples (ignored by the source rule) advance their streams' state like the others but
    yield no report, so a stream that switches between counted and ignored counts each token
    once. With ``earliest_ns`` (the retention horizon), a sample whose stream state is older
    than the horizon, or that has no state and a start time before it (its state pruned, or a
    stream first seen that long after it began), cannot be told apart from usage counted
    before: it is returned as too old, and becomes the stream's state, so the stream's next
    points count from it. ``table``: the stream state table of the layout (``metric_streams``
    by default)."""
    silent = {id(s) for s in muted}
    ordered = sorted([*samples, *muted], key=lambda s: (s.stream_key, s.time_ns))
    keys = sorted({s.stream_key for s in ordered})
    state: dict[str, StreamState | None] = {}
    for start in range(0, len(keys), MAX_KEYS):
        part = keys[start : start + MAX_KEYS]
        placeholders = [
            {"stream_key": k, "time_ns": -1, "value": 0, "count": 0, "updated_at": now}
            for k in part
        ]
        await conn.execute(
            insert(table).on_conflict_do_nothing(index_elements=["stream_key"]), placeholders
        )
        query = select(table.c.stream_key, table.c.time_ns, table.c.value, table.c.count).where(
            table.c.stream_key.in_(part)
        )
        if conn.dialect.name == "postgresql":
            query = query.order_by(table.c.stream_key).with_for_update()
        for key, time_ns, value, count in await conn.execute(query):
            state[key] = None if time_ns < 0 else StreamState(time_ns, value, count)
    reports: list[UsageReport] = []
    late: list[PointSample] = []
    changed: dict[str, StreamState] = {}
    for sample in ordered:
        before = state.get(sample.stream_key)
        value, count, new_state = delta(before, sample.time_ns, sample.value, sample.count)
        if new_state is not None:
            state[sample.stream_key] = changed[sample.stream_key] = new_state
        if id(sample) in silent:
            continue
        if earliest_ns is not None and _too_old(before, sample, earliest_ns):
            late.append(sample)
        elif value or count:
            reports.append(sample.report(value, count))
    await _store(conn, insert, changed, now, table)
    return reports, late


def _too_old(before: StreamState | None, sample: PointSample, earliest_ns: int) -> bool:
    if before is None:
        return 0 < sample.start_ns < earliest_ns or sample.time_ns < earliest_ns
    return before.time_ns < earliest_ns


async def _store(
    conn: AsyncConnection, insert: InsertBuilder, changed: dict[str, StreamState], now: datetime,
    table: Table,
) -> None:
    if not changed:
        return
    rows: list[dict[str, Any]] = [
        {"stream_key": k, "time_ns": s.time_ns, "value": s.value, "count": s.requests,
         "updated_at": now}
        for k, s in sorted(changed.items())
    ]  # fmt: skip
    # One cached statement run over the rows (SQLAlchemy batches them into multi-row
    # VALUES); ``.values(rows)`` would compile a new statement of every batch's size, about
    # 14 ms for 150 rows, more than the database spends.
    stmt = insert(table)
    upsert = stmt.on_conflict_do_update(
        index_elements=["stream_key"],
        set_={
            "time_ns": stmt.excluded.time_ns,
            "value": stmt.excluded.value,
            "count": stmt.excluded.count,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    for start in range(0, len(rows), MAX_KEYS):
        await conn.execute(upsert, rows[start : start + MAX_KEYS])
