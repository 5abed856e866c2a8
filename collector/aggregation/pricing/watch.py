"""The live price table of a serving process, and its reload when the price file changes.

Every ``interval`` seconds the file's modification time and size are compared with those of
the last read (as ``collector.mapping.catalog.CatalogWatcher`` does). A changed file is parsed
off the event loop; a valid one replaces the table at once, an invalid one is logged with the
row and key at fault and the last good table stays. Reports committed before the swap keep
the price they were given; ``tokenbridge reprice`` corrects days after an edit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from collector.aggregation.pricing import file
from collector.aggregation.pricing.builtin import Builtin
from collector.aggregation.pricing.table import PriceTable

logger = logging.getLogger(__name__)


def build(path: str | None, currency: str, builtin: bool) -> PriceTable:
    """The table of ``path`` (if any) over the builtin one (if wanted); ``ValueError``
    naming the file, row and key of a bad row."""
    rows = file.load(path, currency) if path is not None else []
    return PriceTable(rows, Builtin() if builtin else None)


class Pricing:
    """The current table (``table.price`` is the hot-path call, one per audit row), swapped
    whole by a reload."""

    def __init__(self, table: PriceTable, currency: str) -> None:
        self.table = table
        self.currency = currency

    def install(self, table: PriceTable) -> None:
        self.table = table


class PriceWatcher:
    def __init__(self, path: str | Path, currency: str, builtin: bool, pricing: Pricing) -> None:
        self.path = Path(path)
        self._currency = currency
        self._builtin = pricing.table.builtin if builtin else None
        self._pricing = pricing
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check()

    async def check(self) -> bool:
        """Reload if the file changed since the last read; True when a new table is in."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            rows = await asyncio.to_thread(file.load, self.path, self._currency)
        except ValueError as exc:
            logger.error("prices not reloaded, keeping the last good table: %s", exc)
            return False
        self._pricing.install(PriceTable(rows, self._builtin))
        logger.info("prices reloaded from %s: %d rows", self.path, len(rows))
        return True
