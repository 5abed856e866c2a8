"""``tokenbridge demo``: the whole path in one command, for a first look.

Serves on a SQLite file in a temporary directory, sends a short burst of synthetic gateway
traffic over OTLP/gRPC (``collector.tools.loadgen``), stops the bridge gracefully and prints the
usage report by model: what a newcomer would otherwise assemble from three terminals.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from collector.config import Config
from collector.tools.loadgen import LoadOptions, LoadRun, Summary, progress_printer
from collector.tools.synthetic import Spread
from collector.tools.table import render


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "demo", help="serve on SQLite + synthetic traffic + the usage report"
    )
    p.add_argument("--requests", type=int, default=20, help="requests to send")
    p.add_argument("--spans", type=int, default=100, help="calls per request")
    p.add_argument("--dir", help="keep the database here (default: a temporary directory)")


async def run_demo(
    directory: Path, requests: int, spans: int, out: Any, keep: bool = False
) -> Summary:
    from collector.runtime.service import Service
    from exporters.sql.report import usage

    url = f"sqlite:///{directory / 'tokenbridge.db'}"
    config = Config.model_validate(
        {"database": {"url": url}, "receivers": {"grpc_port": 0, "http_port": 0},
         "metrics": None}
    )
    service = Service(config)
    await service.start()
    out.write(f"tokenbridge serving on {url} (gRPC port {service.grpc.port})\n")
    try:
        options = LoadOptions(
            grpc_port=service.grpc.port, http_port=service.http.port, protocol="grpc",
            duration=120.0, requests=requests, concurrency=4, spans=spans, templates=2,
            spread=Spread(models=4, users=3, keys=6, providers=2),
        )  # fmt: skip
        summary = await LoadRun(options, progress_printer(out)).run()
    finally:
        await service.shutdown()
    out.write(summary.line() + "\n\n")
    from exporters.sql.engine import create_engine

    engine = create_engine(url)
    try:
        names, rows = await usage(engine, None, None, ["model_name", "operation"])
    finally:
        await engine.dispose()
    out.write(render(names, rows, "table"))
    if keep:
        out.write(f"\nAgain any time: tokenbridge report --database-url {url} --by user_id\n")
    return summary


def main(args: argparse.Namespace, out: Any) -> int:
    if args.dir:
        directory = Path(args.dir)
        directory.mkdir(parents=True, exist_ok=True)
        summary = asyncio.run(run_demo(directory, args.requests, args.spans, out, keep=True))
    else:
        with tempfile.TemporaryDirectory(prefix="tokenbridge-demo-") as tmp:
            summary = asyncio.run(run_demo(Path(tmp), args.requests, args.spans, out))
    return 0 if summary.failed == 0 else 1
