"""Configuration: one pydantic model per component, defaults in code, unknown keys rejected.

Sources, later ones winning: the YAML file, ``TOKENBRIDGE_*`` environment variables
(``TOKENBRIDGE_DATABASE__URL`` sets ``database.url``; ``__`` separates levels; values are read
as YAML), then command-line flags.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from collector import conventions as conv
from collector.aggregation.rules import EXTRA_DIMENSIONS
from collector.commit import CommitSettings
from collector.mapping.fields import MAPPABLE_FIELDS
from collector.mapping.limits import Limits
from collector.mapping.producers import ProducerRule
from collector.model import Operation
from collector.origins import Origins

ENV_PREFIX = "TOKENBRIDGE_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiversConfig(Section):
    host: str = "127.0.0.1"
    grpc_port: int = Field(4317, ge=0, le=65535)
    http_port: int = Field(4318, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest request accepted, after decompression (OTLP gRPC messages included)."""
    header_timeout: float = Field(10.0, gt=0)
    """Seconds a connection may take to send a request's headers, from its start or its
    previous answer; also how long an idle kept-alive HTTP connection stays open."""
    idle_timeout: float = Field(10.0, gt=0)
    """Longest pause while an HTTP body arrives; longer is answered 408."""
    body_timeout: float = Field(60.0, gt=0)
    """Longest an HTTP body may take to arrive (408), and the grace a gRPC call gets when
    its connection is recycled (every 300 s)."""


DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "sqlite", "sqlite+aiosqlite")
URL_HELP = "use postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"


class DatabaseConfig(Section):
    url: str = "sqlite+aiosqlite:///tokenbridge.db"
    """``postgresql://user:password@host:5432/db`` or ``sqlite:///path/to/file.db``."""
    layout: Literal["tokenbridge", "gpustack"] = "tokenbridge"
    """``gpustack``: write GPUStack 2.3's own ``model_usages`` and ``model_usage_details`` in
    its (PostgreSQL) database and read its catalog tables; bookkeeping in ``tokenbridge_*``."""
    catalog_refresh: float = Field(2.0, gt=0)
    """``gpustack`` layout: seconds between reads of GPUStack's catalog tables."""
    migrate_on_start: bool = True
    pool_size: int = Field(5, ge=1)
    connect_timeout: float = Field(5.0, gt=0)
    command_timeout: float = Field(15.0, gt=0)
    """Longest one SQL statement may run before the database counts as unavailable."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL; {URL_HELP}") from None
        if url.drivername not in DATABASE_SCHEMES:
            raise ValueError(f"unknown database scheme {url.drivername!r}; {URL_HELP}")
        if url.drivername.startswith("sqlite") and not url.database:
            raise ValueError(f"no file named; {URL_HELP}")
        return value


class AggregationConfig(Section):
    timezone: str = "UTC"
    """The zone of a rollup's day: the equivalent of GPUStack's ``GPUSTACK_TIMEZONE`` (set
    both alike when GPUStack's views read tokenbridge's rows)."""
    bytes_per_input_token: int = 4
    tokens_per_output_chunk: int = 1
    extra_dimensions: tuple[str, ...] = ("model_route_id", "organization_id")
    """Added to the seed's rollup key: GPUStack 2.3 keys on both (``[]``: the seed's key).
    The GPUStack layout always merges on GPUStack's own database key instead."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("extra_dimensions")
    @classmethod
    def _known_dimensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(EXTRA_DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; use {EXTRA_DIMENSIONS}")
        return tuple(d for d in EXTRA_DIMENSIONS if d in value)


class CommitConfig(Section):
    max_batch: int | None = Field(None, ge=1)
    """Reports a transaction takes at most; unset: 2000 on PostgreSQL, 5000 on SQLite."""
    flush_interval: float = Field(0.1, gt=0, le=10)
    """How long the last free transaction slot, taken while others are in flight, waits for
    company; a free slot that is not the last starts a transaction at once."""
    max_pending: int = Field(20_000, ge=1)
    """Reports accepted and not yet committed. Keep it to a few seconds of commits: a sender
    waiting longer than its export timeout (10 s for the OTel SDK) resends anyway."""
    retry_after: float = Field(1.0, gt=0)
    concurrency: int | None = Field(None, ge=1, le=16)
    """Transactions in flight at once; unset: 3 on PostgreSQL, 1 on SQLite (one writer).

    The PostgreSQL defaults were measured with ``make bench``: three transactions of at most
    2000 reports keep the bridge's core busy while the database commits (8 requests of 1000
    spans in flight: about 16% more spans/s than two of at most 5000). SQLite has one
    writer, so there one larger transaction at a time does best."""

    def settings(self, engine: str) -> CommitSettings:
        """The commit's settings on ``engine`` (a SQLAlchemy dialect name): what is unset
        takes that engine's default."""
        postgres = engine == "postgresql"
        return CommitSettings(
            max_batch=self.max_batch or (2000 if postgres else 5000),
            flush_interval=self.flush_interval,
            max_pending=self.max_pending,
            retry_after=self.retry_after,
            concurrency=self.concurrency or (3 if postgres else 1),
        )


class SourcesConfig(Section):
    """Which inputs count; custom counters (``mapping.counters``) always do. By default
    both kinds of GenAI producer count once (the source rule)."""

    spans: bool = True
    genai_metrics: bool | Literal["auto"] = "auto"
    """The GenAI semconv metrics (``gen_ai.client.token.usage``, the draft counters).
    ``auto``: the source rule (a producer's points count until its first usage span, then
    its spans; ``collector.aggregation.sources``); ``true``: every point counts (spans
    too, unless ``spans: false``); ``false``: none does."""
    gateway: bool = True

    @field_validator("genai_metrics", mode="before")
    @classmethod
    def _auto_or_flag(cls, value: object) -> object:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"expected auto, true or false, got {value!r}")


class ProducerRuleConfig(Section):
    """One producer rule (``collector/mapping/producers.py``): corrections for the spans of an
    instrumentation scope. A rule with the scope and versions of a default one replaces it."""

    scope: str = Field(min_length=1)
    versions: str = ""
    input_excludes_cache: bool = False
    operations: dict[str, str] = {}
    usage_object: str | None = None
    ignore: str | None = None

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"not a version range (PEP 440 specifiers): {value!r}") from None
        return value

    @field_validator("operations")
    @classmethod
    def _operations(cls, value: dict[str, str]) -> dict[str, str]:
        for name, stored in value.items():
            if Operation.parse(stored) is None:
                raise ValueError(f"{name}: unknown operation {stored!r}")
        return value

    def rule(self) -> ProducerRule:
        operations = {}
        for name, stored in self.operations.items():
            operation = Operation.parse(stored)
            if operation is not None:  # always: checked above
                operations[name.strip().lower()] = operation
        return ProducerRule(
            scope=self.scope, versions=self.versions,
            input_excludes_cache=self.input_excludes_cache, operations=operations,
            usage_object=self.usage_object, ignore=self.ignore,
        )  # fmt: skip


class MappingConfig(Section):
    producer_rules: list[ProducerRuleConfig] = []
    """Extra producer rules, before the defaults; one with a default's scope and versions
    replaces it."""
    fields: dict[str, list[str]] = {}
    """Per report field, the ordered attribute keys to read (replaces the default list)."""
    operations: dict[str, str] = {}
    """Extra operation names -> the stored operation value."""
    skip_operations: list[str] = []
    """Extra operation names whose spans repeat their children's usage."""
    counters: dict[str, str] = {}
    """Custom counters: metric name -> report field (always counted)."""

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(value) - MAPPABLE_FIELDS
        if unknown:
            raise ValueError(f"unknown report fields {sorted(unknown)}")
        return value

    @field_validator("counters")
    @classmethod
    def _known_counter_fields(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = set(conv.TOKEN_FIELDS) - {"total_token"}
        for name, field in value.items():
            if field not in allowed:
                raise ValueError(f"{name}: field must be one of {sorted(allowed)}")
        return value


class CatalogConfig(Section):
    path: str
    """YAML file of models, providers, users, api_keys, routes and clusters (see README)."""
    reload_interval: float = Field(5.0, ge=0)
    """Seconds between checks of the file for changes (reloaded when changed); 0: read once."""


class PricingConfig(Section):
    """Cost of every report (``collector.aggregation.pricing``). Prices come from ``path``
    (YAML, see README) and, for models the file does not price, the ``genai-prices``
    package."""

    enabled: bool = True
    """false: no report is priced (cost and status stay NULL)."""
    currency: str = "USD"
    """One currency per deployment; a price file naming another is refused."""
    path: str | None = None
    builtin: bool = True
    """Fall back to the ``genai-prices`` package's prices (USD) for models the file lacks."""
    reload_interval: float = Field(5.0, ge=0)
    """Seconds between checks of ``path`` for changes (reloaded when changed); 0: read once."""

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str) -> str:
        if not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
            raise ValueError("a three-letter upper-case code such as USD")
        return value

    @model_validator(mode="after")
    def _builtin_in_usd(self) -> PricingConfig:
        if self.enabled and self.builtin and self.currency != "USD":
            raise ValueError(f"the builtin prices are in USD, not {self.currency}: set "
                             "pricing.builtin: false")  # fmt: skip
        return self


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


class RetentionConfig(Section):
    """How long audit rows and rejects are kept; rollups (``model_usages``) are kept for good.

    A day D of audit rows is removed once it is more than ``details_days`` days before today
    (in ``aggregation.timezone``); a report dated before that horizon is rejected (``older
    than retention``), since its audit row could no longer de-duplicate a resend."""

    details_days: int = Field(400, ge=1)
    """Days of ``model_usage_details`` kept (400: about GPUStack's 13 months)."""
    rejects_days: int = Field(30, ge=1)
    """Days of ``usage_rejects`` kept (beside ``limits.max_reject_rows``)."""
    partition: Literal["day", "month"] = "month"
    """PostgreSQL: one partition of ``model_usage_details`` per day or per month."""
    partitions_ahead: int = Field(3, ge=1, le=400)
    """Partitions created ahead of today (days or months), so no report waits for DDL."""
    archive_dir: Path | None = None
    """Where a partition (a day, on SQLite) is written before it is dropped; unset: no
    archive. Files are gzip CSV with a header (``tokenbridge archive --restore F``)."""
    interval: float = Field(3600.0, ge=0)
    """Seconds between two prune runs inside ``serve`` (partitions ahead are created on
    each run too); 0: ``serve`` never prunes (run ``tokenbridge prune`` instead)."""
    batch_rows: int = Field(10_000, ge=100)
    """Rows one DELETE removes at most (SQLite, PostgreSQL's default partition, rejects)."""


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """DEBUG also prints the traceback of a startup error; libraries log at WARNING or above
    unless DEBUG."""
    format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (time, level, logger, message) for log shippers."""
    summary_interval: float = Field(60.0, ge=0)
    """Seconds between two one-line summaries (accepted, committed, rejected, ...); 0: none."""


class Config(Section):
    receivers: ReceiversConfig = ReceiversConfig()
    database: DatabaseConfig = DatabaseConfig()
    aggregation: AggregationConfig = AggregationConfig()
    commit: CommitConfig = CommitConfig()
    sources: SourcesConfig = SourcesConfig()
    mapping: MappingConfig = MappingConfig()
    catalog: CatalogConfig | None = None
    pricing: PricingConfig = PricingConfig()
    metrics: MetricsConfig | None = MetricsConfig()
    """On by default at 127.0.0.1:9464; ``metrics: null`` or ``enabled: false`` turns it off."""
    auth: AuthConfig = AuthConfig()
    tls: TlsConfig = TlsConfig()
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = RetentionConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _one_catalog(self) -> Config:
        if self.database.layout == "gpustack" and self.catalog is not None:
            raise ValueError("catalog: not used with database.layout gpustack (GPUStack's "
                             "own tables are the catalog); remove the catalog section")
        return self


class ConfigError(Exception):
    """Invalid configuration; the message names the setting (flag, environment variable or
    YAML key and file), its value (secrets masked) and what to do."""


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_PREFIX + "TEST_"):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            node[path[-1]] = raw  # not YAML: the text as given, validated as such
    return tree


def _read_file(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file; give the path of a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"--config {path}: YAML syntax error{where}: {problem}; fix the file"
        ) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config {path}: expected a mapping of sections at the top level")
    return loaded


def load(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """The configuration from ``path``, the environment and ``overrides`` (command-line flags;
    ``flags`` names the flag of each dotted key, for error messages)."""
    origins = sources(path, overrides, environ, flags)
    try:
        return Config.model_validate(origins.merged())
    except ValidationError as exc:
        raise ConfigError("; ".join(origins.describe(item) for item in exc.errors())) from None


def sources(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Origins:
    """What each source sets, to name where a setting came from."""
    data = _read_file(path) if path is not None else {}
    env = _from_env(os.environ if environ is None else environ)
    return Origins(path, data, env, overrides or {}, flags or {}, Config, _merge)
