"""usage cost: priced audit rows and rollup cost

Revision ID: usage_cost
Revises: 0002_producer_sources
Create Date: 2026-12-01 08:40:00

``model_usage_details`` gets ``cost``, ``cost_status`` (priced, unpriced, zero_priced) and
``price_version``; ``model_usages`` gets ``cost`` (sum of the priced rows) and
``unpriced_request_count``. Rows written before this revision keep NULL cost and status
(``tokenbridge reprice`` prices them).
"""

from alembic import op
import sqlalchemy as sa


revision = 'usage_cost'
down_revision = '0002_producer_sources'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(38, 12).with_variant(sa.BigInteger(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('model_usage_details', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost', MONEY, nullable=True))
        batch_op.add_column(sa.Column('cost_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('price_version', sa.String(length=255), nullable=True))
    with op.batch_alter_table('model_usages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost', MONEY, nullable=True))
        batch_op.add_column(sa.Column('unpriced_request_count', sa.BigInteger(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('model_usages', schema=None) as batch_op:
        batch_op.drop_column('unpriced_request_count')
        batch_op.drop_column('cost')
    with op.batch_alter_table('model_usage_details', schema=None) as batch_op:
        batch_op.drop_column('price_version')
        batch_op.drop_column('cost_status')
        batch_op.drop_column('cost')
