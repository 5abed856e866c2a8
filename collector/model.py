"""The usage report: the one record every input becomes, and the reject that replaces a bad one.

Every stage after decoding passes these frozen records. Counts follow OTel's rule that
``input_token`` includes cached input; ``cache_write_input_token`` and ``reasoning_output_token``
are subsets kept for billing, never added on top.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


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
    # GPUStack 2.3's tenant snapshots (``database.layout: gpustack``): the owner of the model,
    # provider or route called, and the consumer billed (key owner, organization, or caller).
    owner_principal_id: int | None = None
    consumer_principal_id: int | None = None
    consumer_name: str | None = None
    consumer_principal_kind: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An input item that could not become a report, kept with the reason."""

    source: Source
    reason: str
    item: str
    """A bounded, readable rendering of the rejected item."""
    received_at: int
