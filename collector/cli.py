"""``tokenbridge``: serve, migrate, report, reprice."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any

from collector import config as config_module
from collector.config import Config, ConfigError
from collector.tools import demo, loadgen
from collector.tools.table import render

EXIT_CONFIG = 2


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
    report = commands.add_parser("report", help="usage by key columns over a date range")
    _common(report)
    report.add_argument("--from", dest="start", type=date.fromisoformat, help="first day")
    report.add_argument("--to", dest="end", type=date.fromisoformat, help="last day")
    report.add_argument("--by", default="date,model_name", help="comma-separated key columns")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.add_argument("--rejects", action="store_true",
                        help="list rejected items (time, source, reason, item) instead of usage")
    report.add_argument("--raw", action="store_true",
                        help="names exactly as stored: no CSV formula guard, no escaping")
    reprice = commands.add_parser(
        "reprice", help="price the audit rows of some days again from the current price table")
    _common(reprice)
    reprice.add_argument("--from", dest="start", type=date.fromisoformat, required=True,
                         help="first day (YYYY-MM-DD, the rollup day)")  # fmt: skip
    reprice.add_argument("--to", dest="end", type=date.fromisoformat, required=True,
                         help="last day")  # fmt: skip
    reprice.add_argument("--model", help="only this model name")
    reprice.add_argument("--format", choices=("table", "csv", "json"), default="table")
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


async def _migrate(config: Config) -> None:
    from exporters.sql import migrate
    from exporters.sql.engine import create_engine

    engine = create_engine(config.database.url)
    try:
        await migrate.upgrade(engine)
        print(f"database at revision {await migrate.current(engine)}")
    finally:
        await engine.dispose()


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
    sys.stdout.write(render(names, rows, args.format, args.raw))


async def _reprice(config: Config, args: argparse.Namespace) -> None:
    from sqlalchemy.exc import DBAPIError

    from collector.aggregation.pricing.rates import as_decimal
    from collector.aggregation.pricing.watch import build
    from exporters.sql.engine import create_engine
    from exporters.sql.migrate import is_current
    from exporters.sql.money import text
    from exporters.sql.reprice import Repricer

    p = config.pricing
    if not p.enabled:
        raise ValueError("pricing.enabled is false: there is no price table to reprice from")
    if args.end < args.start:
        raise ValueError(f"--to {args.end} is before --from {args.start}")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    table = build(p.path, p.currency, p.builtin)
    engine = create_engine(config.database.url)
    try:
        if not await is_current(engine):
            raise ValueError(f"database {engine.url.render_as_string()} is unreachable or not "
                             "migrated: check --database-url, or run tokenbridge migrate")
        summary = await Repricer(engine, table, config.aggregation.extra_dimensions).run(
            args.start, args.end, args.model)
    except (DBAPIError, OSError) as error:
        raise ValueError(f"reprice stopped, run it again: {error}") from None
    finally:
        await engine.dispose()
    names = ["model_name", "rows", "rows_changed", f"old_cost_{p.currency}",
             f"new_cost_{p.currency}", "old_unpriced_requests", "new_unpriced_requests"]
    rows = [(model, c.rows, c.changed, text(as_decimal(c.old_cost)), text(as_decimal(c.new_cost)),
             c.old_unpriced, c.new_unpriced) for model, c in sorted(summary.models.items())]
    sys.stdout.write(render(names, rows, args.format))
    print(f"rollups rebuilt: {summary.rollups} ({summary.rollups_changed} changed)",
          file=sys.stderr)


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
    try:
        if args.command == "serve" and args.workers > 1:
            from collector.runtime.workers import serve

            serve(config, args.workers)
        elif args.command == "serve":
            asyncio.run(_serve(config))
        elif args.command == "migrate":
            asyncio.run(_migrate(config))
        elif args.command == "reprice":
            asyncio.run(_reprice(config, args))
        else:
            asyncio.run(_report(config, args))
    except ValueError as error:
        print(f"tokenbridge: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
