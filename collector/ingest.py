"""The one Export every transport calls: (signal, encoding, bytes) -> work -> commit -> answer.

A transport reads the request body and calls ``Ingest.export``; it gets back the response body
in the request's encoding, or a ``BridgeError`` whose kind decides the status it answers
(``collector.errors.STATUS``). In between, always in this order:

1. admit: refused at once (``RetryableError``) when the commit would refuse the request, so a
   refused request costs no decoding work;
2. decode (``collector.decode.wire``): bytes -> neutral items;
3. map: each item -> a report, a cumulative sample, a reject or nothing; a bad item is
   rejected alone (``BadValue``), more than ``limits.max_items`` refuse the whole request;
4. commit: return only once the work is committed (``Commit.submit``); the source rule
   (``collector.aggregation.sources``) decides there which usage spans and GenAI metric
   points count;
5. answer: accepted, rejected and ignored counts (every item received is one of the three),
   and the first reasons; the ignored reasons go to self-telemetry and the DEBUG log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from collector.aggregation.horizon import Horizon
from collector.aggregation.rules import Estimation, estimate, usage_instant_ms
from collector.aggregation.sources import ProducerIndex
from collector.config import LimitsConfig, SourcesConfig
from collector.decode import wire
from collector.decode.items import Body, PointItem, SpanItem, Unread
from collector.decode.reencode import item_json
from collector.errors import Kind, PermanentError
from collector.inflight import Held, InFlight
from collector.mapping.catalog import ReportCatalog
from collector.mapping.fields import FieldMapper
from collector.mapping.gateway import gateway_report
from collector.mapping.limits import Limits, check_attributes, check_report
from collector.mapping.points import MetricRules, point_sample
from collector.mapping.spans import span_outcome
from collector.mapping.values import BadValue
from collector.model import (
    Commit,
    Encoding,
    Ignored,
    IngestResult,
    PointSample,
    Reject,
    Signal,
    Source,
    UsageReport,
    Work,
)

MAX_REJECT_TEXT = 2000
YIELD_EVERY = 200
"""Items mapped between two returns to the event loop: a 100k-item request must not hold the
loop for seconds while commits, health checks and other requests wait (with 1,000-span
requests on PostgreSQL this also cut the ack p99 from ~360-420 ms to ~320-330 ms)."""
MAX_MESSAGES = 5
OFF_LOOP_BYTES = 1 << 20
"""Bodies longer than this are checked and parsed in a worker thread: the structure walk of
a 64 MiB bomb takes about a second, during which the loop must keep answering (it gets the
interpreter at least every 5 ms, the switch interval). Shorter bodies parse in well under
10 ms, where the thread hand-off would cost more than it saves."""
DEFAULT_SOURCES = SourcesConfig()
DEFAULT_LIMITS = LimitsConfig().settings()
AUTO: Literal["auto"] = "auto"
logger = logging.getLogger(__name__)

MapOne = Callable[[Any, int, Work], None]
"""Map one decoded item into ``work`` (received at ``now``, UnixMilli): a report, a sample,
an item under the source rule (each adds to ``work.taken``) or an ignored reason; raises
``BadValue``."""
IgnoredListener = Callable[[Mapping[str, int]], None]
"""Told the reasons of the items each request ignored, once the request is answered."""


class Ingest:
    def __init__(
        self,
        mapper: FieldMapper,
        metric_rules: MetricRules,
        estimation: Estimation,
        commit: Commit,
        sources: SourcesConfig = DEFAULT_SOURCES,
        clock: Callable[[], float] = time.time,
        catalog: ReportCatalog | None = None,
        limits: Limits = DEFAULT_LIMITS,
        on_ignored: IgnoredListener | None = None,
        inflight: InFlight | None = None,
        horizon: Horizon | None = None,
    ) -> None:
        """``sources``: which inputs count (custom counters always do); ``limits``: the bounds
        of one request's content; ``horizon``: reports dated before the retention horizon
        are rejected (``older than retention``) here, so the sender sees it (the sink checks
        again at commit)."""
        self.mapper = mapper
        self._horizon = horizon
        self._earliest = (0, -1)
        """(now, the horizon's UnixMilli at now): computed once per request's ``now``."""
        self.metric_rules = metric_rules
        self.metric_names = metric_rules.names
        self._estimation = estimation
        self._commit = commit
        self._sources = sources
        self._clock = clock
        self._catalog = catalog
        self._limits = limits
        self._ruled = sources.genai_metrics == AUTO
        self._on_ignored = on_ignored
        self.inflight = inflight if inflight is not None else InFlight(2**62, 2**62)
        """The memory budget of requests in flight, shared by the transports."""
        self._map_one: dict[Signal, tuple[Source, MapOne]] = {
            Signal.TRACES: (Source.SPAN, self._span),
            Signal.METRICS: (Source.METRIC, self._point),
            Signal.LOGS: (Source.METRIC, self._log),
            Signal.GATEWAY: (Source.GATEWAY, self._gateway),
        }
        self._producers: dict[int, ProducerIndex] = {}
        """Per request being mapped (by ``id`` of its live ``Work``): its producers."""

    @property
    def limits(self) -> Limits:
        """The bounds of one request's content."""
        return self._limits

    async def export(
        self, signal: Signal, encoding: Encoding, body: Body, held: Held | None = None
    ) -> bytes:
        """One request, start to answer: the response body in ``encoding``. Raises
        ``PermanentError`` (bad request) or ``RetryableError`` (not taken now). ``held`` is
        the request's share of the in-flight budget (``collector.inflight``): the most
        elements the body can decode into are taken from it before decoding."""
        if signal is not Signal.LOGS:  # logs commit nothing: taken even while refusing work
            self._commit.admit()
        max_items = self._limits.max_items
        if held is not None:
            held.take(items=min(len(body) // 2, max_items))
        if len(body) > OFF_LOOP_BYTES:
            items = await asyncio.to_thread(self._decode, signal, encoding, body, max_items)
        else:
            items = self._decode(signal, encoding, body, max_items)
        work = await self.map(signal, items)
        taken = work.taken
        before = sum(work.ignored.values())
        await self._commit.submit(work)
        ignored = sum(work.ignored.values())
        if ignored:
            self._tell_ignored(work)
        # The source rule ignored (ignored - before) of the items taken at ingest.
        return wire.answer(signal, encoding, _result(work, taken - (ignored - before), ignored))

    def _decode(
        self, signal: Signal, encoding: Encoding, body: Body, max_items: int
    ) -> Iterable[Any]:
        if signal is Signal.TRACES:
            return wire.spans(encoding, body, self.mapper.wanted, max_items)
        if signal is Signal.METRICS:
            return wire.points(encoding, body, self.metric_names, max_items)
        if signal is Signal.LOGS:
            return wire.logs(encoding, body, max_items)
        return wire.gateway(body, max_items)

    async def map(self, signal: Signal, items: Iterable[Any]) -> Work:
        """The work of one request's decoded ``items``: the one loop of every signal."""
        source, one = self._map_one[signal]
        now = int(self._clock() * 1000)
        work = Work()
        self._producers[id(work)] = ProducerIndex(work)
        limit = self._limits.max_items
        try:
            for seen, item in enumerate(items, 1):
                if not seen % YIELD_EVERY:
                    await asyncio.sleep(0)
                if seen > limit:
                    raise PermanentError(
                        f"more than {limit} items in one request", Kind.TOO_LARGE
                    )
                try:
                    one(item, now, work)
                except BadValue as exc:
                    work.rejects.append(_reject(source, exc, item, now))
        finally:
            del self._producers[id(work)]
        return work

    def use_catalog(self, catalog: ReportCatalog) -> None:
        """Check and name reports with ``catalog`` from now on (a reloaded file, a fresh read
        of GPUStack's tables)."""
        self._catalog = catalog

    def _span(self, span: SpanItem, now: int, work: Work) -> None:
        if not self._sources.spans:
            work.ignored[Ignored.SPANS_OFF] += 1
            return
        limits = self._limits
        check_attributes(span.attrs, span.resource, limits)
        outcome = span_outcome(span, self.mapper, now)
        if not isinstance(outcome, UsageReport):
            work.ignored[outcome] += 1
            return
        report = check_report(estimate(self._named(outcome), self._estimation), limits)
        self._check_age(usage_instant_ms(report), now)
        work.taken += 1
        if self._ruled:
            ruled = self._producers[id(work)].of(span.resource)
            ruled.spans.append(report)
            ruled.ends.append(span.end_ns)
        else:
            work.reports.append(report)

    def _point(self, point: PointItem | Unread, now: int, work: Work) -> None:
        if isinstance(point, Unread):
            work.ignored[Ignored.UNUSED_METRIC] += point.count
            return
        custom = point.metric in self.metric_rules.custom
        if not custom and self._sources.genai_metrics is False:
            # Not read at all: an ignored metric cannot fill the reject table.
            work.ignored[Ignored.GENAI_METRICS_OFF] += 1
            return
        mapped = self._sample(point, now)
        if isinstance(mapped, Ignored):
            work.ignored[mapped] += 1
            return
        sample, report = mapped
        work.taken += 1
        if self._ruled and not custom:
            ruled = self._producers[id(work)].of(point.resource)
            if sample.cumulative:
                ruled.points.append(sample)
            else:
                ruled.deltas.append((sample.time_ns, report))
        elif sample.cumulative:
            # Bounded by the stream's 64-bit state; deltas are checked in no further way.
            work.samples.append(sample)
        elif report is not None:
            work.reports.append(report)
        # A zero delta point is accepted and adds nothing.

    def _sample(
        self, point: PointItem, now: int
    ) -> tuple[PointSample, UsageReport | None] | Ignored:
        """The point's sample and, for a delta point with usage, its checked report; or why
        the point carries no usage. Raises ``BadValue``."""
        check_attributes(point.attrs, point.resource, self._limits)
        sample = point_sample(point, self.metric_rules, self.mapper, now)
        if isinstance(sample, Ignored):
            return sample
        if self._catalog is not None:
            sample = dataclasses.replace(sample, template=self._catalog.apply(sample.template))
        self._check_age(sample.time_ns // 1_000_000, now)
        report = None
        if sample.cumulative:
            # Counts bounded by the stream's 64-bit state; the timestamps are checked here.
            check_report(sample.template, self._limits)
        elif sample.value or sample.count:
            report = check_report(sample.report(sample.value, sample.count), self._limits)
        return sample, report

    def _log(self, records: Unread, _now: int, work: Work) -> None:
        """OTLP logs: no usage is read from them; answered so direct exporters (OpenLIT
        sends logs too) do not log errors, every record counted as ignored."""
        work.ignored[Ignored.LOG_RECORD] += records.count

    def _gateway(self, item: dict[str, Any], now: int, work: Work) -> None:
        """One GPUStack push: one request, zero tokens included."""
        if not self._sources.gateway:
            work.ignored[Ignored.GATEWAY_OFF] += 1
            return
        limits = self._limits
        check_attributes(item, {}, limits)
        report = self._named(gateway_report(item, self.mapper, now))
        report = check_report(estimate(report, self._estimation), limits)
        self._check_age(usage_instant_ms(report), now)
        work.reports.append(report)
        work.taken += 1

    def _check_age(self, instant_ms: int, now: int) -> None:
        """``BadValue`` when ``instant_ms`` is before the retention horizon at ``now``."""
        horizon = self._horizon
        if horizon is None:
            return
        at, earliest = self._earliest
        if at != now:
            earliest = horizon.earliest_ms(now)
            self._earliest = (now, earliest)
        if instant_ms < earliest:
            raise BadValue(horizon.reason(instant_ms, now))

    def _named(self, report: UsageReport) -> UsageReport:
        """The catalog's check and name snapshot, when there is a catalog."""
        return report if self._catalog is None else self._catalog.apply(report)

    def _tell_ignored(self, work: Work) -> None:
        if self._on_ignored is not None:
            self._on_ignored(work.ignored)
        if logger.isEnabledFor(logging.DEBUG):
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(work.ignored.items()))
            logger.debug("ignored %d items of a request: %s", sum(work.ignored.values()), why)


def _result(work: Work, accepted: int, ignored: int) -> IngestResult:
    reasons = [r.reason for r in work.rejects[:MAX_MESSAGES]]
    more = len(work.rejects) - len(reasons)
    message = "; ".join(reasons) + (f"; and {more} more" if more > 0 else "")
    return IngestResult(accepted, len(work.rejects), message, ignored)


def _reject(source: Source, exc: BadValue, item: object, now: int) -> Reject:
    """The item kept as received (JSON: ``collector.decode.reencode``), for replay."""
    return Reject(source, _storable(str(exc)), item_json(item), now)


def _storable(text: str) -> str:
    """A reason that any database and any encoder takes: attribute keys quoted in it may
    hold lone surrogates or NUL (JSON allows both), which UTF-8 and PostgreSQL refuse."""
    if len(text) > MAX_REJECT_TEXT:
        text = text[: MAX_REJECT_TEXT - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
