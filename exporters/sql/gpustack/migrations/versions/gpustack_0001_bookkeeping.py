"""tokenbridge bookkeeping beside GPUStack 2.3's tables

Revision ID: gpustack_0001_bookkeeping
Revises:
Create Date: 2026-12-01 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "gpustack_0001_bookkeeping"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokenbridge_dedup_keys",
        sa.Column("dedup_key", sa.String(length=200), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tokenbridge_dedup_keys_created_at", "tokenbridge_dedup_keys",
                    ["created_at"])
    op.create_table(
        "tokenbridge_rollup_keys",
        sa.Column("rollup_key", sa.String(length=32), primary_key=True),
        sa.Column("usage_id", sa.Integer(), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
    )
    op.create_table(
        "tokenbridge_metric_streams",
        sa.Column("stream_key", sa.String(length=32), primary_key=True),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tokenbridge_metric_streams_updated_at", "tokenbridge_metric_streams",
                    ["updated_at"])
    op.create_table(
        "tokenbridge_producer_sources",
        sa.Column("producer_key", sa.String(length=32), primary_key=True),
        sa.Column("service_namespace", sa.String(length=255), nullable=True),
        sa.Column("service_name", sa.String(length=255), nullable=True),
        sa.Column("service_instance_id", sa.String(length=255), nullable=True),
        sa.Column("spans", sa.Boolean(), nullable=False),
        sa.Column("metrics_until", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "tokenbridge_rejects",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("reject_key", sa.String(length=32), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
    )
    op.create_index("ix_tokenbridge_rejects_received_at", "tokenbridge_rejects",
                    ["received_at"])


def downgrade() -> None:
    op.drop_table("tokenbridge_rejects")
    op.drop_table("tokenbridge_producer_sources")
    op.drop_table("tokenbridge_metric_streams")
    op.drop_table("tokenbridge_rollup_keys")
    op.drop_table("tokenbridge_dedup_keys")
