"""Self-telemetry, in one place: what the bridge took, refused, skipped and committed.

Counted at the commit (a decorator around the SQL writer), so the numbers describe what was
acknowledged, not what was merely received:

- ``tokenbridge.reports.accepted``: reports and cumulative samples of committed requests;
- ``tokenbridge.reports.rejected``: bad items committed to the reject table;
- ``tokenbridge.reports.ignored``: items of answered requests neither counted nor rejected,
  by ``reason`` (``collector.model.Ignored``: not a usage span, counted from the producer's
  spans, unused metric, log record, ...);
- ``tokenbridge.reports.deduplicated``: reports already committed before (same dedup key);
- ``tokenbridge.reports.committed``: new reports counted in the rollups;
- ``tokenbridge.commit.duration``: seconds per committed transaction (histogram);
- ``tokenbridge.commit.pending``: reports waiting for their commit (gauge);
- ``tokenbridge.database.errors``: transactions that failed;
- ``tokenbridge.retryable_answers``: retryable answers given (HTTP 503 / gRPC UNAVAILABLE),
  by ``transport``; counted by the receivers, which are handed ``retryable``.

Every counter starts at zero so its series exists before the first event (dashboards and
alerts then see 0, not "no data"). The meter is injected, and the service hands ``retryable``
to its receivers; nothing here touches global state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from collector.model import BatchWriter, Committed, Ignored, Work

REPORTS_ACCEPTED = "tokenbridge.reports.accepted"
REPORTS_REJECTED = "tokenbridge.reports.rejected"
REPORTS_IGNORED = "tokenbridge.reports.ignored"
REPORTS_DEDUPLICATED = "tokenbridge.reports.deduplicated"
REPORTS_COMMITTED = "tokenbridge.reports.committed"
COMMIT_DURATION = "tokenbridge.commit.duration"
COMMIT_PENDING = "tokenbridge.commit.pending"
DATABASE_ERRORS = "tokenbridge.database.errors"
RETRYABLE_ANSWERS = "tokenbridge.retryable_answers"
TRANSPORTS = ("grpc", "http")
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

class TelemetrySink(Protocol):
    """Where a service reports its own events: ``SelfTelemetry`` in one process; with
    ``serve --workers``, a forwarder to the supervisor's ``SelfTelemetry``."""

    def committed(self, committed: Committed) -> None: ...

    def failed(self) -> None: ...

    def ignored(self, reasons: Mapping[str, int]) -> None: ...

    def retryable(self, transport: str) -> None: ...

    def watch_pending(self, pending: Callable[[], int]) -> None: ...

    def start(self) -> None: ...

    def shutdown(self) -> None: ...


def count_writes(inner: BatchWriter, telemetry: TelemetrySink) -> BatchWriter:
    """``inner`` with every transaction counted."""
    return _CountingWriter(inner, telemetry)


class SelfTelemetry:
    def __init__(self, meter: Meter) -> None:
        report = "{report}"
        self._accepted = meter.create_counter(
            REPORTS_ACCEPTED, report, "Reports and cumulative samples of committed requests")
        self._rejected = meter.create_counter(
            REPORTS_REJECTED, report, "Bad items kept in the reject table")
        self._ignored = meter.create_counter(
            REPORTS_IGNORED, "{item}", "Items neither counted nor rejected, by reason")
        self._deduplicated = meter.create_counter(
            REPORTS_DEDUPLICATED, report, "Reports committed before (same dedup key), skipped")
        self._committed = meter.create_counter(
            REPORTS_COMMITTED, report, "New reports counted in the rollups")
        self._errors = meter.create_counter(
            DATABASE_ERRORS, "{transaction}", "Commit transactions that failed")
        self._retryable = meter.create_counter(
            RETRYABLE_ANSWERS, "{answer}", "Retryable answers given (503 / UNAVAILABLE)")
        self._duration = meter.create_histogram(
            COMMIT_DURATION, "s", "Seconds per committed transaction",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self._pending: Callable[[], int] = lambda: 0
        meter.create_observable_gauge(
            COMMIT_PENDING, [self._observe_pending], "{report}",
            "Reports waiting for their commit",
        )  # fmt: skip
        for counter in (self._accepted, self._rejected, self._deduplicated, self._committed,
                        self._errors):  # fmt: skip
            counter.add(0)
        for transport in TRANSPORTS:
            self._retryable.add(0, {"transport": transport})
        for reason in Ignored:
            self._ignored.add(0, {"reason": reason.value})

    def watch_pending(self, pending: Callable[[], int]) -> None:
        self._pending = pending

    def retryable(self, transport: str) -> None:
        self._retryable.add(1, {"transport": transport})

    def start(self) -> None:
        """Nothing to start: the meter's reader exports."""

    def shutdown(self) -> None:
        """Nothing to stop."""

    def committed(self, committed: Committed) -> None:
        self._accepted.add(committed.accepted)
        self._rejected.add(committed.rejects)
        self._deduplicated.add(committed.duplicates)
        self._committed.add(len(committed.reports))
        self._duration.record(committed.seconds)

    def failed(self) -> None:
        self._errors.add(1)

    def ignored(self, reasons: Mapping[str, int]) -> None:
        for reason, items in reasons.items():
            if items:
                self._ignored.add(items, {"reason": str(reason)})

    def _observe_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._pending())]


class _CountingWriter:
    def __init__(self, inner: BatchWriter, telemetry: TelemetrySink) -> None:
        self._inner = inner
        self._telemetry = telemetry

    async def write(self, work: Work) -> Committed:
        try:
            committed = await self._inner.write(work)
        except Exception:
            self._telemetry.failed()
            raise
        self._telemetry.committed(committed)
        return committed

    async def ping(self) -> bool:
        return await self._inner.ping()
