"""Worker -> supervisor: each worker's ``Committed`` carried over a process queue.

With ``serve --workers N`` every worker commits on its own, but re-export must show one set of
counters (per-worker registries behind one port seem to reset on every scrape). So each
worker forwards what it committed, and the supervisor calls its own ``CommitListener``s, the
only ones that re-export. A report travels as a flat tuple of its fields (enums as their
values): cheap to pickle, rebuilt as an equal ``UsageReport`` on the other side.

Messages on the queue (plain tuples):
- ``("ready", worker, grpc_port, http_port)`` once the worker's receivers listen;
- ``("committed", worker, rows, duplicates, rejects, seconds, accepted, costs)`` after each
  commit (``costs``: pico-units per report, see ``Committed.costs``);
- ``("failed", worker)`` after a failed transaction, ``("retryable", worker, transport)`` after
  a retryable answer, ``("ignored", worker, {reason: items})`` after a request that ignored
  items, ``("pending", worker, reports)`` every second (self-telemetry);
- ``("stopped", worker)`` after the worker's graceful shutdown, its last message.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from collector.model import Committed, Operation, Source, UsageReport

FIELDS = UsageReport._fields
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
                          committed.rejects, committed.seconds, committed.accepted,
                          list(committed.costs)))  # fmt: skip


def committed_from(message: tuple[Any, ...]) -> tuple[int, Committed]:
    """(worker, Committed) of a ``committed`` message."""
    _kind, worker, rows, duplicates, rejects, seconds, accepted, costs = message
    reports = [decode(r) for r in rows]
    return worker, Committed(reports, duplicates, rejects, seconds, accepted, costs)


class RemoteTelemetry:
    """A worker's self-telemetry (a ``TelemetrySink``), sent to the supervisor's."""

    def __init__(self, outbox: Outbox, worker: int, interval: float = 1.0) -> None:
        self._outbox = outbox
        self._worker = worker
        self._interval = interval
        self._pending: Callable[[], int] = lambda: 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report_pending, daemon=True,
                                        name="tokenbridge-pending")  # fmt: skip

    def committed(self, committed: Committed) -> None:
        """Nothing to send: the ``Forwarder`` carries every commit, counted there."""

    def failed(self) -> None:
        self._outbox.put(("failed", self._worker))

    def ignored(self, reasons: Mapping[str, int]) -> None:
        self._outbox.put(("ignored", self._worker, {str(k): n for k, n in reasons.items()}))

    def retryable(self, transport: str) -> None:
        self._outbox.put(("retryable", self._worker, transport))

    def watch_pending(self, pending: Callable[[], int]) -> None:
        self._pending = pending

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._outbox.put(("pending", self._worker, 0))

    def _report_pending(self) -> None:
        while not self._stop.wait(self._interval):
            self._outbox.put(("pending", self._worker, self._pending()))
