"""Tables. ``model_usages`` and ``model_usage_details`` keep GPUStack's column names.

The rollup key is NULL-safe on both engines through ``rollup_key``: a digest of the typed key
tuple, unique and NOT NULL, while the key columns themselves stay nullable as GPUStack's are.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

metadata = MetaData()

Id = BigInteger().with_variant(Integer(), "sqlite")
"""SQLite only autoincrements an INTEGER PRIMARY KEY."""


Money = Numeric(38, 12).with_variant(BigInteger(), "sqlite")
"""Exact money: NUMERIC on PostgreSQL (the amount in the currency); on SQLite, which has no
decimal type (its REAL is binary), an integer count of pico-units (10^-12 of the currency,
``exporters.sql.money``), summed exactly by SQLite's integer ``sum()``."""


def _count(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False, server_default="0")


def _identity() -> list[Column[object]]:
    """Who called what, through which route: shared by rollups and audit rows."""
    return [
        Column("date", Date, nullable=False),
        Column("model_id", BigInteger),
        Column("model_name", String(255), nullable=False),
        Column("provider_id", BigInteger),
        Column("provider_name", String(255)),
        Column("provider_type", String(255)),
        Column("user_id", String(255)),
        Column("user_name", String(255)),
        Column("access_key", String(255)),
        Column("api_key_id", BigInteger),
        Column("api_key_name", String(255)),
        Column("api_key_is_custom", Boolean),
        Column("operation", String(32)),
        Column("model_route_id", BigInteger),
        Column("model_route_name", String(255)),
        Column("organization_id", String(255)),
        Column("cluster_name", String(255)),
    ]


def _counts() -> list[Column[int]]:
    return [
        _count("prompt_token_count"),
        _count("completion_token_count"),
        _count("prompt_cached_token_count"),
        _count("prompt_cache_write_token_count"),
        _count("completion_reasoning_token_count"),
        _count("request_count"),
    ]


model_usages = Table(
    "model_usages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rollup_key", String(32), nullable=False, unique=True),
    *_identity(),
    *_counts(),
    _count("estimated_request_count"),
    Column("cost", Money),
    _count("unpriced_request_count"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_model_usages_date", "date"),
    Index("ix_model_usages_user_id", "user_id"),
)

DETAILS_UNIQUE = {"postgresql": ("dedup_key", "date"), "sqlite": ("dedup_key",)}
"""The audit rows' unique key per engine. PostgreSQL's ``model_usage_details`` is partitioned
on ``date`` (``exporters.sql.partitions``), and a partitioned table's unique key must hold the
partition column; SQLite's ordinary table keeps ``dedup_key`` alone."""

model_usage_details = Table(
    "model_usage_details",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedup_key", String(200), nullable=False, unique=True),
    *_identity(),
    Column("cluster_id", BigInteger),
    *_counts(),
    _count("total_token_count"),
    Column("completed", Boolean, nullable=False),
    _count("output_chunk_count"),
    _count("request_content_bytes"),
    Column("stream", Boolean),
    Column("estimated", Boolean, nullable=False),
    Column("source", String(16), nullable=False),
    Column("request_id", String(255)),
    Column("started_at", DateTime),
    Column("completed_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("cost", Money),
    Column("cost_status", String(16)),
    Column("price_version", String(255)),
    Index("ix_model_usage_details_date", "date"),
    Index("ix_model_usage_details_user_id", "user_id"),
    Index("ix_model_usage_details_completed_at", "completed_at"),
)

def rejects_table(name: str, meta: MetaData) -> Table:
    """The bounded reject table (``exporters.sql.rejects``), as each layout names it."""
    return Table(
        name,
        meta,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("reject_key", String(32), nullable=False, unique=True),
        Column("received_at", DateTime, nullable=False),
        Column("source", String(16), nullable=False),
        Column("reason", Text, nullable=False),
        Column("item", Text, nullable=False),
        Index(f"ix_{name}_received_at", "received_at"),
    )


def metric_streams_table(name: str, meta: MetaData) -> Table:
    """Cumulative stream state (``exporters.sql.streams``), as each layout names it."""
    return Table(
        name,
        meta,
        Column("stream_key", String(32), primary_key=True),
        Column("time_ns", BigInteger, nullable=False),
        Column("value", BigInteger, nullable=False),
        Column("count", BigInteger, nullable=False),
        Column("updated_at", DateTime, nullable=False),
        Index(f"ix_{name}_updated_at", "updated_at"),
    )


def producer_sources_table(name: str, meta: MetaData) -> Table:
    """Source-rule state per producer (``exporters.sql.sources``), as each layout names it."""
    return Table(
        name,
        meta,
        Column("producer_key", String(32), primary_key=True),
        Column("service_namespace", String(255)),
        Column("service_name", String(255)),
        Column("service_instance_id", String(255)),
        Column("spans", Boolean, nullable=False),
        Column("metrics_until", BigInteger, nullable=False),
        Column("updated_at", DateTime, nullable=False),
    )


usage_rejects = rejects_table("usage_rejects", metadata)

settings = Table(
    "tokenbridge_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
"""What the stored rows depend on, e.g. the time zone their days are in
(``exporters.sql.settings``)."""

metric_streams = metric_streams_table("metric_streams", metadata)
"""Last point of each cumulative stream (``collector.aggregation.cumulative``)."""

producer_sources = producer_sources_table("producer_sources", metadata)
"""Per producer, where its usage counts from (``collector.aggregation.sources``): metric
points up to ``metrics_until`` (UnixNano, -1: none), its usage spans after it once ``spans``."""
