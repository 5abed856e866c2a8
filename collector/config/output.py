"""Sections of what tokenbridge exposes: the metrics re-export and its own logs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from collector.config.base import Section
from collector.config.receivers import usable_tokens


class MetricsConfig(Section):
    """Re-export of committed usage and self-telemetry (``exporters/metrics``). On by default
    (a missing section is this default); ``metrics: null``, ``enabled: false`` or
    ``--no-metrics`` serve no endpoint and push nothing."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    """Prometheus scrape endpoint (``GET /metrics``); ``prometheus: false`` turns it off."""
    prometheus: bool = True
    otlp_endpoint: str | None = None
    """OTLP push target, e.g. ``http://otel-collector:4317`` (grpc) or
    ``http://otel-collector:4318/v1/metrics`` (http); unset means no push."""
    otlp_protocol: Literal["grpc", "http/protobuf"] = "grpc"
    otlp_interval: float = Field(15.0, gt=0)
    """Seconds between OTLP pushes."""
    otlp_headers: dict[str, str] = {}
    labels: tuple[str, ...] = ("model", "provider", "operation", "user", "api_key", "estimated")
    """Attributes of the usage counters, from: model, provider, operation, user, api_key,
    estimated, organization, model_route, cluster, source."""
    label_limit: int = Field(1000, ge=1)
    """Distinct values kept per label; later new values become ``overflow_value``."""
    label_limits: dict[str, int] = {}
    """Per-label overrides of ``label_limit``."""
    overflow_value: str = "__overflow__"
    max_series: int = Field(10_000, ge=4)
    """Series of the six usage counters together (one per label combination and counter);
    past it new combinations are folded into the all-``overflow_value`` series. Also each
    counter's cardinality limit in the SDK."""
    self_telemetry: bool = True
    tokens: list[SecretStr] = []
    """Bearer tokens a scraper must present on ``/metrics`` (Prometheus: ``authorization:
    {credentials: ...}``); empty: the endpoint is open. Kept apart from ``auth.tokens`` so a
    scraper cannot write usage and a sender cannot read everyone's."""

    @field_validator("tokens")
    @classmethod
    def _usable_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        return usable_tokens(value)


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """DEBUG also prints the traceback of a startup error; libraries log at WARNING or above
    unless DEBUG."""
    format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (time, level, logger, message) for log shippers."""
    summary_interval: float = Field(60.0, ge=0)
    """Seconds between two one-line summaries (accepted, committed, rejected, ...); 0: none."""
