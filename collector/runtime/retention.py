"""What ``prune`` and ``archive --restore`` do. Each raises ``StartupError`` for a cause the user
can fix, or ``ValueError`` with its one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector.config import Config
from collector.origins import Origins
from collector.runtime.commands import DATABASE, _database_errors, _require_schema, setting
from collector.startup import check_sqlite


def prune(config: Config, origins: Origins, dry_run: bool) -> str:
    where = setting(origins, *DATABASE)
    check_sqlite(config.database.url, where, writes=False)
    with _database_errors(config, origins):
        return asyncio.run(_prune(config, where, dry_run))


async def _prune(config: Config, where: str, dry_run: bool) -> str:
    from collector.runtime.service import retention_policy
    from exporters.sql.engine import create_engine
    from exporters.sql.retention import COMMAND_TIMEOUT, Pruner

    engine = create_engine(config.database.url, connect_timeout=config.database.connect_timeout,
                           command_timeout=COMMAND_TIMEOUT)  # fmt: skip
    try:
        await _require_schema(engine, config, where)
        removed = await Pruner(engine, retention_policy(config)).run(dry_run)
    finally:
        await engine.dispose()
    if removed is None:
        return "another replica is pruning now; nothing done\n"
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {item}" for item in removed]
    lines.append(f"{verb} {sum(item.rows for item in removed)} rows in all")
    return "\n".join(lines) + "\n"


def restore(config: Config, origins: Origins, path: str) -> str:
    where = setting(origins, *DATABASE)
    check_sqlite(config.database.url, where, writes=False)
    with _database_errors(config, origins):
        return asyncio.run(_restore(config, where, Path(path)))


async def _restore(config: Config, where: str, path: Path) -> str:
    from exporters.sql import archive
    from exporters.sql.engine import create_engine
    from exporters.sql.retention import COMMAND_TIMEOUT

    if not path.is_file():
        raise ValueError(f"{path}: no such archive file")
    engine = create_engine(config.database.url, connect_timeout=config.database.connect_timeout,
                           command_timeout=COMMAND_TIMEOUT)  # fmt: skip
    try:
        await _require_schema(engine, config, where)
        read, inserted = await archive.restore(engine, path, config.retention.partition)
    finally:
        await engine.dispose()
    return (f"restored {path}: {read} rows read, {inserted} inserted, "
            f"{read - inserted} already present\n")
