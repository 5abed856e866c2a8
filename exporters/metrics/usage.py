"""Committed usage -> OpenTelemetry counters: a ``CommitListener``.

Fed only by what a transaction committed (new reports; duplicates never reach it), so the
counters agree with the SQL rollups: ``input_tokens`` and ``output_tokens`` are the stored
``prompt_token_count`` and ``completion_token_count`` (token resolution applied),
``cached_input_tokens`` is ``prompt_cached_token_count`` and ``requests`` is ``request_count``.

Recording is a function of the ``Committed`` contents and the label caps only (no clock, no
database), so several processes can each feed their own copy. It only adds to a dict of totals
keyed by the label tuple (prometheus_client's way); the counters are observable and read those
totals when a reader collects, so the commit path pays a few dict updates per report instead
of an SDK ``add`` per series and counter.

Cost: ``cost`` is the sum of the committed reports' ``cost`` (the SQL ``model_usages.cost``),
kept as exact integer pico-units and shown in the currency (``currency`` label, plus the same
labels and caps as the token counters); ``unpriced_requests`` is ``unpriced_request_count``.
A series appears in either only once it has a priced, respectively unpriced, request.

Labels are chosen by name (``LABELS``); each label keeps at most ``limit`` distinct values and
maps any further value to the overflow value, so a flood of user ids cannot grow the series
without bound. Example with ``user`` capped at 2: users a, b, c -> series a, b, __overflow__;
the totals stay exact, only the attribution of c is folded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from collector.aggregation.pricing.rates import as_decimal
from collector.aggregation.rules import resolve_tokens
from collector.model import Committed, UsageReport
from exporters.metrics import names

OVERFLOW = "__overflow__"


def _provider(report: UsageReport) -> str:
    if report.provider_name:
        return report.provider_name
    if report.provider_type:
        return report.provider_type
    return "" if report.provider_id is None else str(report.provider_id)


def _text(value: object) -> str:
    return "" if value is None else str(value)


LABELS: Mapping[str, Callable[[UsageReport], str]] = {
    "model": lambda r: r.model,
    "provider": _provider,
    "operation": lambda r: r.operation.value if r.operation is not None else "",
    "user": lambda r: _text(r.user_id),
    "api_key": lambda r: _text(r.access_key),
    "estimated": lambda r: "true" if r.estimated else "false",
    "organization": lambda r: _text(r.organization_id),
    "model_route": lambda r: _text(r.model_route_id),
    "cluster": lambda r: _text(r.cluster_id),
    "source": lambda r: r.source.value,
}
"""Label name -> its value for a report. Missing values are the empty string."""

DEFAULT_LABELS = ("model", "provider", "operation", "user", "api_key", "estimated")


class LabelCap:
    """At most ``limit`` distinct values of one label; later new values become ``overflow``."""

    def __init__(self, limit: int, overflow: str = OVERFLOW) -> None:
        self._limit = limit
        self._overflow = overflow
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return self._overflow
        self._seen.add(value)
        return value


Key = tuple[str, ...]


class UsageMetrics:
    """``(Committed) -> None``: adds each committed report to the usage counters."""

    def __init__(
        self,
        meter: Meter,
        labels: Sequence[str] = DEFAULT_LABELS,
        limits: Mapping[str, int] | None = None,
        default_limit: int = 1000,
        overflow: str = OVERFLOW,
        currency: str = "USD",
    ) -> None:
        unknown = set(labels) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown metric labels {sorted(unknown)}; use {sorted(LABELS)}")
        self._labels = tuple(labels)
        limits = limits or {}
        self._columns = [
            (LabelCap(limits.get(name, default_limit), overflow), LABELS[name]) for name in labels
        ]
        self._totals: dict[Key, list[int]] = {}
        self._costs: dict[Key, list[int | None]] = {}
        """Per key: cost in pico-units and unpriced requests, None until one was seen."""
        self._attributes: dict[Key, dict[str, str]] = {}
        self._currency = currency
        self._lock = threading.Lock()
        """Commits update the totals on the event loop; readers collect from their threads."""
        for column, (name, unit, description) in enumerate((
            (names.INPUT_TOKENS, "{token}", "Input tokens, cached included"),
            (names.OUTPUT_TOKENS, "{token}", "Output tokens"),
            (names.CACHED_INPUT_TOKENS, "{token}", "Input tokens read from a cache"),
            (names.REQUESTS, "{request}", "Requests"),
        )):  # fmt: skip
            meter.create_observable_counter(name, [self._observer(column)], unit, description)
        meter.create_observable_counter(names.COST, [self._cost_observer(0)], f"{{{currency}}}",
                                        "Cost of the priced requests")  # fmt: skip
        meter.create_observable_counter(names.UNPRICED_REQUESTS, [self._cost_observer(1)],
                                        "{request}", "Requests with no price")  # fmt: skip

    def __call__(self, committed: Committed) -> None:
        costs = committed.costs
        with self._lock:
            for n, report in enumerate(committed.reports):
                key = tuple(cap(value(report)) for cap, value in self._columns)
                row = self._totals.get(key)
                if row is None:
                    row = self._totals[key] = [0, 0, 0, 0]
                    self._attributes[key] = dict(zip(self._labels, key, strict=True))
                prompt, completion = resolve_tokens(report)
                row[0] += prompt
                row[1] += completion
                row[2] += report.input_cached_token
                row[3] += report.request_count
                if costs:
                    self._add_cost(key, costs[n], report.request_count)

    def _add_cost(self, key: Key, cost: int | None, requests: int) -> None:
        money = self._costs.get(key)
        if money is None:
            money = self._costs[key] = [None, None]
        if cost is None:
            money[1] = (money[1] or 0) + requests
        else:
            money[0] = (money[0] or 0) + cost

    def _observer(self, column: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                rows = [(row[column], self._attributes[key]) for key, row in self._totals.items()]
            return [Observation(value, attributes) for value, attributes in rows]

        return observe

    def _cost_observer(self, column: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                rows = [(money[column], self._attributes[key])
                        for key, money in self._costs.items() if money[column] is not None]
            out = []
            for value, attributes in rows:
                assert value is not None
                if column == 0:
                    out.append(Observation(float(as_decimal(value)),
                                           {"currency": self._currency, **attributes}))
                else:
                    out.append(Observation(value, attributes))
            return out

        return observe
