"""The bridge's own counts: what each interval took (one INFO line), and the totals logged
at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from collector.model import Committed

logger = logging.getLogger("collector.runtime.service")
"""The summary lines keep the logger they always had (operators filter on it)."""


@dataclass
class Totals:
    """Counts for the periodic summary line and the one logged at shutdown."""

    accepted: int = 0
    committed: int = 0
    duplicates: int = 0
    rejects: int = 0
    ignored: int = 0
    transactions: int = 0
    started: float = field(default_factory=time.monotonic)

    def __call__(self, committed: Committed) -> None:
        self.accepted += committed.accepted
        self.committed += len(committed.reports)
        self.duplicates += committed.duplicates
        self.rejects += committed.rejects
        self.transactions += 1

    def add_ignored(self, reasons: Mapping[str, int]) -> None:
        """Items of an answered request neither counted nor rejected (``Ingest``'s tally)."""
        self.ignored += sum(reasons.values())

    def counts(self) -> tuple[int, int, int, int, int]:
        return self.accepted, self.committed, self.rejects, self.ignored, self.duplicates


async def log_summaries(
    interval: float, totals: Callable[[], tuple[int, ...]], pending: Callable[[], int]
) -> None:
    """Every ``interval`` seconds one line: what the last interval took, and what waits.

    Example: ``last 60s: accepted 12000, committed 11990, rejected 3, ignored 40,
    deduplicated 10, pending 0`` (committed = new reports in the rollups; deduplicated =
    committed before; ignored = items neither counted nor rejected, e.g. spans without
    usage)."""
    last = totals()
    while True:
        await asyncio.sleep(interval)
        now = totals()
        logger.info("%s", summary(interval, now, last, pending()))
        last = now


def summary(
    interval: float, now: tuple[int, ...], last: tuple[int, ...], pending: int
) -> str:
    accepted, committed, rejected, ignored, duplicates = (
        a - b for a, b in zip(now, last, strict=True))
    return (f"last {interval:g}s: accepted {accepted}, committed {committed}, rejected "
            f"{rejected}, ignored {ignored}, deduplicated {duplicates}, pending "
            f"{pending}")  # fmt: skip
