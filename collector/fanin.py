"""Worker -> supervisor: each worker's ``Committed`` carried over a process queue.

With ``serve --workers N`` every worker commits on its own, but re-export must show one set of
counters (per-worker registries behind one port seem to reset on every scrape). So each
worker forwards what it committed, and the supervisor calls its own ``CommitListener``s, the
only ones that re-export. A report travels as a flat tuple of its fields (enums as their
values): cheap to pickle, rebuilt as an equal ``UsageReport`` on the other side.

Messages on the queue (plain tuples):
- ``("ready", worker, grpc_port, http_port)`` once the worker's receivers listen;
- ``("committed", worker, rows, duplicates, rejects, seconds)`` after each commit;
- ``("stopped", worker)`` after the worker's graceful shutdown, its last message.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, Protocol

from collector.pipeline import Committed
from collector.report import Operation, Source, UsageReport

FIELDS = tuple(f.name for f in dataclasses.fields(UsageReport))
_SOURCE = FIELDS.index("source")
_OPERATION = FIELDS.index("operation")
_values: Callable[[UsageReport], tuple[Any, ...]] = operator.attrgetter(*FIELDS)


class Outbox(Protocol):
    def put(self, message: tuple[Any, ...]) -> None: ...


def encode(report: UsageReport) -> tuple[Any, ...]:
    values = list(_values(report))
    values[_SOURCE] = report.source.value
    values[_OPERATION] = None if report.operation is None else report.operation.value
    return tuple(values)


def decode(values: tuple[Any, ...]) -> UsageReport:
    fields = dict(zip(FIELDS, values, strict=True))
    fields["source"] = Source(fields["source"])
    if fields["operation"] is not None:
        fields["operation"] = Operation(fields["operation"])
    return UsageReport(**fields)


class Forwarder:
    """The worker's ``CommitListener``: puts each commit on the supervisor's queue."""

    def __init__(self, outbox: Outbox, worker: int) -> None:
        self._outbox = outbox
        self._worker = worker

    def __call__(self, committed: Committed) -> None:
        rows = [encode(r) for r in committed.reports]
        self._outbox.put(("committed", self._worker, rows, committed.duplicates,
                          committed.rejects, committed.seconds))  # fmt: skip


def committed_from(message: tuple[Any, ...]) -> tuple[int, Committed]:
    """(worker, Committed) of a ``committed`` message."""
    _kind, worker, rows, duplicates, rejects, seconds = message
    return worker, Committed([decode(r) for r in rows], duplicates, rejects, seconds)
