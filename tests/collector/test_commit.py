"""Group commit: flush triggers, acknowledgement after commit, retryable refusals.

Time is a ``ManualClock``: the flush interval and the database probe wait only for
``clock.advance``, and ``settle`` lets the tasks run, so no test sleeps."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from collector.commit import CommitSettings, GroupCommit
from collector.config import CommitConfig
from collector.errors import RetryableError
from collector.model import Source, UsageReport, Work
from tests.fakes import ManualClock, RecordingSink, settle


def sqlite_settings(**changes: Any) -> CommitSettings:
    """The default settings on SQLite, with ``changes``."""
    return dataclasses.replace(CommitConfig().settings("sqlite"), **changes)


def work(*keys: str) -> Work:
    return Work(reports=[UsageReport(model="m", source=Source.SPAN, dedup_key=k, received_at=1)
                         for k in keys])  # fmt: skip


async def started(sink: RecordingSink, clock: ManualClock, **settings: Any) -> GroupCommit:
    commit = GroupCommit(sink, sqlite_settings(**settings), clock=clock)
    await commit.start()
    return commit


async def test_requests_submitted_together_share_one_transaction() -> None:
    sink, clock = RecordingSink(), ManualClock()
    commit = await started(sink, clock, max_batch=100)
    await asyncio.gather(*(commit.submit(work(f"k{i}")) for i in range(10)))
    assert sink.batches == [[f"k{i}" for i in range(10)]]
    await commit.shutdown()


async def test_requests_queued_while_a_transaction_runs_share_the_next_one() -> None:
    sink, clock = RecordingSink(), ManualClock()
    commit = await started(sink, clock, max_batch=100)
    sink.gate.clear()
    first = asyncio.create_task(commit.submit(work("k0")))
    await settle()
    rest = [asyncio.create_task(commit.submit(work(f"k{i}"))) for i in range(1, 10)]
    await settle()
    assert sink.started == [["k0"]]
    sink.gate.set()
    await asyncio.gather(first, *rest)
    assert sink.batches == [["k0"], [f"k{i}" for i in range(1, 10)]]
    assert (commit.pending, clock.sleeping) == (0, [])
    await commit.shutdown()


async def test_a_full_batch_flushes_without_waiting_for_the_interval() -> None:
    sink, clock = RecordingSink(), ManualClock()
    commit = await started(sink, clock, max_batch=3, flush_interval=3600, concurrency=2)
    sink.gate.clear()
    head = asyncio.create_task(commit.submit(work("h")))
    await settle()
    tasks = [asyncio.create_task(commit.submit(work(f"k{i}"))) for i in range(3)]
    await settle()
    # The last free slot waits for company, and three reports are a full batch: no wait.
    assert sink.started == [["h"], ["k0", "k1", "k2"]]
    sink.gate.set()
    await asyncio.gather(head, *tasks)
    assert sink.batches == [["h"], ["k0", "k1", "k2"]]
    await commit.shutdown()


async def test_the_last_slot_waits_the_flush_interval_on_the_clock() -> None:
    sink, clock = RecordingSink(), ManualClock()
    commit = await started(sink, clock, max_batch=100, flush_interval=0.25, concurrency=2)
    sink.gate.clear()
    head = asyncio.create_task(commit.submit(work("h")))
    await settle()
    queued_at = clock.now()
    tasks = [asyncio.create_task(commit.submit(work(k))) for k in ("a", "b")]
    await settle()
    assert sink.started == [["h"]] and clock.sleeping == [queued_at + 0.25]
    await clock.advance(0.2)
    assert sink.started == [["h"]]
    await clock.advance(0.05)
    assert sink.started == [["h"], ["a", "b"]]
    sink.gate.set()
    await asyncio.gather(head, *tasks)
    await commit.shutdown()


async def test_submit_returns_only_after_the_commit() -> None:
    sink, clock = RecordingSink(), ManualClock()
    sink.gate.clear()
    commit = await started(sink, clock, max_batch=1)
    pending = asyncio.create_task(commit.submit(work("a")))
    await settle()
    assert not pending.done() and sink.started == [["a"]] and sink.batches == []
    assert commit.pending == 1
    sink.gate.set()
    await pending
    assert (sink.batches, commit.pending) == ([["a"]], 0)
    await commit.shutdown()


async def test_full_queue_and_database_outage_answer_retryable_then_recover() -> None:
    sink, clock = RecordingSink(), ManualClock()
    sink.gate.clear()
    commit = await started(sink, clock, max_batch=10, max_pending=2, retry_after=0.5)
    first = asyncio.create_task(commit.submit(work("a", "b")))
    await settle()
    with pytest.raises(RetryableError, match="queue full") as full:
        await commit.submit(work("c"))
    assert full.value.retry_after == 0.5
    with pytest.raises(RetryableError, match="queue full"):
        commit.admit()  # what receivers ask before decoding a request
    sink.down = True
    sink.gate.set()
    with pytest.raises(RetryableError, match="database unavailable"):
        await first
    with pytest.raises(RetryableError, match="database unavailable"):
        await commit.submit(work("d"))
    await settle()
    assert commit.database_down and clock.sleeping == [clock.now() + 0.5]
    sink.down = False
    await clock.advance(0.5)  # the probe pings, the database answers
    assert not commit.database_down
    await commit.submit(work("e"))
    assert sink.batches == [["e"]] and commit.pending == 0
    await commit.shutdown()


async def test_a_database_still_down_is_probed_again_after_retry_after() -> None:
    sink, clock = RecordingSink(down=True), ManualClock()
    commit = await started(sink, clock, retry_after=2.0)
    with pytest.raises(RetryableError, match="database unavailable"):
        await commit.submit(work("a"))
    await settle()
    await clock.advance(2.0)
    assert commit.database_down and clock.sleeping == [clock.now() + 2.0]
    sink.down = False
    await clock.advance(2.0)
    assert not commit.database_down
    await commit.shutdown()


async def test_shutdown_commits_what_was_accepted_and_refuses_more() -> None:
    sink, clock = RecordingSink(), ManualClock()
    sink.gate.clear()
    commit = await started(sink, clock, max_batch=100, flush_interval=3600)
    head = asyncio.create_task(commit.submit(work("h")))
    await settle()
    accepted = [asyncio.create_task(commit.submit(work(f"k{i}"))) for i in range(3)]
    await settle()
    closing = asyncio.create_task(commit.shutdown())
    await settle()
    with pytest.raises(RetryableError, match="shutting down"):
        await commit.submit(work("late"))
    sink.gate.set()
    await asyncio.gather(head, *accepted, closing)
    assert sink.batches == [["h"], ["k0", "k1", "k2"]]
    await commit.shutdown()


async def test_two_transactions_in_flight_each_answer_their_own_requests() -> None:
    sink, clock = RecordingSink(), ManualClock()
    sink.gate.clear()
    commit = await started(sink, clock, max_batch=2, concurrency=2)
    first = [asyncio.create_task(commit.submit(work(k))) for k in ("a", "b")]
    await settle()
    second = [asyncio.create_task(commit.submit(work(k))) for k in ("c", "d")]
    third = asyncio.create_task(commit.submit(work("e")))
    await settle()
    assert commit.pending == 5 and not any(t.done() for t in (*first, *second, third))
    sink.gate.set()
    await asyncio.gather(*first, *second, third)
    assert sorted(map(tuple, sink.batches)) == [("a", "b"), ("c", "d"), ("e",)]
    assert commit.pending == 0
    await commit.shutdown()


async def test_an_idle_writer_commits_at_once_and_a_busy_one_groups() -> None:
    sink, clock = RecordingSink(), ManualClock()
    commit = await started(sink, clock, max_batch=100, flush_interval=0.2)
    await commit.submit(work("alone"))  # no linger: the clock never moved
    assert clock.sleeping == []
    sink.gate.clear()
    busy = asyncio.create_task(commit.submit(work("first")))
    await settle()  # "first" is in flight; the next ones wait for it
    later = [asyncio.create_task(commit.submit(work(k))) for k in ("b", "c")]
    await settle()
    sink.gate.set()
    await asyncio.gather(busy, *later)
    assert sink.batches == [["alone"], ["first"], ["b", "c"]]
    await commit.shutdown()


async def test_free_slots_start_at_once_and_the_last_one_waits_for_company() -> None:
    sink, clock = RecordingSink(), ManualClock()
    sink.gate.clear()
    commit = await started(sink, clock, max_batch=100, flush_interval=3600, concurrency=3)
    tasks = [asyncio.create_task(commit.submit(work("a")))]
    await settle()
    tasks.append(asyncio.create_task(commit.submit(work("b"))))
    await settle()
    # Two transactions in flight: "c" and "d" would take the last slot, so they wait.
    tasks += [asyncio.create_task(commit.submit(work(k))) for k in ("c", "d")]
    await settle()
    assert sink.started == [["a"], ["b"]] and clock.sleeping == [clock.now() + 3600]
    sink.gate.set()
    closing = asyncio.create_task(commit.shutdown())  # ends the wait: what is queued is written
    await asyncio.gather(*tasks, closing)
    assert sink.started == [["a"], ["b"], ["c", "d"]]
    assert sorted(map(tuple, sink.batches)) == [("a",), ("b",), ("c", "d")]


async def test_a_request_that_fails_a_shared_transaction_is_retried_alone() -> None:
    class Picky(RecordingSink):
        async def write(self, work: Work) -> Any:
            if any(r.dedup_key == "bad" for r in work.reports):
                raise ValueError("constraint violated")
            return await super().write(work)

    sink, clock = Picky(), ManualClock()
    sink.gate.clear()
    commit = await started(sink, clock, max_batch=100)
    head = asyncio.create_task(commit.submit(work("h")))
    await settle()
    good = asyncio.create_task(commit.submit(work("ok")))
    bad = asyncio.create_task(commit.submit(work("bad")))
    await settle()
    sink.gate.set()
    await asyncio.gather(head, good)
    # The sender is told it failed; the driver's text (SQL, addresses) goes to the log only.
    with pytest.raises(RetryableError, match=r"^commit failed$"):
        await bad
    assert sink.batches == [["h"], ["ok"]] and not commit.database_down
    await commit.shutdown()
