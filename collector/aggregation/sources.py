"""The source rule, pure: which of a producer's usage spans and GenAI metric points count.

Some instrumentations (the official OpenAI one, OpenLLMetry, OpenLIT) send a usage span *and*
``gen_ai.client.token.usage`` points for every call; others send only the metrics. Each kind
must count once. Per producer (``producer_identity``: the resource's ``service.namespace``,
``service.name`` and ``service.instance.id``), the state is one instant, the *switch*:

- until the producer's first usage span, its GenAI metric points count, and the switch stays
  at the time of the latest point counted (``metrics_until``);
- the first usage span freezes it: from then on a span counts if it ended *after* the switch
  (the calls before it were counted by the points), and a metric point counts only if it is
  *not* after the switch (a late point of the period the metrics cover, e.g. a retried
  export); later points are ignored ("counted from the producer's spans").

So usage up to the switch comes from the metrics, usage after it from the spans, whatever
order the two signals reach the bridge in. The state lives in SQL and is read and written in
the commit transaction, so restarts and replicas apply one rule. The times compared are the
producer's own (span end, point time), never the bridge's clock.

Worked example, one producer (SDK collecting every 60 s, T = collection times):

=====================  ================  ========================================  ==========
arrives                state before      decision                                  state after
=====================  ================  ========================================  ==========
points at T1           none              count (a metrics-only producer so far)    m, T1
points at T2           m, T1             count                                     m, T2
spans ending <= T2     m, T2             first spans: switch frozen at T2;         s, T2
                                         these are ignored (counted by T1, T2)
spans ending > T2      s, T2             count                                     s, T2
points at T3           s, T2             ignored: counted from the producer's      s, T2
                                         spans (a cumulative point still moves its
                                         stream, so nothing is counted twice later)
=====================  ================  ========================================  ==========

A producer whose spans arrive first switches at "never" (-1): all its spans count and all
its GenAI points are ignored. A metrics-only producer never switches.

The one inexact edge: a call whose metric is recorded on one side of a collection instant
and whose span ends on the other (microseconds apart), *on the last point before the
switch*: counted twice when the metric comes first (the official OpenAI instrumentation
2.4b0 for embeddings, and for chat under the latest experimental conventions), missed when
the span ends first (its chat calls under its default conventions). Only the point at the
switch matters, once per producer life.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from collector import conventions as conv
from collector.model import Identity, ProducerItems, Work, digest

IDENTITY_ATTRIBUTES = conv.PRODUCER_IDENTITY
"""Resource attributes that identify a producer (OTel's service identity). Two processes
that share all three are one producer: give each its own ``service.instance.id``."""
NEVER = -1
"""``metrics_until`` of a producer none of whose metric points counted."""
MAX_IDENTITY_TEXT = 255


class ProducerState(NamedTuple):
    spans: bool
    """Switched: the producer's usage spans count from ``metrics_until`` on."""
    metrics_until: int
    """UnixNano of the latest GenAI metric point counted (``NEVER`` if none): the switch."""


class Ruling(NamedTuple):
    state: ProducerState | None
    """The state to store; None when it stays as it was."""
    switch: int
    """Spans ending after it count; metric points after it are ignored (when ``spans``)."""
    spans: bool
    """Whether the producer counts from its spans after ``switch`` (points after it ignored)."""


def producer_identity(resource: Mapping[str, Any]) -> Identity:
    """The producer's identity attributes, as bounded text (absent: None)."""
    get = resource.get
    return (_text(get(conv.SERVICE_NAMESPACE)), _text(get(conv.SERVICE_NAME)),
            _text(get(conv.SERVICE_INSTANCE_ID)))  # fmt: skip


def producer_key(identity: Identity) -> str:
    return digest("producer", *identity)


def rule(state: ProducerState | None, has_spans: bool, point_times: Iterable[int]) -> Ruling:
    """The decision for one producer's spans (any) and metric points (their times) of one
    transaction. Spans are applied first: points that arrive with the first spans are
    treated as arriving after them."""
    current = state or ProducerState(False, NEVER)
    if has_spans and not current.spans:
        switched = ProducerState(True, current.metrics_until)
        return Ruling(switched, switched.metrics_until, True)
    if current.spans:
        return Ruling(None, current.metrics_until, True)
    latest = max(point_times, default=NEVER)
    if latest > current.metrics_until or state is None:
        moved = ProducerState(False, max(latest, current.metrics_until))
        return Ruling(moved, moved.metrics_until, False)
    return Ruling(None, current.metrics_until, False)


class ProducerIndex:
    """A request's items under the source rule, one ``ProducerItems`` per producer. Items
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


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_IDENTITY_TEXT]
