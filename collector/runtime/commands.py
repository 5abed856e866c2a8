"""What ``serve``, ``migrate``, ``report`` and ``rejects replay`` do once the configuration is
loaded. Each raises ``StartupError`` (one line for the user) for a cause the user can fix."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from collector.config import Config
from collector.origins import Origins, mask_url
from collector.runtime.ports import Claim, PortClaims
from collector.startup import StartupError, check_sqlite, database_error

logger = logging.getLogger("tokenbridge")
DATABASE = ("database", "url")


def setting(origins: Origins, *loc: str) -> str:
    return origins.where(loc)[1]


def claims(config: Config, origins: Origins) -> list[Claim]:
    """The ports ``serve`` will listen on, each with how it was set."""
    r = config.receivers
    out = [Claim(setting(origins, "receivers", "grpc_port"), r.host, r.grpc_port),
           Claim(setting(origins, "receivers", "http_port"), r.host, r.http_port)]  # fmt: skip
    m = config.metrics
    if m is not None and m.enabled and m.prometheus:
        out.append(Claim(setting(origins, "metrics", "port"), m.host, m.port))
    return out


def ready_line(config: Config, origins: Origins, ports: dict[str, int | None],
               revision: str | None, workers: int = 1) -> str:  # fmt: skip
    """The one start line: version, addresses, database, schema revision, config sources."""
    host = config.receivers.host
    listen = ", ".join(f"{name} {host if name != 'metrics' else _metrics_host(config)}:{port}"
                       for name, port in ports.items() if port is not None)  # fmt: skip
    line = (f"tokenbridge ready: version {version('tokenbridge')}, {listen}, database "
            f"{mask_url(config.database.url)} at revision {revision or 'none'}, config "
            f"{origins.summary()}")  # fmt: skip
    return line + (f", {workers} workers" if workers > 1 else "")


def _metrics_host(config: Config) -> str:
    return config.metrics.host if config.metrics is not None else ""


def check_catalog(config: Config, origins: Origins) -> None:
    """The catalog file, read once before anything starts: a broken one is a startup error
    (while serving, a broken edit is logged and the last good catalog stays)."""
    from collector.mapping.catalog import Catalog

    if config.catalog is None:
        return
    try:
        Catalog.load(config.catalog.path)
    except ValueError as exc:
        problem = str(exc).removeprefix(f"catalog {config.catalog.path}: ")
        raise StartupError(f"{setting(origins, 'catalog', 'path')} {config.catalog.path}: "
                           f"{problem}; fix the file or the path") from None  # fmt: skip


def check_database(config: Config, origins: Origins) -> None:
    """A command that reads or changes an existing database: its SQLite file must exist."""
    check_sqlite(config.database.url, setting(origins, *DATABASE), writes=False)


def serve(config: Config, origins: Origins, workers: int) -> None:
    check_sqlite(config.database.url, setting(origins, *DATABASE), writes=True)
    check_catalog(config, origins)
    held = PortClaims()
    held.claim(claims(config, origins))
    try:
        with _database_errors(config, origins):
            if workers > 1:
                from collector.runtime.workers import serve as serve_workers

                serve_workers(config, workers, ready=lambda s: logger.info(
                    "%s", ready_line(config, origins, s.ports(), s.revision, workers)))  # fmt: skip
            else:
                asyncio.run(_serve(config, origins))
    finally:
        held.release()


async def _serve(config: Config, origins: Origins) -> None:
    from collector.runtime.service import Service, serve_until_signalled

    def ready(service: Service) -> None:
        metrics = service.metrics.port if service.metrics is not None else None
        ports = {"grpc": service.grpc.port, "http": service.http.port, "metrics": metrics}
        logger.info("%s", ready_line(config, origins, ports, service.revision))

    await serve_until_signalled(Service(config), ready)


@contextlib.contextmanager
def _database_errors(config: Config, origins: Origins) -> Iterator[None]:
    """Turn a database that cannot be opened into its one line."""
    try:
        yield
    except StartupError:
        raise
    except Exception as error:
        problem = database_error(error, config.database.url, setting(origins, *DATABASE))
        if problem is None:
            raise
        raise problem from error


def migrate(config: Config, origins: Origins, accept_timezone_change: bool = False) -> None:
    check_sqlite(config.database.url, setting(origins, *DATABASE), writes=True)
    with _database_errors(config, origins):
        asyncio.run(_migrate(config, accept_timezone_change))


async def _migrate(config: Config, accept_timezone_change: bool) -> None:
    from collector.runtime.service import retention_policy
    from exporters.sql import migrate as migrations
    from exporters.sql.engine import create_engine
    from exporters.sql.gpustack import migrate as gpustack_migrations
    from exporters.sql.retention import COMMAND_TIMEOUT, Pruner
    from exporters.sql.settings import check_timezone

    # A migration copies tables: its batches may outlast database.command_timeout.
    engine = create_engine(config.database.url, connect_timeout=config.database.connect_timeout,
                           command_timeout=COMMAND_TIMEOUT)  # fmt: skip
    try:
        if config.database.layout == "gpustack":
            await gpustack_migrations.upgrade(engine)
            revision = await gpustack_migrations.current(engine)
            print(f"GPUStack schema checked; tokenbridge bookkeeping at revision {revision}")
            return
        await migrations.upgrade(engine)
        now = datetime.now(UTC).replace(tzinfo=None)
        await check_timezone(engine, config.aggregation.timezone, now, accept_timezone_change)
        created = await Pruner(engine, retention_policy(config)).ensure_ahead()
        print(f"database at revision {await migrations.current(engine)}"
              + (f"; created partitions {', '.join(created)}" if created else ""))
    finally:
        await engine.dispose()


Table = tuple[list[str], list[tuple[Any, ...]]]


def report(config: Config, origins: Origins, args: argparse.Namespace) -> Table:
    """(column names, rows) of the report. Reads only: never creates a database file or a
    table."""
    where = setting(origins, *DATABASE)
    check_sqlite(config.database.url, where, writes=False)
    with _database_errors(config, origins):
        return asyncio.run(_report(config, args, where))


async def _report(config: Config, args: argparse.Namespace, where: str) -> Table:
    from exporters.sql import schema
    from exporters.sql.engine import create_engine
    from exporters.sql.gpustack import tables
    from exporters.sql.rejects import recent
    from exporters.sql.report import usage

    gpustack = config.database.layout == "gpustack"
    engine = create_engine(config.database.url, connect_timeout=config.database.connect_timeout,
                           read_only=True)  # fmt: skip
    try:
        await _require_schema(engine, config, where)
        by = [column.strip() for column in args.by.split(",") if column.strip()]
        if args.rejects:
            rejects = tables.rejects if gpustack else schema.usage_rejects
            names, rows = await recent(engine, args.start, args.end, t=rejects)
        else:
            usages = tables.model_usages if gpustack else schema.model_usages
            names, rows = await usage(engine, args.start, args.end, by, usages)
    finally:
        await engine.dispose()
    return names, rows


async def _require_schema(engine: Any, config: Config, where: str) -> None:
    from exporters.sql import migrate as migrations
    from exporters.sql.gpustack import migrate as gpustack_migrations

    if config.database.layout == "gpustack":
        async with engine.connect() as conn:
            await gpustack_migrations.check(conn)
        revision = await gpustack_migrations.current(engine)
    else:
        revision = await migrations.current(engine)
    if revision is None:
        raise StartupError(f"{where} {mask_url(config.database.url)}: the database has no "
                           "tokenbridge tables; run tokenbridge migrate (or serve) first, or "
                           "point it at the bridge's database")  # fmt: skip


def replay(config: Config, origins: Origins, args: argparse.Namespace) -> str:
    where = setting(origins, *DATABASE)
    check_sqlite(config.database.url, where, writes=False)
    check_catalog(config, origins)
    with _database_errors(config, origins):
        return asyncio.run(_replay(config, args, where))


async def _replay(config: Config, args: argparse.Namespace, where: str) -> str:
    from collector.runtime.replay import replay_rejects
    from exporters.sql.engine import create_engine

    engine = create_engine(config.database.url, connect_timeout=config.database.connect_timeout,
                           read_only=True)  # fmt: skip
    try:
        await _require_schema(engine, config, where)
    finally:
        await engine.dispose()
    outcome = await replay_rejects(config, args.start, args.end, args.reason)
    return outcome.text()
