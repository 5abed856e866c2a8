"""producer sources: per producer, whether its usage counts from spans or GenAI metrics

Revision ID: 0002_producer_sources
Revises: 0001
Create Date: 2026-12-01 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002_producer_sources'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('producer_sources',
    sa.Column('producer_key', sa.String(length=32), nullable=False),
    sa.Column('service_namespace', sa.String(length=255), nullable=True),
    sa.Column('service_name', sa.String(length=255), nullable=True),
    sa.Column('service_instance_id', sa.String(length=255), nullable=True),
    sa.Column('spans', sa.Boolean(), nullable=False),
    sa.Column('metrics_until', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('producer_key')
    )


def downgrade() -> None:
    op.drop_table('producer_sources')
