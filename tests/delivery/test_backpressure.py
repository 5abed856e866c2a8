"""GroupCommit's backpressure and recovery, against a recording writer the test controls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from collector.errors import RetryableError
from collector.pipeline import CommitSettings, Committed, GroupCommit, Work
from collector.report import Source, UsageReport


def _work(key: str) -> Work:
    report = UsageReport(model="m", source=Source.GATEWAY, dedup_key=key, received_at=1,
                         input_token=10, request_count=1)  # fmt: skip
    return Work(reports=[report])


class RecordingWriter:
    """Writes into a list; ``gate`` holds writes back, ``down`` makes them fail as an
    unreachable database does, ``reachable`` is what ``ping`` answers."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False
        self.reachable = True
        self.writing = asyncio.Event()

    async def write(self, work: Work) -> Committed:
        self.writing.set()
        await self.gate.wait()
        if self.down:
            raise RetryableError("database unavailable: test")
        self.written.extend(r.dedup_key for r in work.reports)
        return Committed(work.reports, 0, 0, 0.0)

    async def ping(self) -> bool:
        return self.reachable


@pytest.fixture
def writer() -> RecordingWriter:
    return RecordingWriter()


@contextlib.asynccontextmanager
async def running(writer: RecordingWriter, settings: CommitSettings) -> AsyncIterator[GroupCommit]:
    commit = GroupCommit(writer, settings)
    await commit.start()
    try:
        yield commit
    finally:
        await commit.shutdown()


async def test_full_queue_answers_retryable_and_keeps_what_it_accepted(
    writer: RecordingWriter,
) -> None:
    settings = CommitSettings(max_batch=1, flush_interval=0.001, max_pending=3)
    async with running(writer, settings) as commit:
        writer.gate.clear()
        first = asyncio.create_task(commit.submit(_work("a")))
        await writer.writing.wait()  # "a" is being written; the next three wait in the queue
        queued = [asyncio.create_task(commit.submit(_work(k))) for k in "bcd"]
        await asyncio.sleep(0)
        with pytest.raises(RetryableError, match="pending queue full"):
            await commit.submit(_work("e"))
        writer.gate.set()
        await asyncio.gather(first, *queued)
    assert writer.written == ["a", "b", "c", "d"]


async def test_database_down_refuses_until_the_probe_sees_it_back(writer: RecordingWriter) -> None:
    settings = CommitSettings(flush_interval=0.001, retry_after=0.01)
    async with running(writer, settings) as commit:
        writer.down, writer.reachable = True, False
        with pytest.raises(RetryableError):
            await commit.submit(_work("a"))
        assert commit.database_down
        with pytest.raises(RetryableError, match="database unavailable"):
            await commit.submit(_work("b"))
        writer.down, writer.reachable = False, True
        for _ in range(500):  # bounded: the probe runs every retry_after
            if not commit.database_down:
                break
            await asyncio.sleep(0.01)
        await commit.submit(_work("a"))
    assert writer.written == ["a"]


async def test_shutdown_commits_what_was_accepted_then_refuses(writer: RecordingWriter) -> None:
    commit = GroupCommit(writer, CommitSettings(flush_interval=5.0))
    await commit.start()
    accepted = [asyncio.create_task(commit.submit(_work(k))) for k in "abc"]
    await asyncio.sleep(0)
    await commit.shutdown()  # long before flush_interval
    await asyncio.gather(*accepted)
    with pytest.raises(RetryableError, match="shutting down"):
        await commit.submit(_work("d"))
    assert writer.written == ["a", "b", "c"]
