"""Alembic environment of tokenbridge's bookkeeping beside GPUStack's tables.

Its own version table (``tokenbridge_alembic_version``): GPUStack's ``alembic_version`` belongs
to GPUStack's migrations and is only read, never written."""

from alembic import context

from exporters.sql.gpustack.tables import BOOKKEEPING, VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `tokenbridge migrate`")
context.configure(
    connection=connection,
    target_metadata=BOOKKEEPING,
    version_table=VERSION_TABLE,
    include_name=lambda name, kind, _parent: kind != "table" or name.startswith("tokenbridge_"),
)
with context.begin_transaction():
    context.run_migrations()
