"""What stored rows depend on, kept beside them (``tokenbridge_settings``): the time zone of
their days.

The audit rows' unique key on PostgreSQL is ``(dedup_key, date)`` (``exporters.sql
.partitions``), exact because a report's day is a function of the report, in one zone. Change
``aggregation.timezone`` and a report resent afterwards can land on the neighbouring day, miss
its first row and be counted twice (an instant within the zones' offset of a midnight). So the
zone is recorded on first start, and a start with another zone is refused until the operator
confirms with ``tokenbridge migrate --accept-timezone-change`` (after letting senders' retry
queues drain: only resends of reports from before the change are at risk).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from exporters.sql import schema
from exporters.sql.dialect import upsert_builder

logger = logging.getLogger(__name__)
TIMEZONE = "aggregation.timezone"


class TimezoneChanged(ValueError):
    """The configured zone differs from the one the stored days are in."""


async def check_timezone(
    engine: AsyncEngine, zone: str, now: datetime, accept_change: bool = False
) -> None:
    """Record ``zone`` on first use; raise ``TimezoneChanged`` when another zone is recorded,
    unless ``accept_change`` (then the new zone is recorded)."""
    t = schema.settings
    insert = upsert_builder(engine.dialect.name)
    async with engine.begin() as conn:
        await conn.execute(
            insert(t).values(name=TIMEZONE, value=zone, updated_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )  # fmt: skip
        stored = (await conn.execute(select(t.c.value).where(t.c.name == TIMEZONE))).scalar()
        if stored == zone:
            return
        if not accept_change:
            raise TimezoneChanged(
                f"aggregation.timezone is {zone!r} but the stored days are in {stored!r}: a "
                "report resent after a change can land on another day and be counted twice. "
                f"Set it back to {stored!r}, or let senders' queues drain and run "
                "`tokenbridge migrate --accept-timezone-change`"
            )
        await conn.execute(update(t).where(t.c.name == TIMEZONE).values(value=zone, updated_at=now))
    logger.warning("aggregation.timezone changed from %s to %s", stored, zone)
