"""``tokenbridge rejects replay``: count stored rejects again once their cause is fixed.

Each stored reject (kept as received, ``collector.decode.reencode``) goes through the normal
pipeline: the JSON decoder, mapping, the catalog and limits of the current configuration,
and the group commit. Its outcome:
- **counts**: committed, or skipped as committed before (the dedup key: a span's
  trace/span id, a push's request_id, a point's stream and time), so a replay run twice, or
  cut and rerun, counts each item once. The reject row is deleted.
- **still rejected**: the reason it has now. A new reason replaces the stored row (the
  pipeline stored the new one); the same reason keeps the row as it was.
- **ignored**: the item no longer counts at all (e.g. ``sources.gateway: false``); deleted.

Example: a push for user 9 rejected with ``catalog: unknown user '9'``; the operator adds
user 9 to the catalog file and runs ``tokenbridge rejects replay --reason "unknown user"``:
``replayed 1 rejects: 1 now count (1 newly committed, 0 counted before), 0 still rejected,
0 ignored``. Run again: ``replayed 0 rejects ...`` (the row is gone), and had the row stayed
(a cut run), the push would be skipped as counted before.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from collector.config import Config
from collector.decode import wire
from collector.errors import PermanentError, RetryableError
from collector.ingest import Ingest
from collector.model import Commit, Encoding, Signal
from collector.startup import EXIT_UNREACHABLE, StartupError
from exporters.sql import rejects

CONCURRENCY = 256
"""Rejects re-ingested at once: the group commit writes them in few transactions."""


@dataclass
class Outcome:
    replayed: int = 0
    counted: int = 0
    new: int = 0
    """Reports newly committed (the rest of ``counted`` were counted before)."""
    ignored: int = 0
    still: collections.Counter[str] = field(default_factory=collections.Counter)
    """Reason -> rejects still rejected for it."""

    def text(self) -> str:
        rejected = sum(self.still.values())
        lines = [f"replayed {self.replayed} rejects: {self.counted} now count ({self.new} "
                 f"newly committed, {self.counted - self.new} counted before), {rejected} "
                 f"still rejected, {self.ignored} ignored"]  # fmt: skip
        if self.still:
            lines.append("still rejected:")
            lines += [f"  {n}  {reason}" for reason, n in self.still.most_common()]
        return "\n".join(lines) + "\n"


SIGNALS = {"otlp_span": Signal.TRACES, "otlp_metric": Signal.METRICS,
           "gateway_json": Signal.GATEWAY}


async def _ingest(ingest: Ingest, commit: Commit, stored: rejects.Stored) -> tuple[int, list[str]]:
    """(accepted, reasons of what is rejected now) of one stored reject, decoded as the
    request carrying it would be, mapped and committed."""
    body = stored.item.encode()
    try:
        doc = json.loads(body)
    except ValueError:
        raise PermanentError("kept as text, not JSON (stored before rejects were JSON)") from None
    if isinstance(doc, dict) and doc and set(doc) <= {"truncated", "unencodable"}:
        raise PermanentError("not kept whole (too large), cannot be replayed")
    signal = SIGNALS[stored.source]
    items: Iterable[Any]
    if signal is Signal.TRACES:
        items = wire.spans(Encoding.JSON, body, ingest.mapper.wanted)
    elif signal is Signal.METRICS:
        items = wire.points(Encoding.JSON, body, ingest.metric_names)
    else:
        items = doc if isinstance(doc, list) else [doc]
    work = await ingest.map(signal, items)
    before = sum(work.ignored.values())
    await commit.submit(work)
    # As ``Ingest.export`` answers: the source rule may ignore some of the items taken.
    accepted = work.taken - (sum(work.ignored.values()) - before)
    return accepted, [r.reason for r in work.rejects]


async def replay_rejects(
    config: Config, start: date | None, end: date | None, reason: str | None
) -> Outcome:
    from collector.runtime.service import Service

    quiet = config.model_copy(update={
        "receivers": config.receivers.model_copy(update={"grpc_port": 0, "http_port": 0}),
        "database": config.database.model_copy(update={"migrate_on_start": False}),
        "metrics": None, "catalog": config.catalog and config.catalog.model_copy(
            update={"reload_interval": 0}),
    })  # fmt: skip
    service = Service(quiet)
    outcome = Outcome()
    done: list[int] = []
    try:
        stored = await rejects.matching(service.engine, start, end, reason)
        outcome.replayed = len(stored)
        await service.commit.start()
        try:
            for first in range(0, len(stored), CONCURRENCY):
                batch = stored[first : first + CONCURRENCY]
                results = await asyncio.gather(
                    *(_one(service.ingest, service.commit, s) for s in batch)
                )
                for row, (kind, why) in zip(batch, results, strict=True):
                    _tally(outcome, row, kind, why, done)
        finally:
            await service.commit.shutdown()
            await service.grpc.shutdown(0)
        outcome.new = service.totals.committed
        await rejects.remove(service.engine, done)
    finally:
        await service.engine.dispose()
    return outcome


async def _one(ingest: Ingest, commit: Commit, stored: rejects.Stored) -> tuple[str, str]:
    try:
        accepted, reasons = await _ingest(ingest, commit, stored)
    except PermanentError as exc:
        return "unreplayable", exc.message
    except RetryableError as exc:
        raise StartupError(f"the database stopped answering during the replay ({exc.message}); "
                           "run it again (what was counted counts once)",
                           EXIT_UNREACHABLE) from None  # fmt: skip
    if accepted:
        return "counted", ""
    if reasons:
        return "rejected", "; ".join(reasons)
    return "ignored", ""


def _tally(outcome: Outcome, row: rejects.Stored, kind: str, why: str, done: list[int]) -> None:
    if kind == "counted":
        outcome.counted += 1
    elif kind == "ignored":
        outcome.ignored += 1
    else:
        outcome.still[why] += 1
        if kind == "unreplayable" or why == row.reason:
            return  # the same reject: its row stays as it was
    done.append(row.id)
