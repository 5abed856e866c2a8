"""Sections of the receivers: listen addresses, auth, TLS and the bounds of a request."""

from __future__ import annotations

import re
import ssl
from datetime import UTC, date, datetime, time
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from collector.config.base import Section
from collector.mapping.limits import Limits


class ReceiversConfig(Section):
    host: str = "127.0.0.1"
    grpc_port: int = Field(4317, ge=0, le=65535)
    http_port: int = Field(4318, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest request accepted, after decompression (OTLP gRPC messages: at most
    ``grpc_max_message_bytes`` too)."""
    grpc_max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest OTLP/gRPC message, after decompression (the smaller of this and
    ``max_body_bytes`` applies). grpc hands a message over in one copy on the event loop,
    1.5-2.5 ms per MiB on a quiet 2-core machine, during which no other request is answered:
    at 16 MiB that is 25-40 ms, at 64 MiB 95-270 ms. The OpenTelemetry Collector's own OTLP
    receiver takes 4 MiB by default; SDK batches (512 spans) are well under 1 MiB."""
    header_timeout: float = Field(10.0, gt=0)
    """Seconds a connection may take to send a request's headers, from its start or its
    previous answer; also how long an idle kept-alive HTTP connection stays open."""
    idle_timeout: float = Field(10.0, gt=0)
    """Longest pause while an HTTP body arrives; longer is answered 408."""
    body_timeout: float = Field(60.0, gt=0)
    """Longest an HTTP body (408) or a gRPC call's message (DEADLINE_EXCEEDED, from the
    call's start) may take to arrive; also the grace a gRPC call gets when its connection is
    recycled (every 300 s)."""


def usable_tokens(value: list[SecretStr]) -> list[SecretStr]:
    """Bearer tokens as an ``Authorization`` header can carry them."""
    for token in value:
        text = token.get_secret_value()
        if not text or not text.isascii() or not text.isprintable() or " " in text:
            raise ValueError("each token must be non-empty printable ASCII without spaces")
    return value


class AuthConfig(Section):
    """Who may write. With no token and no secret, every endpoint is open (loopback default).
    Once either is set, every write endpoint needs a credential: OTLP (gRPC metadata and HTTP
    ``Authorization: Bearer <token>``) takes one of ``tokens``; the gateway push takes a token
    or GPUStack's ``X-GPUStack-Auth-Token`` signed with ``gateway_secret``."""

    tokens: list[SecretStr] = []
    """Bearer tokens, all accepted at once: add the new one, move senders, drop the old."""
    gateway_secret: SecretStr | None = None
    """GPUStack's gateway secret: the header is hex HMAC-SHA256 of "gateway-metrics-push"."""
    protect_health: bool = False
    """Also require a credential on ``/healthz`` and ``/readyz`` (open by default for probes)."""

    @field_validator("tokens")
    @classmethod
    def _usable_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        return usable_tokens(value)


class TlsConfig(Section):
    """TLS on both receivers when ``cert_file`` and ``key_file`` are set (PEM)."""

    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_none(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        for path in (self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file")
        if self.cert_file is not None and self.key_file is not None:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    self.cert_file, self.key_file
                )
            except (ssl.SSLError, OSError) as exc:
                detail = re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc.strerror or exc))
                raise ValueError(
                    f"cert_file {self.cert_file} and key_file {self.key_file} are not a PEM "
                    f"certificate and its private key ({detail}); give the matching pair"
                ) from None
        return self


class LimitsConfig(Section):
    """Bounds on one request's content (the body size is ``receivers.max_body_bytes``)."""

    max_items: int = Field(2_000_000, ge=1)
    """Elements of one request, counted on the bytes before parsing: every resource, scope,
    span, event, link, metric, data point, exemplar, attribute, attribute value and array or
    key-value list value (protobuf), every object and array (JSON). More refuse the request
    (413). A span with 12 attributes is ~25: the SDK's 512-span batches hold ~13,000, the
    Collector's 8192-span batches ~200,000; 2,000,000 is ~80,000 such spans (~40 MB of
    protobuf). A request at the limit parses into ~140 MB."""
    max_attributes: int = Field(256, ge=1)
    """Attributes read from one item (its own plus its resource's); more reject the item."""
    max_value_length: int = Field(4096, ge=256)
    """Characters of a string (bytes of a blob, elements of an array) in a read attribute."""
    max_count: int = Field(10**12, ge=1, le=2**62)
    """Largest token or request count of one report; a larger one rejects the item, so no
    sum can overflow the 64-bit columns."""
    max_inflight_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    """Bytes (as sent and inflated) of all requests being read, decoded or committed at
    once; past it a request is answered retryably (503 / UNAVAILABLE) before decoding."""
    max_inflight_items: int = Field(4_000_000, ge=1)
    """Elements all requests in flight may decode into (each counts the most its body could
    hold: half its length, at most ``max_items``); past it, retryable as above."""
    max_reject_rows: int = Field(100_000, ge=100)
    """``usage_rejects`` keeps the newest rows up to this many (pruned in the commit)."""
    earliest: date = date(2000, 1, 1)
    """Timestamps before this day (UTC) reject their item."""
    max_ahead: float = Field(86_400.0, ge=0)
    """Seconds a timestamp may lie ahead of the bridge's clock; later rejects the item."""


    def settings(self) -> Limits:
        """The bounds ingest checks."""
        earliest = datetime.combine(self.earliest, time(), UTC)
        return Limits(self.max_items, self.max_attributes, self.max_value_length,
                      self.max_count, int(earliest.timestamp() * 1000),
                      int(self.max_ahead * 1000))  # fmt: skip
