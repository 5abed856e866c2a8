"""Recording fakes for the in-process tests: a sink that implements ``BatchWriter`` and keeps
every transaction, and clocks a test moves by hand. Only for paths a real server cannot reach
on demand (a database that fails at one exact moment, a queue held full); everything else is
tested against the real CLI server (``tests.support.Server``)."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools

from collector.errors import RetryableError
from collector.model import Committed, UsageReport, Work


@dataclasses.dataclass
class RecordingSink:
    """A ``BatchWriter`` that records each transaction by the dedup keys it carried.

    ``gate`` holds every transaction open until set (a slow database); ``down`` makes
    transactions and pings fail as an unreachable database does."""

    batches: list[list[str]] = dataclasses.field(default_factory=list)
    """Committed transactions, in commit order."""
    started: list[list[str]] = dataclasses.field(default_factory=list)
    """Transactions begun (committed or not), in start order."""
    rejects: int = 0
    """Rejects committed."""
    down: bool = False
    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def write(self, work: Work) -> Committed:
        reports = counted(work)
        self.started.append([r.dedup_key for r in reports])
        await self.gate.wait()
        if self.down:
            raise RetryableError("database unavailable")
        self.batches.append([r.dedup_key for r in reports])
        self.rejects += len(work.rejects)
        return Committed(reports, 0, len(work.rejects), 0.0, len(reports))

    async def ping(self) -> bool:
        return not self.down

    @property
    def committed(self) -> int:
        """Reports committed in all."""
        return sum(len(batch) for batch in self.batches)


def counted(work: Work) -> list[UsageReport]:
    """The reports of ``work``, its items under the source rule included: this sink keeps
    no producer state, so it counts every usage span and delta point (the SQL sink decides)."""
    ruled = [r for p in work.producers for r in p.spans]
    ruled += [r for p in work.producers for _at, r in p.deltas if r is not None]
    return [*work.reports, *ruled]


class ManualClock:
    """The commit's ``Clock``: time moves only by ``advance``; sleepers wake when it passes
    their deadline, in deadline order."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + seconds, next(self._order), future))
        await future

    @property
    def sleeping(self) -> list[float]:
        """Deadlines of the sleepers still waiting."""
        return sorted(at for at, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time on, wake whoever's deadline has passed, and let them run."""
        self.time += seconds
        while self._sleepers and self._sleepers[0][0] <= self.time:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        await settle()


def fixed_clock(seconds: float = 1_700_000_000.0) -> float:
    """Ingest's wall clock, stopped: 2023-11-14T22:13:20Z."""
    return seconds


async def settle(rounds: int = 50) -> None:
    """Let every task that can run, run (event-loop turns, no wall-clock time)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
