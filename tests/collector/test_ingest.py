"""The Export core in process: one request's items mapped in one loop, the loop yielding."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

from collector.aggregation.rules import Estimation
from collector.commit import GroupCommit
from collector.config import CommitConfig
from collector.decode.items import SpanItem
from collector.ingest import YIELD_EVERY, Ingest
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.points import MetricRules
from collector.model import Encoding, Signal, digest
from tests.fakes import ManualClock, RecordingSink, fixed_clock


async def _ingest(sink: RecordingSink) -> tuple[Ingest, GroupCommit]:
    commit = GroupCommit(sink, CommitConfig().settings("sqlite"), clock=ManualClock())
    await commit.start()
    mapper = FieldMapper(MappingRules())
    return Ingest(mapper, MetricRules(), Estimation(), commit, clock=fixed_clock), commit


async def test_a_large_request_lets_other_tasks_run_while_it_is_mapped() -> None:
    sink = RecordingSink()
    ingest, commit = await _ingest(sink)
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
    assert (mapped.taken, len(sink.batches[0])) == (count, count)
    # The other task ran between chunks of the request, not only before and after it.
    first, last = events.index("span"), len(events) - events[::-1].index("span") - 1
    assert events[first:last].count("other") == count // YIELD_EVERY - 1


async def test_every_signal_answers_its_counts_in_its_encoding() -> None:
    sink = RecordingSink()
    ingest, commit = await _ingest(sink)
    pushed = {"model": "m", "input_token": 3, "request_id": "r1"}
    gateway = json.dumps([pushed, {"model": "", "input_token": 1}]).encode()
    answer = await ingest.export(Signal.GATEWAY, Encoding.JSON, gateway)
    assert json.loads(answer) == {"accepted": 1, "rejected": 1, "ignored": 0,
                                  "message": "model: missing"}  # fmt: skip
    span = {"traceId": "01" * 16, "spanId": "02" * 8, "name": "chat", "attributes": [
        {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "4"}}]}  # fmt: skip
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    answer = await ingest.export(Signal.TRACES, Encoding.JSON, json.dumps(doc).encode())
    assert json.loads(answer) == {}  # nothing rejected: no partialSuccess
    await commit.shutdown()
    assert sink.batches == [["gw:" + digest(pushed)], [f"{'01' * 16}/{'02' * 8}"]]
    assert sink.rejects == 1
