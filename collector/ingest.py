"""The one ingest core every transport calls: decoded items in, committed result out.

gRPC and HTTP receivers decode their wire format into neutral items, call one of the methods
here, and encode the ``IngestResult`` (or the error) in their own way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar

from collector.aggregation.producers import producer_identity, producer_key
from collector.aggregation.rules import Estimation, estimate
from collector.commit import GroupCommit, ProducerItems, Work
from collector.decode.items import PointItem, SpanItem, Unread
from collector.decode.json import Malformed
from collector.errors import PermanentError
from collector.mapping.catalog import Catalog
from collector.mapping.fields import FieldMapper
from collector.mapping.gateway import gateway_report
from collector.mapping.limits import DEFAULT_LIMITS, Limits, bounded, check_attributes, check_report
from collector.mapping.points import MetricRules, PointSample, point_sample
from collector.mapping.spans import repeats_children, span_report
from collector.mapping.values import BadValue
from collector.model import Ignored, Reject, Source, UsageReport

MAX_REJECT_TEXT = 2000
YIELD_EVERY = 200
"""Items mapped between two returns to the event loop: a 100k-item request must not hold the
loop for seconds while commits, health checks and other requests wait (with 1,000-span
requests on PostgreSQL this also cut the ack p99 from ~360-420 ms to ~320-330 ms)."""
MAX_MESSAGES = 5
T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    """Per request: ``accepted + rejected + ignored`` = items received (spans, data points,
    gateway objects, log records)."""

    accepted: int
    rejected: int
    message: str
    """Readable reasons of the first rejects (OTLP ``partial_success.error_message``)."""
    ignored: int = 0
    """Items neither counted nor rejected, each for an ``Ignored`` reason."""


AUTO: Literal["auto"] = "auto"


@dataclasses.dataclass(frozen=True)
class Sources:
    """Which inputs count. ``genai_metrics``: ``"auto"`` applies the producer rule
    (``collector.aggregation.producers``: a producer's GenAI metric points count until its
    usage spans arrive, then its spans), ``True`` counts every GenAI metric point (spans too,
    unless ``spans`` is off), ``False`` none. Custom counters always count."""

    spans: bool = True
    genai_metrics: bool | Literal["auto"] = AUTO
    gateway: bool = True


IgnoredListener = Callable[[Mapping[str, int]], None]
"""Told the reasons of the items each request ignored, once the request is answered."""


class _ByProducer:
    """A request's items under the producer rule, one ``ProducerItems`` per producer. Items
    of one resource come in a row (decoders share the resource's attributes), so the
    identity is read once per resource."""

    def __init__(self, work: Work) -> None:
        self._work = work
        self._by_key: dict[str, ProducerItems] = {}
        self._resource: object = None
        self._last: ProducerItems | None = None

    def of(self, resource: Mapping[str, Any]) -> ProducerItems:
        if resource is self._resource and self._last is not None:
            return self._last
        identity = producer_identity(resource)
        key = producer_key(identity)
        items = self._by_key.get(key)
        if items is None:
            items = self._by_key[key] = ProducerItems(key, identity, self._work.ignored)
            self._work.producers.append(items)
        self._resource, self._last = resource, items
        return items


class Ingest:
    def __init__(
        self,
        mapper: FieldMapper,
        metric_rules: MetricRules,
        estimation: Estimation,
        commit: GroupCommit,
        sources: Sources = Sources(),
        clock: Callable[[], float] = time.time,
        catalog: Catalog | None = None,
        limits: Limits = DEFAULT_LIMITS,
        on_ignored: IgnoredListener | None = None,
    ) -> None:
        self.mapper = mapper
        self.metric_rules = metric_rules
        self.metric_names = metric_rules.names
        self._estimation = estimation
        self._commit = commit
        self._sources = sources
        self._ruled = sources.genai_metrics == AUTO
        self._clock = clock
        self._catalog = catalog
        self._limits = limits
        self._on_ignored = on_ignored

    def admit(self) -> None:
        """Refuse now (``RetryableError``) what the commit would refuse after decoding."""
        self._commit.admit()

    async def spans(self, items: Iterable[SpanItem]) -> IngestResult:
        now = int(self._clock() * 1000)
        work = Work()
        limits = self._limits
        producers = _ByProducer(work)
        taken = 0
        for seen, span in enumerate(_structural(items, limits.max_items), 1):
            if not seen % YIELD_EVERY:
                await asyncio.sleep(0)
            if not self._sources.spans:
                work.ignored[Ignored.SPANS_OFF] += 1
                continue
            try:
                check_attributes(span.attrs, span.resource, limits)
                report = self._catalogued(span_report(span, self.mapper, now))
                if report is not None:
                    report = check_report(estimate(report, self._estimation), limits)
            except BadValue as exc:
                work.rejects.append(_reject(Source.SPAN, exc, span, now))
                continue
            if report is None:
                children = repeats_children(span, self.mapper)
                work.ignored[Ignored.REPEATS_CHILDREN if children else Ignored.NOT_USAGE_SPAN] += 1
                continue
            taken += 1
            if self._ruled:
                ruled = producers.of(span.resource)
                ruled.spans.append(report)
                ruled.ends.append(span.end_ns)
            else:
                work.reports.append(report)
        return await self._submit(work, taken)

    async def points(self, items: Iterable[PointItem | Unread]) -> IngestResult:
        now = int(self._clock() * 1000)
        work = Work()
        limits = self._limits
        producers = _ByProducer(work)
        taken = 0
        for seen, point in enumerate(_structural(items, limits.max_items), 1):
            if not seen % YIELD_EVERY:
                await asyncio.sleep(0)
            if isinstance(point, Unread):
                work.ignored[Ignored.UNUSED_METRIC] += point.count
                continue
            custom = point.metric in self.metric_rules.custom
            if not custom and self._sources.genai_metrics is False:
                # Not read at all: an ignored metric cannot fill the reject table.
                work.ignored[Ignored.GENAI_METRICS_OFF] += 1
                continue
            mapped = self._point(point, work, now)
            if mapped is None:
                continue
            sample, report = mapped
            taken += 1
            if self._ruled and not custom:
                ruled = producers.of(point.resource)
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
        return await self._submit(work, taken)

    def _point(
        self, point: PointItem, work: Work, now: int
    ) -> tuple[PointSample, UsageReport | None] | None:
        """The point's sample and, for a delta point with usage, its checked report; None
        when the point was ignored or rejected (noted in ``work``)."""
        try:
            check_attributes(point.attrs, point.resource, self._limits)
            sample = point_sample(point, self.metric_rules, self.mapper, now)
            if isinstance(sample, Ignored):
                work.ignored[sample] += 1
                return None
            if self._catalog is not None:
                sample = dataclasses.replace(sample, template=self._catalog.apply(sample.template))
            report = None
            if not sample.cumulative and (sample.value or sample.count):
                report = check_report(sample.report(sample.value, sample.count), self._limits)
        except BadValue as exc:
            work.rejects.append(_reject(Source.METRIC, exc, point, now))
            return None
        return sample, report

    async def gateway(self, items: list[Any]) -> IngestResult:
        """GPUStack pushes: every object is one request (zero tokens included)."""
        now = int(self._clock() * 1000)
        work = Work()
        limits = self._limits
        if not all(isinstance(item, dict) for item in items):
            raise PermanentError("expected a JSON object or a list of objects")
        taken = 0
        for seen, item in enumerate(bounded(items, limits.max_items), 1):
            if not seen % YIELD_EVERY:
                await asyncio.sleep(0)
            if not self._sources.gateway:
                work.ignored[Ignored.GATEWAY_OFF] += 1
                continue
            try:
                check_attributes(item, {}, limits)
                report = self._named(gateway_report(item, self.mapper, now))
                report = check_report(estimate(report, self._estimation), limits)
            except BadValue as exc:
                work.rejects.append(_reject(Source.GATEWAY, exc, item, now))
                continue
            taken += 1
            work.reports.append(report)
        return await self._submit(work, taken)

    async def logs(self, records: Iterable[Unread]) -> IngestResult:
        """OTLP logs: answered as OTLP expects, every record ignored (no usage is read from
        logs), so direct exporters (OpenLIT sends logs too) do not log errors."""
        work = Work()
        for part in _structural(records, self._limits.max_items):
            work.ignored[Ignored.LOG_RECORD] += part.count
        return await self._submit(work, 0)

    def use_catalog(self, catalog: Catalog) -> None:
        """Check and name reports with ``catalog`` from now on (a reloaded file)."""
        self._catalog = catalog

    def _catalogued(self, report: UsageReport | None) -> UsageReport | None:
        return None if report is None else self._named(report)

    def _named(self, report: UsageReport) -> UsageReport:
        """The catalog's check and name snapshot, when there is a catalog."""
        return report if self._catalog is None else self._catalog.apply(report)

    async def _submit(self, work: Work, taken: int) -> IngestResult:
        """Commit, then answer: ``taken`` items were accepted at ingest, of which the
        producer rule may have ignored some in the transaction (added to ``work.ignored``)."""
        before = sum(work.ignored.values())
        await self._commit.submit(work)
        ignored = sum(work.ignored.values())
        if ignored:
            if self._on_ignored is not None:
                self._on_ignored(work.ignored)
            if logger.isEnabledFor(logging.DEBUG):
                why = ", ".join(f"{n} {reason}" for reason, n in sorted(work.ignored.items()))
                logger.debug("ignored %d items of a request: %s", ignored, why)
        reasons = [r.reason for r in work.rejects[:MAX_MESSAGES]]
        more = len(work.rejects) - len(reasons)
        message = "; ".join(reasons) + (f"; and {more} more" if more > 0 else "")
        accepted = taken - (ignored - before)
        return IngestResult(accepted, len(work.rejects), message, ignored)


def _structural(items: Iterable[T], limit: int) -> Iterator[T]:
    """Items of a request; a structural error in the body, or more than ``limit`` items,
    fails the whole request."""
    try:
        yield from bounded(items, limit)
    except Malformed as exc:
        raise PermanentError(f"malformed OTLP/JSON: {exc}") from None


def _reject(source: Source, exc: BadValue, item: object, now: int) -> Reject:
    text = repr(item)
    if len(text) > MAX_REJECT_TEXT:
        text = text[: MAX_REJECT_TEXT - 3] + "..."
    return Reject(source, _storable(str(exc)), text, now)


def _storable(text: str) -> str:
    """A reason that any database and any encoder takes: attribute keys quoted in it may
    hold lone surrogates or NUL (JSON allows both), which UTF-8 and PostgreSQL refuse."""
    if len(text) > MAX_REJECT_TEXT:
        text = text[: MAX_REJECT_TEXT - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
