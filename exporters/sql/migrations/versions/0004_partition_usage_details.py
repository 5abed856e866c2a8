"""partition model_usage_details by date (PostgreSQL); settings bookkeeping table

Revision ID: 0004_partition_usage_details
Revises: usage_cost
Create Date: 2026-12-01 08:50:00

PostgreSQL, in bounded steps inside the migration's one transaction (so a failure leaves the
old table as it was, and no replica writes meanwhile: they wait on the migration lock):
1. rename the unpartitioned table (and its indexes) out of the way;
2. create the partitioned table with the same columns (ids keep coming from the same
   sequence), a DEFAULT partition and month partitions covering the old rows' dates;
3. copy the rows in batches of ``BATCH`` ids (each statement bounded, whatever the dates),
   checking each batch's row count and token sums in both tables;
4. drop the old table.
SQLite keeps its ordinary table.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy import text

from exporters.sql import partitions

revision = '0004_partition_usage_details'
down_revision = 'usage_cost'
branch_labels = None
depends_on = None

OLD = "model_usage_details_unpartitioned"
PARENT = partitions.PARENT
BATCH = 100_000
CHECK = ("SELECT count(*), coalesce(sum(prompt_token_count), 0), "
         "coalesce(sum(completion_token_count), 0), coalesce(sum(request_count), 0) FROM {}")


def upgrade() -> None:
    op.create_table(
        'tokenbridge_settings',
        sa.Column('name', sa.String(64), primary_key=True),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or partitions.is_partitioned(conn):
        return
    _rename_old(conn)
    conn.execute(text(f"CREATE TABLE {PARENT} (LIKE {OLD} INCLUDING DEFAULTS) "
                      "PARTITION BY RANGE (date)"))
    _keys_and_indexes(conn, unique="(dedup_key, date)", primary="(id, date)")
    sequence = conn.execute(text(f"SELECT pg_get_serial_sequence('{OLD}', 'id')")).scalar()
    if sequence:
        conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {PARENT}.id"))
    # Month partitions for the rows there are; ``migrate`` and ``serve`` then create the
    # configured ones ahead of today.
    partitions.ensure_default(conn)
    first, last = conn.execute(text(f"SELECT min(date), max(date) FROM {OLD}")).one()
    if first is not None:
        partitions.ensure(conn, first, last, "month")
    _copy(conn, OLD, PARENT)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql" and partitions.is_partitioned(conn):
        conn.execute(text(f"ALTER TABLE {PARENT} RENAME TO {OLD}"))
        for index in _indexes(conn, OLD):
            conn.execute(text(f'ALTER INDEX "{index}" RENAME TO "{index}_partitioned"'))
        conn.execute(text(f"CREATE TABLE {PARENT} (LIKE {OLD} INCLUDING DEFAULTS)"))
        _keys_and_indexes(conn, unique="(dedup_key)", primary="(id)")
        sequence = conn.execute(text(f"SELECT pg_get_serial_sequence('{OLD}', 'id')")).scalar()
        if sequence:
            conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {PARENT}.id"))
        _copy(conn, OLD, PARENT)
    op.drop_table('tokenbridge_settings')


def _indexes(conn: sa.Connection, table: str) -> list[str]:
    return list(conn.execute(
        text("SELECT indexname FROM pg_indexes WHERE tablename = :t"), {"t": table}
    ).scalars())


def _rename_old(conn: sa.Connection) -> None:
    conn.execute(text(f"ALTER TABLE {PARENT} RENAME TO {OLD}"))
    for index in _indexes(conn, OLD):  # renaming a constraint's index renames the constraint
        conn.execute(text(f'ALTER INDEX "{index}" RENAME TO "{index}_unpartitioned"'))


def _keys_and_indexes(conn: sa.Connection, unique: str, primary: str) -> None:
    conn.execute(text(f"ALTER TABLE {PARENT} ADD CONSTRAINT {PARENT}_pkey PRIMARY KEY {primary}"))
    conn.execute(text(f"ALTER TABLE {PARENT} ADD CONSTRAINT uq_{PARENT}_dedup UNIQUE {unique}"))
    for column in ("date", "user_id", "completed_at"):
        conn.execute(text(f"CREATE INDEX ix_{PARENT}_{column} ON {PARENT} ({column})"))


def _copy(conn: sa.Connection, source: str, target: str) -> None:
    """Rows of ``source`` into ``target`` in batches of ids, each batch's row count and sums
    checked (every statement bounded, whatever the table's size), then ``source`` dropped."""
    low, high = conn.execute(text(f"SELECT min(id), max(id) FROM {source}")).one()
    if low is not None:
        for start in range(low, high + 1, BATCH):
            bounds = {"a": start, "b": start + BATCH}
            conn.execute(
                text(f"INSERT INTO {target} SELECT * FROM {source} WHERE id >= :a AND id < :b"),
                bounds,
            )
            where = " WHERE id >= :a AND id < :b"
            before = conn.execute(text(CHECK.format(source) + where), bounds).one()
            after = conn.execute(text(CHECK.format(target) + where), bounds).one()
            if tuple(before) != tuple(after):
                raise RuntimeError(
                    f"copy of {source} into {target} does not add up for ids {start}.."
                    f"{start + BATCH - 1}: {tuple(before)} != {tuple(after)}; nothing was changed"
                )
    conn.execute(text(f"DROP TABLE {source}"))
