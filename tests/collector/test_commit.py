"""Group commit: flush triggers, acknowledgement after commit, retryable refusals."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from collector.aggregation.rules import Estimation
from collector.commit import CommitSettings, GroupCommit
from collector.config import CommitConfig
from collector.decode.items import SpanItem
from collector.errors import RetryableError
from collector.ingest import YIELD_EVERY, Ingest
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.points import MetricRules
from collector.model import Committed, Signal, Source, UsageReport, Work


def sqlite_settings(**changes: Any) -> CommitSettings:
    """The default settings on SQLite, with ``changes``."""
    return dataclasses.replace(CommitConfig().settings("sqlite"), **changes)


@dataclasses.dataclass
class RecordingWriter:
    """Records each transaction; can be made to fail like an unreachable database."""

    batches: list[list[str]] = dataclasses.field(default_factory=list)
    started: list[list[str]] = dataclasses.field(default_factory=list)
    down: bool = False
    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def write(self, work: Work) -> Committed:
        self.started.append([r.dedup_key for r in work.reports])
        await self.gate.wait()
        if self.down:
            raise RetryableError("database unavailable")
        self.batches.append([r.dedup_key for r in work.reports])
        return Committed(work.reports, 0, len(work.rejects), 0.0)

    async def ping(self) -> bool:
        return not self.down


def work(*keys: str) -> Work:
    return Work(reports=[UsageReport(model="m", source=Source.SPAN, dedup_key=k, received_at=1)
                         for k in keys])  # fmt: skip


async def test_requests_within_the_interval_share_one_transaction() -> None:
    writer = RecordingWriter()
    commit = GroupCommit(writer, sqlite_settings(max_batch=100, flush_interval=0.05))
    await commit.start()
    await asyncio.gather(*(commit.submit(work(f"k{i}")) for i in range(10)))
    assert writer.batches == [[f"k{i}" for i in range(10)]]
    await commit.shutdown()


async def test_a_full_batch_flushes_without_waiting_for_the_interval() -> None:
    writer = RecordingWriter()
    commit = GroupCommit(writer, sqlite_settings(max_batch=3, flush_interval=3600))
    await commit.start()
    await asyncio.wait_for(
        asyncio.gather(*(commit.submit(work(f"k{i}")) for i in range(6))), timeout=10
    )
    assert writer.batches == [["k0", "k1", "k2"], ["k3", "k4", "k5"]]
    await commit.shutdown()


async def test_submit_returns_only_after_the_commit() -> None:
    writer = RecordingWriter()
    writer.gate.clear()
    commit = GroupCommit(writer, sqlite_settings(max_batch=1, flush_interval=0.01))
    await commit.start()
    pending = asyncio.create_task(commit.submit(work("a")))
    await asyncio.sleep(0.05)
    assert not pending.done() and writer.batches == []
    writer.gate.set()
    await asyncio.wait_for(pending, timeout=10)
    assert writer.batches == [["a"]]
    await commit.shutdown()


async def test_full_queue_and_database_outage_answer_retryable_then_recover() -> None:
    writer = RecordingWriter()
    writer.gate.clear()
    settings = sqlite_settings(max_batch=10, flush_interval=0.01, max_pending=2, retry_after=0.05)
    commit = GroupCommit(writer, settings)
    await commit.start()
    first = asyncio.create_task(commit.submit(work("a", "b")))
    await asyncio.sleep(0.02)
    with pytest.raises(RetryableError, match="queue full"):
        await commit.submit(work("c"))
    with pytest.raises(RetryableError, match="queue full"):
        commit.admit()  # what receivers ask before decoding a request
    writer.down = True
    writer.gate.set()
    with pytest.raises(RetryableError, match="database unavailable"):
        await first
    with pytest.raises(RetryableError, match="database unavailable"):
        await commit.submit(work("d"))
    assert commit.database_down
    writer.down = False
    for _ in range(100):
        if not commit.database_down:
            break
        await asyncio.sleep(0.02)
    await commit.submit(work("e"))
    assert writer.batches == [["e"]]
    await commit.shutdown()


async def test_shutdown_commits_what_was_accepted_and_refuses_more() -> None:
    writer = RecordingWriter()
    commit = GroupCommit(writer, sqlite_settings(max_batch=100, flush_interval=3600))
    await commit.start()
    accepted = [asyncio.create_task(commit.submit(work(f"k{i}"))) for i in range(3)]
    await asyncio.sleep(0.01)
    await commit.shutdown()
    await asyncio.gather(*accepted)
    assert writer.batches == [["k0", "k1", "k2"]]
    with pytest.raises(RetryableError, match="shutting down"):
        await commit.submit(work("late"))
    await commit.shutdown()


async def test_two_transactions_in_flight_each_answer_their_own_requests() -> None:
    writer = RecordingWriter()
    writer.gate.clear()
    commit = GroupCommit(writer, sqlite_settings(max_batch=2, flush_interval=0.01, concurrency=2))
    await commit.start()
    first = [asyncio.create_task(commit.submit(work(k))) for k in ("a", "b")]
    await asyncio.sleep(0.05)
    second = [asyncio.create_task(commit.submit(work(k))) for k in ("c", "d")]
    third = asyncio.create_task(commit.submit(work("e")))
    await asyncio.sleep(0.05)
    assert commit.pending == 5 and not any(t.done() for t in (*first, *second, third))
    writer.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, *second, third), timeout=10)
    assert sorted(map(tuple, writer.batches)) == [("a", "b"), ("c", "d"), ("e",)]
    assert commit.pending == 0
    await commit.shutdown()


async def test_an_idle_writer_commits_at_once_and_a_busy_one_groups() -> None:
    writer = RecordingWriter()
    commit = GroupCommit(writer, sqlite_settings(max_batch=100, flush_interval=0.2))
    await commit.start()
    await asyncio.wait_for(commit.submit(work("alone")), timeout=0.15)  # no 0.2 s linger
    writer.gate.clear()
    busy = asyncio.create_task(commit.submit(work("first")))
    await asyncio.sleep(0.02)  # "first" is in flight; the next ones wait for company
    later = [asyncio.create_task(commit.submit(work(k))) for k in ("b", "c")]
    writer.gate.set()
    await asyncio.wait_for(asyncio.gather(busy, *later), timeout=10)
    assert writer.batches == [["alone"], ["first"], ["b", "c"]]
    await commit.shutdown()


async def test_free_slots_start_at_once_and_the_last_one_waits_for_company() -> None:
    writer = RecordingWriter()
    writer.gate.clear()
    commit = GroupCommit(writer, sqlite_settings(max_batch=100, flush_interval=3600,
                                                concurrency=3))  # fmt: skip
    await commit.start()
    tasks = [asyncio.create_task(commit.submit(work("a")))]
    await asyncio.sleep(0.02)
    tasks.append(asyncio.create_task(commit.submit(work("b"))))
    await asyncio.sleep(0.02)
    # Two transactions in flight: "c" and "d" would take the last slot, so they wait.
    tasks += [asyncio.create_task(commit.submit(work(k))) for k in ("c", "d")]
    await asyncio.sleep(0.05)
    assert writer.started == [["a"], ["b"]]
    writer.gate.set()
    closing = asyncio.create_task(commit.shutdown())  # ends the wait: what is queued is written
    await asyncio.wait_for(asyncio.gather(*tasks, closing), timeout=10)
    assert writer.started == [["a"], ["b"], ["c", "d"]]
    assert sorted(map(tuple, writer.batches)) == [("a",), ("b",), ("c", "d")]


async def test_a_large_request_lets_other_tasks_run_while_it_is_mapped() -> None:
    writer = RecordingWriter()
    commit = GroupCommit(writer, sqlite_settings())
    await commit.start()
    ingest = Ingest(FieldMapper(MappingRules()), MetricRules(), Estimation(), commit)
    events: list[str] = []
    count = 5 * YIELD_EVERY

    def spans() -> Iterator[SpanItem]:
        for n in range(count):
            events.append("span")
            attrs = {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1}
            yield SpanItem({}, attrs, f"{n + 1:032x}", f"{n + 1:016x}", 1, 2, "chat")

    async def other() -> None:
        while len(events) < count:
            events.append("other")
            await asyncio.sleep(0)

    mapped, _ = await asyncio.gather(ingest.map(Signal.TRACES, spans()), other())
    await commit.submit(mapped)
    await commit.shutdown()
    assert (len(mapped.reports), len(writer.batches[0])) == (count, count)
    # The other task ran between chunks of the request, not only before and after it.
    first, last = events.index("span"), len(events) - events[::-1].index("span") - 1
    assert events[first:last].count("other") == count // YIELD_EVERY - 1
