"""The SQL sink of ``database.layout: gpustack``: GPUStack 2.3's own usage tables, exact.

One transaction per group commit, every step in key order (replicas lock in one order):
0. the source rule decides which usage spans and GenAI metric points count
   (``exporters.sql.sources`` against ``tokenbridge_producer_sources``);
1. cumulative samples become deltas against ``tokenbridge_metric_streams``;
2. each report's idempotency key is inserted into ``tokenbridge_dedup_keys`` ``ON CONFLICT DO
   NOTHING RETURNING``: only the keys actually inserted count, so a resend, or one report sent
   to two replicas, counts once;
3. their audit rows go to ``model_usage_details``;
4. they are summed per GPUStack merge key (``rows.MergeKey``); each key's digest is inserted
   into ``tokenbridge_rollup_keys`` ``ON CONFLICT DO UPDATE ... RETURNING usage_id``, which
   locks the key (a replica meeting the same key waits for this commit, then sees its id).
   Known keys add their sums to ``model_usages`` by id (``model_route_name`` refreshed when
   the new one is not NULL, as GPUStack does); new keys (or keys whose row GPUStack's
   archiver removed) insert a row and record its id;
5. rejects go to ``tokenbridge_rejects`` (bounded).
GPUStack's tables are only inserted into and updated, never altered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.model import Committed, UsageReport, Work
from exporters.sql import sources, transaction
from exporters.sql.gpustack import migrate, rows
from exporters.sql.gpustack import tables as t
from exporters.sql.sink import _first_by_key

_ADD = text(
    "UPDATE model_usages AS m SET "
    "prompt_token_count = m.prompt_token_count + v.p, "
    "completion_token_count = m.completion_token_count + v.c, "
    "prompt_cached_token_count = m.prompt_cached_token_count + v.k, "
    "request_count = m.request_count + v.r, "
    "model_route_name = COALESCE(v.rn, m.model_route_name) "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:p AS bigint[]), CAST(:c AS bigint[]), "
    "CAST(:k AS bigint[]), CAST(:r AS bigint[]), CAST(:rn AS varchar[])) AS v(id, p, c, k, r, rn) "
    "WHERE m.id = v.id RETURNING m.id"
)
_LOCK_KEYS = text(
    "INSERT INTO tokenbridge_rollup_keys (rollup_key, date) "
    "SELECT k, d FROM unnest(CAST(:keys AS varchar[]), CAST(:dates AS date[])) "
    "WITH ORDINALITY AS v(k, d, n) ORDER BY n "
    "ON CONFLICT (rollup_key) DO UPDATE SET rollup_key = excluded.rollup_key "
    "RETURNING rollup_key, usage_id"
)
"""Each key's row inserted or locked, in key order; an existing key returns its row's id."""
_POINT = text(
    "UPDATE tokenbridge_rollup_keys AS k SET usage_id = v.id "
    "FROM unnest(CAST(:keys AS varchar[]), CAST(:ids AS integer[])) AS v(key, id) "
    "WHERE k.rollup_key = v.key"
)
_DEDUP = text(
    "INSERT INTO tokenbridge_dedup_keys (dedup_key, created_at) "
    "SELECT k, CAST(:now AS timestamp) FROM unnest(CAST(:keys AS varchar[])) WITH ORDINALITY "
    "AS v(k, n) ORDER BY n ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"
).bindparams(bindparam("now", type_=DateTime()))
KEYS_PER_STATEMENT = 5000
async def _copy_details(conn: AsyncConnection, records: list[tuple[Any, ...]]) -> None:
    """Audit rows into ``model_usage_details`` by binary COPY (an insert; GPUStack's own
    defaults, sequence and indexes apply as to any insert)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("audit rows must be written inside the commit transaction")
    await driver.copy_records_to_table(
        "model_usage_details", records=records, columns=list(rows.DETAIL_COLUMNS)
    )


class GpustackSink:
    """``BatchWriter`` over GPUStack's ``model_usages`` and ``model_usage_details``."""

    def __init__(
        self, engine: AsyncEngine, tz: tzinfo = UTC, clock: Callable[[], float] = time.time,
        max_reject_rows: int = 100_000,
    ) -> None:  # fmt: skip
        self.engine = engine
        self._clock = clock
        self._max_reject_rows = max_reject_rows
        self._rows = rows.GpustackRows(tz)

    async def ping(self) -> bool:
        return await migrate.is_current(self.engine)

    async def write(self, work: Work) -> Committed:
        started = time.perf_counter()
        reports, duplicates, ruled = await transaction.run(
            self.engine, lambda conn: self._write(conn, work))  # fmt: skip
        seconds = time.perf_counter() - started
        accepted = transaction.settle(work, ruled)
        return Committed(reports, duplicates, len(work.rejects), seconds, accepted)

    async def _write(
        self, conn: AsyncConnection, work: Work
    ) -> tuple[list[UsageReport], int, sources.Ruled | None]:
        now = self._now()
        # No retention horizon in GPUStack's tables: nothing is too old here.
        reports, ruled, _late = await transaction.counted(
            conn, insert, work, now, t.producer_sources, t.metric_streams)  # fmt: skip
        unique = _first_by_key(reports)
        new = await self._new(conn, unique, now)
        if new:
            await _copy_details(conn, [self._rows.detail(r) for r in new])
            await self._roll_up(conn, self._rows.rollups(new))
        await transaction.store_rejects(conn, insert, work.rejects, t.rejects,
                                        self._max_reject_rows)  # fmt: skip
        return new, len(reports) - len(new), ruled

    async def _new(
        self, conn: AsyncConnection, reports: list[UsageReport], now: datetime
    ) -> list[UsageReport]:
        """The reports whose idempotency key was not counted before (sorted by key)."""
        keys = [r.dedup_key for r in reports]
        result = await conn.execute(_DEDUP, {"keys": keys, "now": now})
        inserted = {row[0] for row in result}
        if len(inserted) == len(reports):
            return reports
        return [r for r in reports if r.dedup_key in inserted]

    async def _roll_up(self, conn: AsyncConnection, found: dict[str, rows.Rollup]) -> None:
        ordered = sorted(found)
        known: dict[str, int] = {}
        for start in range(0, len(ordered), KEYS_PER_STATEMENT):
            part = ordered[start : start + KEYS_PER_STATEMENT]
            params = {"keys": part, "dates": [found[k].key.date for k in part]}
            for key, usage_id in await conn.execute(_LOCK_KEYS, params):
                if usage_id is not None:
                    known[key] = usage_id
        updated = await self._add(conn, known, found)
        missing = [k for k in ordered if known.get(k) not in updated]
        if missing:
            await self._insert(conn, missing, found)

    @staticmethod
    async def _add(
        conn: AsyncConnection, known: dict[str, int], found: dict[str, rows.Rollup]
    ) -> set[int]:
        """Add the sums of known keys to their rows; the ids of the rows that were there."""
        if not known:
            return set()
        keys = sorted(known, key=known.__getitem__)
        updated: set[int] = set()
        for start in range(0, len(keys), KEYS_PER_STATEMENT):
            part = keys[start : start + KEYS_PER_STATEMENT]
            sums = [found[k].sums for k in part]
            params: dict[str, Any] = {
                "ids": [known[k] for k in part], "p": [s[0] for s in sums],
                "c": [s[1] for s in sums], "k": [s[2] for s in sums], "r": [s[3] for s in sums],
                "rn": [found[k].snapshot["model_route_name"] for k in part],
            }  # fmt: skip
            updated.update(row[0] for row in await conn.execute(_ADD, params))
        return updated

    @staticmethod
    async def _insert(
        conn: AsyncConnection, keys: Sequence[str], found: dict[str, rows.Rollup]
    ) -> None:
        """New rows for ``keys``, their ids recorded against the keys."""
        stmt = t.model_usages.insert().returning(t.model_usages.c.id, sort_by_parameter_order=True)
        result = await conn.execute(stmt, [found[k].row() for k in keys])
        ids = [row[0] for row in result]
        point = _POINT.bindparams(bindparam("keys"), bindparam("ids"))
        await conn.execute(point, {"keys": list(keys), "ids": ids})

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(tzinfo=None)
