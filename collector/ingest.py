"""The one Export every transport calls: (signal, encoding, bytes) -> work -> commit -> answer.

A transport reads the request body and calls ``Ingest.export``; it gets back the response body
in the request's encoding, or a ``BridgeError`` whose kind decides the status it answers
(``collector.errors.STATUS``). In between, always in this order:

1. admit: refused at once (``RetryableError``) when the commit would refuse the request, so a
   refused request costs no decoding work;
2. decode (``collector.decode.wire``): bytes -> neutral items;
3. map: each item -> a report, a cumulative sample, a reject or nothing; a bad item is
   rejected alone (``BadValue``), more than ``limits.max_items`` refuse the whole request;
4. commit: return only once the work is committed (``Commit.submit``);
5. answer: accepted and rejected counts, and the first reasons.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

from collector.aggregation.horizon import Horizon
from collector.aggregation.rules import Estimation, estimate, usage_instant_ms
from collector.config import LimitsConfig, SourcesConfig
from collector.decode import wire
from collector.decode.items import PointItem, SpanItem
from collector.errors import Kind, PermanentError
from collector.mapping.catalog import Catalog
from collector.mapping.fields import FieldMapper
from collector.mapping.gateway import gateway_report
from collector.mapping.limits import Limits, check_attributes, check_report
from collector.mapping.points import MetricRules, point_sample
from collector.mapping.spans import span_report
from collector.mapping.values import BadValue
from collector.model import (
    Commit,
    Encoding,
    IngestResult,
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
DEFAULT_SOURCES = SourcesConfig()
DEFAULT_LIMITS = LimitsConfig().settings()

MapOne = Callable[[Any, int, Work], None]
"""Map one decoded item into ``work`` (received at ``now``, UnixMilli); raises ``BadValue``."""


class Ingest:
    def __init__(
        self,
        mapper: FieldMapper,
        metric_rules: MetricRules,
        estimation: Estimation,
        commit: Commit,
        sources: SourcesConfig = DEFAULT_SOURCES,
        clock: Callable[[], float] = time.time,
        catalog: Catalog | None = None,
        limits: Limits = DEFAULT_LIMITS,
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
        self._map_one: dict[Signal, tuple[Source, MapOne]] = {
            Signal.TRACES: (Source.SPAN, self._span),
            Signal.METRICS: (Source.METRIC, self._point),
            Signal.GATEWAY: (Source.GATEWAY, self._gateway),
        }

    async def export(self, signal: Signal, encoding: Encoding, body: bytes) -> bytes:
        """One request, start to answer: the response body in ``encoding``. Raises
        ``PermanentError`` (bad request) or ``RetryableError`` (not taken now)."""
        self._commit.admit()
        items: Iterable[Any]
        if signal is Signal.TRACES:
            items = wire.spans(encoding, body, self.mapper.wanted)
        elif signal is Signal.METRICS:
            items = wire.points(encoding, body, self.metric_names)
        else:
            items = wire.gateway(body)
        work = await self.map(signal, items)
        await self._commit.submit(work)
        return wire.answer(signal, encoding, _result(work))

    async def map(self, signal: Signal, items: Iterable[Any]) -> Work:
        """The work of one request's decoded ``items``: the one loop of every signal."""
        source, one = self._map_one[signal]
        now = int(self._clock() * 1000)
        work = Work()
        limit = self._limits.max_items
        for seen, item in enumerate(items, 1):
            if not seen % YIELD_EVERY:
                await asyncio.sleep(0)
            if seen > limit:
                raise PermanentError(f"more than {limit} items in one request", Kind.TOO_LARGE)
            try:
                one(item, now, work)
            except BadValue as exc:
                work.rejects.append(_reject(source, exc, item, now))
        return work

    def use_catalog(self, catalog: Catalog) -> None:
        """Check and name reports with ``catalog`` from now on (a reloaded file)."""
        self._catalog = catalog

    def _span(self, span: SpanItem, now: int, work: Work) -> None:
        if not self._sources.spans:
            return
        limits = self._limits
        check_attributes(span.attrs, span.resource, limits)
        report = self._catalogued(span_report(span, self.mapper, now))
        if report is not None:
            report = check_report(estimate(report, self._estimation), limits)
            self._check_age(usage_instant_ms(report), now)
            work.reports.append(report)

    def _point(self, point: PointItem, now: int, work: Work) -> None:
        if point.metric not in self.metric_rules.custom and not self._sources.genai_metrics:
            return  # not read at all: an ignored metric cannot fill the reject table
        limits = self._limits
        check_attributes(point.attrs, point.resource, limits)
        sample = point_sample(point, self.metric_rules, self.mapper, now)
        if sample is None:
            return
        if self._catalog is not None:
            sample = dataclasses.replace(sample, template=self._catalog.apply(sample.template))
        self._check_age(sample.time_ns // 1_000_000, now)
        if sample.cumulative:
            # Bounded by the stream's 64-bit state; deltas are checked in no further way.
            work.samples.append(sample)
            return
        report = check_report(sample.report(sample.value, sample.count), limits)
        if sample.value or sample.count:
            work.reports.append(report)

    def _gateway(self, item: Any, now: int, work: Work) -> None:
        limits = self._limits
        if isinstance(item, dict):
            check_attributes(item, {}, limits)
        report = self._catalogued(gateway_report(item, self.mapper, now))
        if report is not None:
            report = check_report(estimate(report, self._estimation), limits)
            self._check_age(usage_instant_ms(report), now)
            if self._sources.gateway:
                work.reports.append(report)

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

    def _catalogued(self, report: UsageReport | None) -> UsageReport | None:
        """The catalog's check and name snapshot, when there is a catalog."""
        if report is None or self._catalog is None:
            return report
        return self._catalog.apply(report)


def _result(work: Work) -> IngestResult:
    reasons = [r.reason for r in work.rejects[:MAX_MESSAGES]]
    more = len(work.rejects) - len(reasons)
    message = "; ".join(reasons) + (f"; and {more} more" if more > 0 else "")
    return IngestResult(len(work.reports) + len(work.samples), len(work.rejects), message)


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
