"""What both layouts' sinks do the same in a commit: the transaction and its retries, the
inputs that count (the source rule, then the cumulative streams), the rejects stored, and
what each request is told once the transaction has committed.

A deadlock or serialization failure reruns the whole transaction (``CONFLICT_RETRIES``
times, with a growing random pause); an unreachable database raises ``RetryableError``, so
the sender resends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import NamedTuple, TypeVar

from sqlalchemy import Table, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.errors import RetryableError
from collector.model import PointSample, Reject, UsageReport, Work
from exporters.sql import rejects, sources, streams
from exporters.sql.dialect import InsertBuilder
from exporters.sql.engine import is_conflict, is_unavailable
from exporters.sql.rows import reject_row

logger = logging.getLogger(__name__)
T = TypeVar("T")
CONFLICT_RETRIES = 8
MAX_PARAMS = 30000
"""asyncpg takes at most 32767 bind parameters a statement."""


def chunks(rows: Sequence[T], columns: int) -> Iterator[Sequence[T]]:
    size = max(1, MAX_PARAMS // max(1, columns))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def describe(error: BaseException) -> str:
    """The error's class and message (a timeout's message is empty)."""
    return f"{type(error).__name__}: {error}".rstrip(": ")


async def run(engine: AsyncEngine, body: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``body`` in one transaction, rerun on a conflict."""
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            async with engine.begin() as conn:
                return await body(conn)
        except exc.DBAPIError as error:
            if is_conflict(error) and attempt < CONFLICT_RETRIES:
                logger.info("commit conflict (%s), retrying", type(error.orig).__name__)
                await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                continue
            if is_unavailable(error):
                message = f"database unavailable: {describe(error.orig or error)}"
                raise RetryableError(message) from error
            raise
        except (OSError, TimeoutError, ConnectionError) as error:
            raise RetryableError(f"database unavailable: {describe(error)}") from error
    raise AssertionError("the last attempt returns or raises")


class Counted(NamedTuple):
    reports: list[UsageReport]
    """Reports that count: spans, delta points and cumulative points' deltas."""
    ruled: sources.Ruled | None
    """The source rule's outcome (None: no producer's items were ruled)."""
    late: list[PointSample]
    """Cumulative points whose stream state is older than ``earliest_ns``."""


async def counted(
    conn: AsyncConnection,
    insert: InsertBuilder,
    work: Work,
    now: datetime,
    producers: Table,
    stream_states: Table,
    earliest_ns: int | None = None,
) -> Counted:
    """The source rule, then the cumulative samples' deltas: producer rows are locked before
    stream rows in every transaction, so replicas cannot deadlock on them."""
    reports = list(work.reports)
    samples: Sequence[PointSample] = work.samples
    ruled = None
    if work.producers:
        ruled = await sources.apply(conn, insert, work.producers, now, producers)
        reports.extend(ruled.reports)
        samples = [*samples, *ruled.samples]
    late: list[PointSample] = []
    muted = ruled.muted if ruled is not None else []
    if samples or muted:
        found, late = await streams.deltas(
            conn, insert, samples, now, muted, earliest_ns, stream_states
        )
        reports.extend(found)
    return Counted(reports, ruled, late)


async def store_rejects(
    conn: AsyncConnection, insert: InsertBuilder, found: Sequence[Reject], table: Table,
    keep: int,
) -> None:  # fmt: skip
    """The rejects, once each (by key), then all but the newest ``keep`` rows deleted."""
    if not found:
        return
    rows = sorted((reject_row(r) for r in found), key=lambda r: r["reject_key"])
    for chunk in chunks(rows, len(rows[0])):
        stmt = insert(table).on_conflict_do_nothing(index_elements=["reject_key"])
        await conn.execute(stmt, list(chunk))
    await rejects.prune(conn, keep, table)


def settle(work: Work, ruled: sources.Ruled | None, late: int = 0) -> int:
    """Once the transaction has committed: the items accepted (``late`` of them rejected in
    the transaction, older than retention), and each request told its ignored items."""
    accepted = len(work.reports) + len(work.samples) - late
    if ruled is not None:
        accepted += ruled.accepted
        for tally, reason, items in ruled.ignored:
            tally[reason] += items
    return accepted
