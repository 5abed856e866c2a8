"""A receiver's whole pipeline in one process: the real ``Ingest`` and ``GroupCommit`` over a
``RecordingSink``, on a manual clock, so a test can hold the queue full, take the database
down or shut the commit at an exact moment."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.aggregation.rules import Estimation
from collector.commit import GroupCommit
from collector.config import CommitConfig, LimitsConfig
from collector.errors import RetryableError
from collector.ingest import Ingest
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.points import MetricRules
from collector.model import Source, UsageReport, Work
from tests.fakes import ManualClock, RecordingSink, fixed_clock, settle

RETRY_AFTER = 2.5
"""Seconds the commit asks senders to wait: ``Retry-After: 3`` (whole seconds, rounded up),
``RetryInfo`` 2.5 s."""
MAX_BODY = 1 << 20


@dataclasses.dataclass
class Pipeline:
    sink: RecordingSink
    clock: ManualClock
    commit: GroupCommit
    ingest: Ingest
    retryable: list[str] = dataclasses.field(default_factory=list)
    """Retryable answers counted, by transport (the self-telemetry hook)."""
    _held: asyncio.Task[None] | None = None

    def count_retryable(self, transport: str) -> None:
        self.retryable.append(transport)

    async def fill_queue(self) -> None:
        """Hold one report in an open transaction: with ``max_pending`` 1 the queue is full."""
        self.sink.gate.clear()
        self._held = asyncio.create_task(self.commit.submit(_work("held")))
        await asyncio.sleep(0)
        assert self.commit.pending == 1

    async def release(self) -> None:
        self.sink.gate.set()
        if self._held is not None:
            await self._held

    async def close(self) -> None:
        """Shut the commit; a probe of a database that was down waits ``retry_after`` on the
        clock first."""
        await self.release()
        closing = asyncio.create_task(self.commit.shutdown())
        await settle()
        await self.clock.advance(RETRY_AFTER)
        await closing

    async def take_database_down(self) -> None:
        """A transaction fails as on an unreachable database; the commit then refuses."""
        self.sink.down = True
        with pytest.raises(RetryableError):
            await self.commit.submit(_work("lost"))
        assert self.commit.database_down


async def pipeline(max_pending: int = 1, max_items: int = 100) -> Pipeline:
    sink, clock = RecordingSink(), ManualClock()
    settings = dataclasses.replace(CommitConfig().settings("sqlite"), max_pending=max_pending,
                                   retry_after=RETRY_AFTER)  # fmt: skip
    commit = GroupCommit(sink, settings, clock=clock)
    await commit.start()
    ingest = Ingest(FieldMapper(MappingRules()), MetricRules(), Estimation(), commit,
                    clock=fixed_clock,
                    limits=LimitsConfig(max_items=max_items).settings())  # fmt: skip
    return Pipeline(sink, clock, commit, ingest)


def _work(key: str) -> Work:
    return Work(reports=[UsageReport(model="m", source=Source.SPAN, dedup_key=key, received_at=1)])


def traces(*spans: tuple[int, int | None]) -> tpb.ExportTraceServiceRequest:
    """One span per (span id, input tokens); ``None`` tokens: an unreadable count (a reject)."""
    request = tpb.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span_id, tokens in spans:
        span = scope.spans.add(trace_id=b"\x01" * 16, span_id=span_id.to_bytes(8, "big"),
                               name="chat", start_time_unix_nano=1_700_000_000 * 10**9,
                               end_time_unix_nano=1_700_000_001 * 10**9)  # fmt: skip
        span.attributes.add(key="gen_ai.request.model").value.string_value = "qwen3"
        value = span.attributes.add(key="gen_ai.usage.input_tokens").value
        if tokens is None:
            value.string_value = "many"
        else:
            value.int_value = tokens
    return request


def span_key(span_id: int) -> str:
    return f"{'01' * 16}/{span_id:016x}"
