"""tokenbridge: meter LLM token usage from OpenTelemetry.

commands:
  serve      receive OTLP and gateway pushes, commit usage, serve /metrics
  migrate    bring the database schema up to date
  prune      remove audit rows past the retention horizon (--dry-run: only count)
  archive    --restore F: load an archive written by prune back
  report     usage by key columns over a date range (--rejects: rejected items)
  rejects    rejects replay: count stored rejects again once their cause is fixed
  reprice    price the audit rows of some days again from the current price table
  loadgen    send synthetic usage to a running bridge
  demo       serve on SQLite, send a short load, print the report

Run ``tokenbridge COMMAND --help`` for a command's options and their defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import traceback
from collections.abc import Sequence
from datetime import date
from typing import Any, NoReturn

from collector import config as config_module
from collector import logs
from collector.config import Config, ConfigError
from collector.origins import Origins
from collector.startup import EXIT_CONFIG, StartupError
from collector.tools import demo, loadgen
from collector.tools.table import render

FLAGS = {
    "database.url": "--database-url",
    "receivers.host": "--host",
    "receivers.grpc_port": "--grpc-port",
    "receivers.http_port": "--http-port",
    "metrics.port": "--metrics-port",
    "metrics.enabled": "--no-metrics",
    "log.level": "--log-level",
    "log.format": "--log-format",
}
"""Flag of each configuration key a flag sets (error messages name the flag)."""


class Parser(argparse.ArgumentParser):
    """Usage errors as one line: ``tokenbridge: error: ...; see ... --help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"tokenbridge: error: {message}; see {self.prog} --help\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (options whose default comes from the
    configuration say so in their help); the description as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        quiet = action.default is None or action.default is False
        if not quiet and action.default is not argparse.SUPPRESS and "default" not in text:
            text += f" (default: {action.default})"
        return text


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not allowed, give 1 or more")
    return value


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date, use YYYY-MM-DD") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="YAML configuration file")
    parser.add_argument("--database-url",
                        help="postgresql://user:password@host/db or sqlite:///file.db "
                        "(default: database.url, sqlite:///tokenbridge.db)")  # fmt: skip
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="default: log.level, INFO; DEBUG adds tracebacks")  # fmt: skip
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="default: log.format, text")  # fmt: skip


def _dates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=day, help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=day, help="last day, included")


def _parser() -> argparse.ArgumentParser:
    from exporters.sql.report import GROUPABLE

    parser = Parser(prog="tokenbridge", description="tokenbridge: meter LLM token usage from "
                    "OpenTelemetry. Run tokenbridge COMMAND --help for a command's options "
                    "and their defaults.")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands")  # fmt: skip
    serve = commands.add_parser(
        "serve", help="receive OTLP and gateway pushes, commit usage, serve /metrics")
    _common(serve)
    serve.add_argument("--host", help="address the receivers bind (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317)")
    serve.add_argument("--http-port", type=int, help="OTLP/HTTP port (default 4318)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (default 9464)")
    serve.add_argument("--no-metrics", action="store_true",
                       help="serve no /metrics endpoint and push no metrics")  # fmt: skip
    serve.add_argument("--workers", type=positive, default=1,
                       help="processes sharing the ports (one per core)")  # fmt: skip
    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _common(migrate)
    migrate.add_argument("--accept-timezone-change", action="store_true",
                         help="record a changed aggregation.timezone (README, Retention)")
    prune = commands.add_parser("prune", help="remove audit rows, rejects and stream state "
                                "past the retention horizons (rollups are kept)")
    _common(prune)
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    archive = commands.add_parser("archive", help="load an archive written by prune back")
    _common(archive)
    archive.add_argument("--restore", metavar="FILE", required=True,
                         help="a .csv.gz archive of model_usage_details")
    report = commands.add_parser(
        "report", help="usage by key columns over a date range (--rejects: rejected items)")
    _common(report)
    _dates(report)
    report.add_argument("--by", default="date,model_name",
                        help=f"comma-separated key columns, from: {', '.join(GROUPABLE)}")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output format")  # fmt: skip
    report.add_argument("--rejects", action="store_true",
                        help="list rejected items (time, source, reason, item) instead of usage")
    report.add_argument("--raw", action="store_true",
                        help="names exactly as stored: no CSV formula guard, no escaping")
    rejects = commands.add_parser(
        "rejects", help="rejects replay: count stored rejects again once their cause is fixed")
    actions = rejects.add_subparsers(dest="action", required=True, metavar="ACTION")
    replay = actions.add_parser("replay", help="re-ingest stored rejects once their cause is "
                                "fixed (catalog, limits); counted once, however often run")
    _common(replay)
    _dates(replay)
    replay.add_argument("--reason", help="only rejects whose reason contains this text")
    reprice = commands.add_parser(
        "reprice", help="price the audit rows of some days again from the current price table")
    _common(reprice)
    reprice.add_argument("--from", dest="start", type=day, required=True,
                         help="first day (YYYY-MM-DD, the rollup day)")  # fmt: skip
    reprice.add_argument("--to", dest="end", type=day, required=True,
                         help="last day")  # fmt: skip
    reprice.add_argument("--model", help="only this model name")
    reprice.add_argument("--format", choices=("table", "csv", "json"), default="table")
    loadgen.add_parser(commands)
    demo.add_parser(commands)
    return parser


def load_config(args: argparse.Namespace) -> tuple[Config, Origins]:
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
    if getattr(args, "no_metrics", False):
        overrides["metrics"] = {"enabled": False}
    log = {k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v}
    if log:
        overrides["log"] = log
    origins = config_module.sources(args.config, overrides, None, FLAGS)
    return config_module.load(args.config, overrides, None, FLAGS), origins


def _run(args: argparse.Namespace, config: Config, origins: Origins) -> int:
    from collector.runtime import commands

    if args.command == "serve":
        commands.serve(config, origins, args.workers)
    elif args.command == "migrate":
        commands.migrate(config, origins, args.accept_timezone_change)
    elif args.command in ("prune", "archive"):
        from collector.runtime import retention

        if args.command == "prune":
            sys.stdout.write(retention.prune(config, origins, args.dry_run))
        else:
            sys.stdout.write(retention.restore(config, origins, args.restore))
    elif args.command == "reprice":
        commands.check_database(config, origins)
        asyncio.run(_reprice(config, args))
    elif args.command == "report":
        if args.start and args.end and args.start > args.end:
            raise StartupError(f"--from {args.start} is after --to {args.end}; swap them")
        sys.stdout.write(render(*commands.report(config, origins, args), args.format,
                                args.raw))
    else:
        sys.stdout.write(commands.replay(config, origins, args))
    return 0


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
    debug = args.log_level == "DEBUG"
    try:
        config, origins = load_config(args)
        debug = config.log.level == "DEBUG"
        logs.setup(config.log.level, config.log.format)
        return _run(args, config, origins)
    except (ConfigError, StartupError, ValueError) as error:
        message = error.message if isinstance(error, StartupError) else str(error)
        print(f"tokenbridge: error: {message}", file=sys.stderr, flush=True)
        if debug:
            traceback.print_exc()
        return error.code if isinstance(error, StartupError) else EXIT_CONFIG
    except KeyboardInterrupt:
        logging.getLogger("tokenbridge").info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
