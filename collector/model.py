"""The stage contract: the records every stage passes and the interfaces between stages.

``UsageReport`` is the one record every input becomes, ``Reject`` the one that replaces a bad
one, ``PointSample`` a cumulative metric point waiting for its stream's last value. A request's
``Work`` goes to the commit (``Commit``), which writes it through a ``BatchWriter`` and tells
its listeners what was ``Committed``; the sender is answered with an ``IngestResult``.
Exporters and stages import these from here, never from each other.

Counts follow OTel's rule that ``input_token`` includes cached input;
``cache_write_input_token`` and ``reasoning_output_token`` are subsets kept for billing, never
added on top.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


class Operation(enum.StrEnum):
    """GPUStack's operation enum (stored values)."""

    CHAT_COMPLETION = "chat_completion"
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    RERANK = "rerank"
    IMAGE_GENERATION = "image_generation"
    AUDIO_SPEECH = "audio_speech"
    AUDIO_TRANSCRIPTION = "audio_transcription"

    @classmethod
    def parse(cls, value: str) -> Operation | None:
        """The member for a stored or reported value; GPUStack's typo ``audit_transcription``
        reads as audio transcription."""
        if value == "audit_transcription":
            return cls.AUDIO_TRANSCRIPTION
        try:
            return cls(value)
        except ValueError:
            return None


class Source(enum.StrEnum):
    SPAN = "otlp_span"
    METRIC = "otlp_metric"
    GATEWAY = "gateway_json"


class Signal(enum.StrEnum):
    """What a request carries: an OTLP trace or metrics export, or a gateway push."""

    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"
    GATEWAY = "gateway"


class Encoding(enum.StrEnum):
    """A request body's encoding, named by its media type."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


class UsageReport(NamedTuple):
    """One request (a span, a gateway push) or one metric delta.

    A ``NamedTuple``: immutable like a frozen dataclass, and built several times faster
    (a frozen dataclass sets each of its ~40 fields through ``object.__setattr__``), which
    matters on the hot path where every span becomes one. ``report._replace(...)`` copies."""

    model: str
    source: Source
    dedup_key: str
    received_at: int
    """UnixMilli when the bridge received it: the day of a report with no timestamps."""
    input_token: int = 0
    output_token: int = 0
    total_token: int = 0
    input_cached_token: int = 0
    cache_write_input_token: int = 0
    reasoning_output_token: int = 0
    request_count: int = 1
    completed: bool = True
    output_chunk_count: int = 0
    request_content_bytes: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    model_id: int | None = None
    provider_id: int | None = None
    provider_name: str | None = None
    provider_type: str | None = None
    user_id: str | None = None
    access_key: str | None = None
    organization_id: str | None = None
    model_route_id: int | None = None
    cluster_id: int | None = None
    operation: Operation | None = None
    stream: bool | None = None
    request_id: str | None = None
    estimated: bool = False
    prompt_from_total: bool = False
    """The catalog says this is an embedding or reranker model (the seed's token resolution)."""
    # Name snapshots taken from the catalog at ingest, so rows keep the names of the day.
    user_name: str | None = None
    api_key_id: int | None = None
    api_key_name: str | None = None
    api_key_is_custom: bool | None = None
    model_route_name: str | None = None
    cluster_name: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An input item that could not become a report, kept with the reason."""

    source: Source
    reason: str
    item: str
    """The item as received, as JSON: a one-item OTLP/JSON request for a span or a data
    point, the object for a gateway push (``collector.decode.reencode``)."""
    received_at: int


class Ignored(enum.StrEnum):
    """Why an item received was neither counted nor rejected (the ``reason`` label of
    ``tokenbridge.reports.ignored``). Every item of a request ends accepted, rejected or
    ignored with one of these."""

    NOT_USAGE_SPAN = "not a usage span"
    """A span with no token attribute and no partial-stream evidence (HTTP, database, ...)."""
    REPEATS_CHILDREN = "repeats its children's usage"
    """Agent, tool and workflow spans or points: their usage is their children's."""
    FROM_SPANS = "counted from the producer's spans"
    """A GenAI metric point after its producer's switch to spans (the source rule)."""
    FROM_METRICS = "counted from the producer's metrics"
    """A usage span that ended before its producer's switch: its metric points counted it."""
    UNUSED_METRIC = "unused metric"
    """A data point of a metric tokenbridge does not read (or of a type it does not read)."""
    NO_RECORDED_VALUE = "no recorded value"
    """A point flagged NoRecordedValue (a stream that stopped reporting)."""
    LOG_RECORD = "log record"
    """OTLP logs are answered, never read."""
    SPANS_OFF = "spans not counted (sources.spans: false)"
    GENAI_METRICS_OFF = "GenAI metrics not counted (sources.genai_metrics: false)"
    GATEWAY_OFF = "gateway pushes not counted (sources.gateway: false)"


@dataclass(frozen=True, slots=True)
class PointSample:
    """A metric point's tokens and requests, with the stream it belongs to."""

    stream_key: str
    """Digest of resource, scope, metric name, unit, point attributes and start time."""
    start_ns: int
    time_ns: int
    value: int
    count: int
    cumulative: bool
    field: str
    template: UsageReport
    """Identity fields of the report; counts come from the (delta) value and count."""

    def report(self, value: int, count: int) -> UsageReport:
        """The report for this point's (delta) tokens and requests."""
        t = self.template._replace(request_count=count)
        match self.field:
            case "input_token":
                return t._replace(input_token=value, total_token=value)
            case "output_token":
                return t._replace(output_token=value, total_token=value)
            case "input_cached_token":
                return t._replace(input_cached_token=value)
            case "cache_write_input_token":
                return t._replace(cache_write_input_token=value)
            case "reasoning_output_token":
                return t._replace(reasoning_output_token=value)
        raise ValueError(f"not a token field: {self.field}")


Identity = tuple[str | None, str | None, str | None]
"""A producer's ``service.namespace``, ``service.name`` and ``service.instance.id``."""


@dataclass(slots=True)
class ProducerItems:
    """One request's usage spans and GenAI metric points of one producer. The source rule
    (``collector.aggregation.sources``) decides in the commit transaction which count; the
    others are added to ``ignored``, the request's own tally, once the transaction commits."""

    key: str
    identity: Identity
    ignored: Counter[str]
    spans: list[UsageReport] = dataclasses.field(default_factory=list)
    ends: list[int] = dataclasses.field(default_factory=list)
    """UnixNano end of each span, in ``spans`` order."""
    points: list[PointSample] = dataclasses.field(default_factory=list)
    """Cumulative points (their deltas are taken in the transaction)."""
    deltas: list[tuple[int, UsageReport | None]] = dataclasses.field(default_factory=list)
    """Delta points: (UnixNano time, report; None when the point is zero)."""

    def __len__(self) -> int:
        return len(self.spans) + len(self.points) + len(self.deltas)


@dataclass(slots=True)
class Work:
    """What one request hands to the commit: reports, cumulative samples, the items under
    the source rule, rejects, and the reasons of the items ignored (this request's)."""

    reports: list[UsageReport] = dataclasses.field(default_factory=list)
    samples: list[PointSample] = dataclasses.field(default_factory=list)
    rejects: list[Reject] = dataclasses.field(default_factory=list)
    producers: list[ProducerItems] = dataclasses.field(default_factory=list)
    ignored: Counter[str] = dataclasses.field(default_factory=Counter)
    """Not merged by ``extend``: each request keeps its own."""
    taken: int = 0
    """Items accepted at ingest (the source rule may yet ignore some of them)."""

    def __len__(self) -> int:
        ruled = sum(len(p) for p in self.producers) if self.producers else 0
        return len(self.reports) + len(self.samples) + len(self.rejects) + ruled

    def extend(self, other: Work) -> None:
        self.reports.extend(other.reports)
        self.samples.extend(other.samples)
        self.rejects.extend(other.rejects)
        self.producers.extend(other.producers)


@dataclass(frozen=True, slots=True)
class Committed:
    """What a transaction wrote: the reports counted (new ones only) and what it skipped."""

    reports: Sequence[UsageReport]
    duplicates: int
    rejects: int
    seconds: float
    accepted: int = 0
    """Reports and cumulative samples the transaction took (new, repeated or zero deltas)."""
    costs: Sequence[int | None] = ()
    """With pricing on, each new report's cost in pico-units (None: unpriced), in the order
    of ``reports``; empty when pricing is off."""


CommitListener = Callable[[Committed], None]
"""Called with every committed transaction (the metrics re-export, the totals)."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """A committed request's answer: what it took, rejected and ignored, and why. Per
    request ``accepted + rejected + ignored`` = items received (spans, data points, gateway
    objects, log records)."""

    accepted: int
    rejected: int
    message: str
    """Readable reasons of the first rejects (OTLP ``partial_success.error_message``)."""
    ignored: int = 0
    """Items neither counted nor rejected, each for an ``Ignored`` reason."""


class BatchWriter(Protocol):
    """The SQL sink as the commit sees it."""

    async def write(self, work: Work) -> Committed:
        """Write in one transaction; ``RetryableError`` when the database is unavailable."""

    async def ping(self) -> bool:
        """True when the database answers and is migrated."""


class Commit(Protocol):
    """The commit as ingest sees it (``collector.commit.GroupCommit``)."""

    def admit(self, size: int = 0) -> None:
        """Raise ``RetryableError`` when a request of ``size`` items would be refused now."""

    async def submit(self, work: Work) -> None:
        """Return once ``work`` is committed; raise ``RetryableError`` when it was not."""


def _fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return repr(value)


def digest(*parts: Any) -> str:
    """A stable 128-bit hex digest of the canonical JSON of ``parts`` (keys sorted): the
    identity of a record without ids (dedup keys, stream keys, rollup keys)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_fallback)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
