"""Group commit: many requests, one transaction, every request answered after its commit.

Flush triggers, all in one place. Up to ``concurrency`` transactions are in flight, and
requests that arrive meanwhile form the next batch. A new transaction starts at once while it
would not take the last free slot (with one slot: when the writer is idle; an idle database
has nothing to group with, so waiting would only add latency). The last free slot, taken
while others are in flight, waits for company (PostgreSQL's ``commit_delay`` with
``commit_siblings``): until ``max_batch`` reports are pending or the oldest has waited
``flush_interval`` seconds, so under load it carries a full batch. ``flush()`` and
``shutdown()`` write at once. A request's ``submit`` returns
only when the transaction holding its reports has committed, and raises ``RetryableError``
when it could not be (database down, queue full, shutting down); nothing of a failed request
is kept, so the sender's retry is the only copy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Protocol

from collector.errors import RetryableError
from collector.model import BatchWriter, CommitListener, Work

logger = logging.getLogger(__name__)


class Clock(Protocol):
    """Time as the commit sees it: tests inject a manual one and never sleep."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds``."""


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


Pending = tuple[Work, "asyncio.Future[None]", float]
"""A request's work, the future its receiver awaits, and when it was queued."""


@dataclasses.dataclass(frozen=True)
class CommitSettings:
    """The commit's settings, derived from ``collector.config.CommitConfig`` (which holds the
    defaults and decides the engine-specific ones)."""

    max_batch: int
    flush_interval: float
    max_pending: int
    retry_after: float
    concurrency: int
    """Transactions in flight at once: with 2, rows of the next batch are built while the
    database commits the last one (keys are locked in sorted order, so they cannot
    deadlock each other; SQLite has one writer and stays at 1)."""


class GroupCommit:
    def __init__(
        self,
        writer: BatchWriter,
        settings: CommitSettings,
        listeners: Sequence[CommitListener] = (),
        clock: Clock | None = None,
    ) -> None:
        self._writer = writer
        self._settings = settings
        self._listeners = list(listeners)
        self._clock: Clock = clock or MonotonicClock()
        self._queue: deque[Pending] = deque()
        self._pending = 0
        self._queued = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._database_down = False
        self._down_since = 0.0
        self._refused = 0
        """Retryable answers given since the database went down."""
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Reports accepted and not yet committed (queued or in the open transaction)."""
        return self._pending

    @property
    def database_down(self) -> bool:
        return self._database_down

    def database_unavailable(self, detail: str) -> None:
        """Answer retryable from now on and probe until the database answers; the outage is
        logged once here and once when it ends (how long, how many retryable answers)."""
        if self._database_down:
            return
        self._database_down = True
        self._down_since = self._clock.now()
        self._refused = 0
        retry = self._settings.retry_after
        logger.warning(
            "database unavailable (%s): answering retryable (HTTP 503 with Retry-After, gRPC "
            "UNAVAILABLE) until it answers; probing every %gs", detail, retry,
        )  # fmt: skip
        self._wake.set()  # the loop probes until the database answers again

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tokenbridge-group-commit")

    def admit(self, size: int = 0) -> None:
        """Raise ``RetryableError`` when a request of ``size`` reports would be refused now.
        Receivers call it before decoding, so a refused request costs no decoding work."""
        retry_after = self._settings.retry_after
        if self._closing:
            raise RetryableError("shutting down", retry_after=retry_after)
        if self._database_down:
            self._refused += 1
            raise RetryableError("database unavailable", retry_after=retry_after)
        if self._pending and self._pending + max(1, size) > self._settings.max_pending:
            raise RetryableError("pending queue full", retry_after=retry_after)

    async def submit(self, work: Work) -> None:
        """Return once ``work`` is committed. Raises ``RetryableError``."""
        if not len(work):
            return
        self.admit(len(work))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future, self._clock.now()))
        self._pending += len(work)
        self._queued += len(work)
        self._wake.set()
        if self._queued >= self._settings.max_batch:
            self._full.set()
        await future

    async def flush(self) -> None:
        """Commit what is pending now (tests use this instead of sleeping)."""
        while self._queue:
            await self._write(self._take())

    async def shutdown(self) -> None:
        """Stop taking work, commit what was accepted, stop. Idempotent."""
        if self._closing and self._task is None:
            return
        self._closing = True
        self._full.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if self._database_down and not self._closing:
                await self._drain()
                await self._probe()
                continue
            if self._closing and not self._queue:
                await self._drain()
                return
            await self._wake.wait()
            if (self._queue and not self._closing
                    and 0 < len(self._inflight) == self._settings.concurrency - 1
                    and self._queued < self._settings.max_batch):  # fmt: skip
                oldest = self._queue[0][2]
                wait = oldest + self._settings.flush_interval - self._clock.now()
                if wait > 0:
                    await self._linger(wait)
            if self._queue:
                await self._slots.acquire()
                if self._database_down or not self._queue:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._write_in_slot(self._take()))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if not self._queue and not self._closing:
                self._wake.clear()
                self._full.clear()

    async def _linger(self, seconds: float) -> None:
        """Wait until the batch is full or ``seconds`` have passed."""
        full = asyncio.ensure_future(self._full.wait())
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((full, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            full.cancel()
            timer.cancel()

    async def _write_in_slot(self, taken: list[Pending]) -> None:
        try:
            await self._write(taken)
        finally:
            self._slots.release()

    async def _drain(self) -> None:
        """Wait for the transactions in flight."""
        if self._inflight:
            await asyncio.gather(*self._inflight)

    def _take(self) -> list[Pending]:
        taken = [self._queue.popleft()]
        size = len(taken[0][0])
        while self._queue and size + len(self._queue[0][0]) <= self._settings.max_batch:
            taken.append(self._queue.popleft())
            size += len(taken[-1][0])
        self._queued -= size
        return taken

    async def _write(self, taken: list[Pending]) -> None:
        work = Work()
        for part, _future, _at in taken:
            work.extend(part)
        error = await self._attempt(work)
        if error is not None and len(taken) > 1 and not self._database_down:
            # One request's data failed a transaction the database could run: write each
            # request alone so the others are not refused with it.
            for one in taken:
                await self._write([one])
            return
        for one in taken:
            self._settle(one, error)

    def _settle(self, pending: Pending, error: RetryableError | None) -> None:
        """Answer one request; its reports stop counting as pending."""
        work, future, _at = pending
        self._pending -= len(work)
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            if self._database_down:
                self._refused += 1
            future.set_exception(error)

    async def _attempt(self, work: Work) -> RetryableError | None:
        try:
            committed = await self._writer.write(work)
        except RetryableError as exc:
            self.database_unavailable(exc.message)
            # The detail (driver error, server address) is for the log, not for senders.
            return RetryableError("database unavailable", retry_after=exc.retry_after)
        except Exception:
            logger.exception("commit failed")
            return RetryableError("commit failed", retry_after=self._settings.retry_after)
        for listener in self._listeners:
            try:
                listener(committed)
            except Exception:
                # The data is committed: a failing re-export must not fail the request.
                logger.exception("commit listener failed")
        return None

    async def _probe(self) -> None:
        """Wait while the database is down; fail what is queued so senders retry."""
        while self._queue:
            self._settle(self._queue.popleft(), RetryableError("database unavailable"))
        self._queued = 0
        await self._clock.sleep(self._settings.retry_after)
        if await _safe(self._writer.ping()):
            logger.warning(
                "database available again after %.1fs; %d retryable answers given meanwhile; "
                "taking work", self._clock.now() - self._down_since, self._refused,
            )  # fmt: skip
            self._database_down = False


async def _safe(check: Awaitable[bool]) -> bool:
    try:
        return await check
    except Exception:
        return False
