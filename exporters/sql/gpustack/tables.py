"""GPUStack 2.3's tables as tokenbridge reads and writes them, and tokenbridge's own beside them.

``GPUSTACK`` describes tables that GPUStack's migrations create (head ``a7e2c9d4f681``): the
columns tokenbridge writes in ``model_usages`` and ``model_usage_details``, and the columns it
reads from the catalog tables. It is never created, altered or migrated by tokenbridge.

``BOOKKEEPING`` holds tokenbridge's state, created by its own migrations (version table
``tokenbridge_alembic_version``, never GPUStack's ``alembic_version``):
- ``tokenbridge_dedup_keys``: one row per report counted (its idempotency key), so a resend,
  or one report delivered to two replicas, counts once;
- ``tokenbridge_rollup_keys``: the unique digest of GPUStack's merge key -> ``model_usages.id``.
  ``model_usages`` has no unique constraint; inserting the digest ``ON CONFLICT`` first makes
  concurrent replicas meet on one row (the second waits for the first's commit), then the
  rollup is added to by id;
- ``tokenbridge_metric_streams``, ``tokenbridge_producer_sources``, ``tokenbridge_rejects``: as
  ``metric_streams``, ``producer_sources`` and ``usage_rejects`` of the tokenbridge layout.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from collector.model import Operation
from exporters.sql.schema import metric_streams_table, producer_sources_table, rejects_table

GPUSTACK = MetaData()
BOOKKEEPING = MetaData()
VERSION_TABLE = "tokenbridge_alembic_version"

OPERATION_NAMES = {op: op.name for op in Operation}
"""GPUStack stores its ``OperationEnum`` by member NAME (``CHAT_COMPLETION``) in both tables."""

operation_enum = Enum(
    *OPERATION_NAMES.values(), name="operationenum", create_type=False, native_enum=True
)


def _identity() -> list[Column[object]]:
    return [
        Column("user_id", Integer),
        Column("user_name", String(255)),
        Column("model_id", Integer),
        Column("model_name", String, nullable=False),
        Column("model_route_id", Integer),
        Column("model_route_name", String(255)),
        Column("owner_principal_id", Integer),
        Column("consumer_principal_id", Integer),
        Column("provider_id", Integer),
        Column("provider_name", String(255)),
        Column("provider_type", String(255)),
        Column("cluster_name", String(255)),
        Column("api_key_id", Integer),
        Column("api_key_name", String(255)),
        Column("access_key", String),
        Column("api_key_is_custom", Boolean),
        Column("date", Date, nullable=False),
        Column("prompt_token_count", BigInteger, nullable=False),
        Column("completion_token_count", BigInteger, nullable=False),
        Column("prompt_cached_token_count", BigInteger, nullable=False),
    ]


model_usages = Table(
    "model_usages",
    GPUSTACK,
    Column("id", Integer, primary_key=True),
    *_identity(),
    Column("request_count", BigInteger, nullable=False),
    Column("operation", operation_enum),
    Column("consumer_name", String),
    Column("consumer_principal_kind", String),
)

model_usage_details = Table(
    "model_usage_details",
    GPUSTACK,
    Column("id", Integer, primary_key=True),
    *_identity(),
    Column("cluster_id", Integer),
    Column("completed", Boolean, nullable=False),
    Column("operation", String(32)),
    Column("started_at", DateTime),
    Column("completed_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("ttft_ms", Integer),
    Column("request_id", String),
)

alembic_version = Table("alembic_version", GPUSTACK, Column("version_num", String(32)))

models = Table(
    "models", GPUSTACK, Column("id", Integer, primary_key=True), Column("name", String),
    Column("categories", JSON), Column("cluster_id", Integer),
    Column("owner_principal_id", Integer),
)  # fmt: skip
model_routes = Table(
    "model_routes", GPUSTACK, Column("id", Integer, primary_key=True), Column("name", String),
    Column("created_model_id", Integer), Column("owner_principal_id", Integer),
)  # fmt: skip
model_providers = Table(
    "model_providers", GPUSTACK, Column("id", Integer, primary_key=True), Column("name", String),
    Column("config", JSON), Column("models", JSON), Column("owner_principal_id", Integer),
)  # fmt: skip
principals = Table(
    "principals", GPUSTACK, Column("id", Integer, primary_key=True), Column("name", String),
    Column("kind", String),
)  # fmt: skip
api_keys = Table(
    "api_keys", GPUSTACK, Column("id", Integer, primary_key=True), Column("name", String),
    Column("access_key", String), Column("is_custom", Boolean),
    Column("owner_principal_id", Integer),
)  # fmt: skip
clusters = Table(
    "clusters", GPUSTACK, Column("id", Integer, primary_key=True), Column("name", String),
)  # fmt: skip

REQUIRED_TABLES = ("model_usages", "model_usage_details", "models", "model_routes",
                   "model_providers", "principals", "api_keys", "clusters")  # fmt: skip

dedup_keys = Table(
    "tokenbridge_dedup_keys",
    BOOKKEEPING,
    Column("dedup_key", String(200), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Index("ix_tokenbridge_dedup_keys_created_at", "created_at"),
)

rollup_keys = Table(
    "tokenbridge_rollup_keys",
    BOOKKEEPING,
    Column("rollup_key", String(32), primary_key=True),
    Column("usage_id", Integer),
    Column("date", Date, nullable=False),
)

metric_streams = metric_streams_table("tokenbridge_metric_streams", BOOKKEEPING)

producer_sources = producer_sources_table("tokenbridge_producer_sources", BOOKKEEPING)
"""As ``producer_sources``: which signal of each producer counts (the source rule)."""

rejects = rejects_table("tokenbridge_rejects", BOOKKEEPING)
