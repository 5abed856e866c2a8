"""``tokenbridge``: serve, migrate, report, prune, archive."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from collector import config as config_module
from collector.config import Config, ConfigError
from collector.tools import demo, loadgen
from collector.tools.table import render

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="YAML configuration file")
    parser.add_argument("--database-url", help="e.g. postgresql://user@host/db or sqlite:///file")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenbridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="receive OTLP and gateway pushes, commit usage")
    _common(serve)
    serve.add_argument("--host", help="address the receivers bind (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317)")
    serve.add_argument("--http-port", type=int, help="OTLP/HTTP port (default 4318)")
    serve.add_argument("--metrics-port", type=int,
                       help="Prometheus scrape port; enables the metrics section")  # fmt: skip
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the ports")
    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _common(migrate)
    migrate.add_argument("--accept-timezone-change", action="store_true",
                         help="record a changed aggregation.timezone (see README, Retention)")
    prune = commands.add_parser("prune", help="remove audit rows, rejects and stream state "
                                "past the retention horizons (rollups are kept)")
    _common(prune)
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    archive = commands.add_parser("archive", help="load an archive written by prune back")
    _common(archive)
    archive.add_argument("--restore", metavar="FILE", required=True,
                         help="a .csv.gz archive of model_usage_details")
    report = commands.add_parser("report", help="usage by key columns over a date range")
    _common(report)
    report.add_argument("--from", dest="start", type=date.fromisoformat, help="first day")
    report.add_argument("--to", dest="end", type=date.fromisoformat, help="last day")
    report.add_argument("--by", default="date,model_name", help="comma-separated key columns")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.add_argument("--rejects", action="store_true",
                        help="list rejected items (time, source, reason, item) instead of usage")
    loadgen.add_parser(commands)
    demo.add_parser(commands)
    return parser


def load_config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database"] = {"url": args.database_url}
    receivers = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("grpc_port", getattr(args, "grpc_port", None)),
            ("http_port", getattr(args, "http_port", None)),
        )
        if value is not None
    }
    if receivers:
        overrides["receivers"] = receivers
    if getattr(args, "metrics_port", None) is not None:
        overrides["metrics"] = {"port": args.metrics_port}
    return config_module.load(args.config, overrides)


async def _serve(config: Config) -> None:
    from collector.runtime.service import Service, serve_until_signalled

    def ready(service: Service) -> None:
        metrics = ""
        if service.metrics is not None and service.metrics.port is not None:
            metrics = f" metrics {service.metrics.config.host}:{service.metrics.port}"
        print(
            f"tokenbridge ready: grpc {config.receivers.host}:{service.grpc.port} "
            f"http {config.receivers.host}:{service.http.port}{metrics}",
            flush=True,
        )

    await serve_until_signalled(Service(config), ready)


async def _migrate(config: Config, accept_timezone_change: bool) -> None:
    from collector.runtime.service import retention_policy
    from exporters.sql import migrate
    from exporters.sql.engine import create_engine
    from exporters.sql.retention import COMMAND_TIMEOUT, Pruner
    from exporters.sql.settings import check_timezone

    # A migration copies tables: its batches may outlast database.command_timeout.
    engine = create_engine(config.database.url, command_timeout=COMMAND_TIMEOUT)
    try:
        await migrate.upgrade(engine)
        now = datetime.now(UTC).replace(tzinfo=None)
        await check_timezone(engine, config.aggregation.timezone, now, accept_timezone_change)
        created = await Pruner(engine, retention_policy(config)).ensure_ahead()
        print(f"database at revision {await migrate.current(engine)}"
              + (f"; created partitions {', '.join(created)}" if created else ""))
    finally:
        await engine.dispose()


async def _prune(config: Config, dry_run: bool) -> None:
    from collector.runtime.service import retention_policy
    from exporters.sql.engine import create_engine
    from exporters.sql.retention import COMMAND_TIMEOUT, Pruner

    engine = create_engine(config.database.url, command_timeout=COMMAND_TIMEOUT)
    try:
        removed = await Pruner(engine, retention_policy(config)).run(dry_run)
    finally:
        await engine.dispose()
    if removed is None:
        print("another replica is pruning now; nothing done")
        return
    verb = "would remove" if dry_run else "removed"
    for item in removed:
        print(f"{verb} {item}")
    print(f"{verb} {sum(item.rows for item in removed)} rows in all")


async def _restore(config: Config, path: str) -> None:
    from pathlib import Path

    from exporters.sql import archive
    from exporters.sql.engine import create_engine

    engine = create_engine(config.database.url)
    try:
        read, inserted = await archive.restore(engine, Path(path), config.retention.partition)
    finally:
        await engine.dispose()
    print(f"restored {path}: {read} rows read, {inserted} inserted, "
          f"{read - inserted} already present")


async def _report(config: Config, args: argparse.Namespace) -> None:
    from exporters.sql.engine import create_engine
    from exporters.sql.rejects import recent
    from exporters.sql.report import usage

    engine = create_engine(config.database.url)
    try:
        by = [column.strip() for column in args.by.split(",") if column.strip()]
        if args.rejects:
            names, rows = await recent(engine, args.start, args.end)
        else:
            names, rows = await usage(engine, args.start, args.end, by)
    finally:
        await engine.dispose()
    sys.stdout.write(render(names, rows, args.format))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "loadgen":
        return loadgen.main(args, asyncio.run)
    if args.command == "demo":
        return demo.main(args, sys.stdout)
    try:
        config = load_config(args)
    except ConfigError as error:
        print(f"tokenbridge: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from sqlalchemy.exc import SQLAlchemyError

    try:
        _run(config, args)
    except ValueError as error:
        print(f"tokenbridge: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, SQLAlchemyError) as error:
        line = _first_line(error)
        hint = "; run `tokenbridge migrate` first" if _unmigrated(line) else ""
        print(f"tokenbridge: database unavailable or failing: {line}{hint}", file=sys.stderr)
        return EXIT_RUNTIME
    return 0


def _run(config: Config, args: argparse.Namespace) -> None:
    if args.command == "serve" and args.workers > 1:
        from collector.runtime.workers import serve

        serve(config, args.workers)
    elif args.command == "serve":
        asyncio.run(_serve(config))
    elif args.command == "migrate":
        asyncio.run(_migrate(config, args.accept_timezone_change))
    elif args.command == "prune":
        asyncio.run(_prune(config, args.dry_run))
    elif args.command == "archive":
        asyncio.run(_restore(config, args.restore))
    else:
        asyncio.run(_report(config, args))


def _unmigrated(message: str) -> bool:
    return "no such table" in message or ("relation" in message and "does not exist" in message)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


if __name__ == "__main__":
    sys.exit(main())
