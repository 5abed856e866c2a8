"""The retention horizon: the first day whose audit rows are still kept. Pure: no clock.

Audit rows are what de-duplicates a resent report, so a report dated before the horizon (its
row dropped, or about to be) could be counted twice; it is rejected instead, and so is a
cumulative point whose stream state is older than the horizon (that state is pruned with the
same horizon, and a stream without state would count its whole value again).

Worked example, ``days = 400`` in UTC, now 2026-12-01 10:00 UTC:

- first kept day ``2025-10-27`` (2026-12-01 minus 400 days);
- ``earliest_ms`` = UnixMilli of 2025-10-27 00:00 UTC: a report completed at 2025-10-26
  23:59:59.999 is older than retention, one at 2025-10-27 00:00 is kept.
In ``Europe/Paris`` (UTC+1 that day) the first kept day is the same, and ``earliest_ms`` is
2025-10-26 23:00 UTC, the zone's midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

REASON = "older than retention"


@dataclass(frozen=True, slots=True)
class Horizon:
    days: int
    tz: tzinfo = UTC

    def first_day(self, now_ms: int) -> date:
        """The oldest day kept at ``now_ms``: today in the zone minus ``days``."""
        today = datetime.fromtimestamp(now_ms / 1000, self.tz).date()
        return today - timedelta(days=self.days)

    def earliest_ms(self, now_ms: int) -> int:
        """UnixMilli of the first kept day's midnight in the zone: instants before it are
        older than retention."""
        midnight = datetime.combine(self.first_day(now_ms), time.min, self.tz)
        return int(midnight.astimezone(UTC).timestamp() * 1000)

    def reason(self, instant_ms: int, now_ms: int) -> str:
        """The reject reason of a report at ``instant_ms`` (before the horizon)."""
        day = datetime.fromtimestamp(instant_ms / 1000, self.tz).date()
        return f"{REASON}: day {day} is before {self.first_day(now_ms)}, the first day kept"
