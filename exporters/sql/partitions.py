"""PostgreSQL: ``model_usage_details`` as a table range-partitioned on ``date``.

Declarative partitioning, no extension. One partition per day (``model_usage_details_p20261201``)
or per month (``model_usage_details_p202612``), created ahead of today by ``migrate`` and by
``serve`` (each retention run), so a commit never waits for DDL; a DEFAULT partition takes any
date without one, so nothing is ever refused.

Dedup across partitions: a unique key of a partitioned table must hold the partition column,
so the key is ``(dedup_key, date)``. It is as exact as ``dedup_key`` alone because a report's
date is a function of the report (its instant, in the one rollup time zone); the one way the
same report could get another date, a change of ``aggregation.timezone``, is refused at start
unless confirmed (``exporters.sql.settings``).

Every function takes a synchronous ``Connection`` (the migration's, or an async one through
``run_sync``), so the migration and the bridge run the same code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from sqlalchemy import Connection, text

logger = logging.getLogger(__name__)
PARENT = "model_usage_details"
DEFAULT = f"{PARENT}_default"
Period = Literal["day", "month"]
_BOUND = re.compile(r"FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: date | None
    """First day held; None for the DEFAULT partition."""
    end: date | None
    """First day not held."""


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT}
    ).scalar()
    return kind == "p"


def existing(conn: Connection) -> list[Partition]:
    """The partitions of ``model_usage_details``, by start (DEFAULT last)."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
    ).all()
    found: list[Partition] = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match is None:
            found.append(Partition(name, None, None))
        else:
            start, end = (date.fromisoformat(g) for g in match.groups())
            found.append(Partition(name, start, end))
    found.sort(key=lambda p: (p.start is None, p.start or date.min))
    return found


def period_of(day: date, period: Period) -> Partition:
    """The partition of ``period`` that holds ``day``."""
    if period == "day":
        return Partition(f"{PARENT}_p{day:%Y%m%d}", day, day + timedelta(days=1))
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return Partition(f"{PARENT}_p{start:%Y%m}", start, end)


def wanted(first: date, last: date, period: Period) -> list[Partition]:
    """Partitions of ``period`` covering every day from ``first`` to ``last``."""
    out: list[Partition] = []
    day = first
    while day <= last:
        part = period_of(day, period)
        out.append(part)
        assert part.end is not None
        day = part.end
    return out


def ensure(conn: Connection, first: date, last: date, period: Period) -> list[str]:
    """Create the DEFAULT partition and partitions covering ``first``..``last`` where no
    partition covers them yet (a range already held, even by a partition of the other
    period, is left as it is). Rows of those days already in the DEFAULT partition move
    into the new partition in the same transaction. The names created."""
    if not is_partitioned(conn):
        return []
    created = ensure_default(conn)
    parts = existing(conn)
    ranges = [(p.start, p.end) for p in parts if p.start is not None and p.end is not None]
    for part in wanted(first, last, period):
        for gap in _gaps(part, ranges):
            _create(conn, gap)
            assert gap.start is not None and gap.end is not None
            ranges.append((gap.start, gap.end))
            created.append(gap.name)
    return created


def ensure_default(conn: Connection) -> list[str]:
    """Create the DEFAULT partition unless there is one; the names created."""
    if any(p.start is None for p in existing(conn)):
        return []
    conn.execute(text(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT"))
    return [DEFAULT]


def _gaps(part: Partition, ranges: list[tuple[date, date]]) -> list[Partition]:
    """The days of ``part`` no range covers, as partitions: ``part`` itself when none does
    (a switch between day and month partitions fills the rest of a period this way)."""
    assert part.start is not None and part.end is not None
    gaps: list[Partition] = []
    day = part.start
    for start, end in sorted(r for r in ranges if r[0] < part.end and part.start < r[1]):
        if start > day:
            gaps.append(Partition(f"{PARENT}_p{day:%Y%m%d}_{start:%Y%m%d}", day, start))
        day = max(day, end)
    if day == part.start:
        return [part]
    if day < part.end:
        gaps.append(Partition(f"{PARENT}_p{day:%Y%m%d}_{part.end:%Y%m%d}", day, part.end))
    return gaps


def _create(conn: Connection, part: Partition) -> None:
    bound = f"FOR VALUES FROM ('{part.start}') TO ('{part.end}')"
    rows = conn.execute(
        text(f"SELECT count(*) FROM {DEFAULT} WHERE date >= :a AND date < :b"),
        {"a": part.start, "b": part.end},
    ).scalar()
    if not rows:
        conn.execute(text(f"CREATE TABLE {part.name} PARTITION OF {PARENT} {bound}"))
        return
    # Rows landed in DEFAULT before their partition existed: move them in this transaction.
    logger.info("moving %d rows of %s..%s from %s into %s", rows, part.start, part.end,
                DEFAULT, part.name)  # fmt: skip
    where = f"date >= '{part.start}' AND date < '{part.end}'"
    conn.execute(text(f"CREATE TABLE {part.name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
    conn.execute(text(f"INSERT INTO {part.name} SELECT * FROM {DEFAULT} WHERE {where}"))
    conn.execute(text(f"DELETE FROM {DEFAULT} WHERE {where}"))
    conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {part.name} {bound}"))
