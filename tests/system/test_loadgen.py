"""``tokenbridge loadgen`` against the real server: what it reports acknowledged is in SQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from collector.tools.loadgen import LoadOptions, LoadRun
from collector.tools.synthetic import Spread
from tests.support import ROOT, Server, free_port, query

SPREAD = Spread(models=3, users=4, keys=8)


async def test_loadgen_protocols_all_land_in_sql(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(database_url, tmp_path).start()
    spans = tokens = 0
    for protocol in ("grpc", "http", "json", "gateway"):
        summary = await LoadRun(LoadOptions(
            grpc_port=server.grpc_port, http_port=server.http_port, protocol=protocol,
            duration=120, requests=5, concurrency=3, spans=40, templates=2, spread=SPREAD,
        )).run()  # fmt: skip
        assert (summary.sent, summary.acknowledged, summary.failed) == (5, 5, 0)
        spans += summary.spans
        tokens += summary.input_tokens
    assert server.stop() == 0
    assert spans == 4 * 5 * 40
    assert await query(database_url, "select count(*) from model_usage_details") == [(spans,)]
    assert await query(database_url, "select sum(prompt_token_count) from model_usages") == [
        (tokens,)
    ]


async def test_loadgen_retries_refused_requests_and_loses_nothing(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    # A queue of 100 reports and a slow flush: most of 8 concurrent 50-span requests are
    # refused as retryable first, then resent by the load generator until committed.
    config = {"commit": {"max_pending": 100, "flush_interval": 2.0, "retry_after": 0.2}}
    server = server_factory(sqlite_url, tmp_path, config).start()
    done = subprocess.run(
        [sys.executable, "-m", "collector", "loadgen", "--json", "--quiet",
         "--grpc-port", str(server.grpc_port), "--http-port", str(server.http_port),
         "--protocol", "http", "--requests", "8", "--concurrency", "8", "--spans", "50",
         "--duration", "120", "--models", "2", "--users", "2", "--keys", "4"],
        capture_output=True, cwd=ROOT, timeout=180, check=True,
    )  # fmt: skip
    summary = json.loads(done.stdout)
    assert server.stop() == 0
    assert (summary["sent"], summary["acknowledged"], summary["failed"]) == (8, 8, 0)
    assert summary["retried"] >= 1
    assert await query(sqlite_url, "select count(*) from model_usage_details") == [(400,)]


def test_loadgen_stops_at_once_when_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "collector", "loadgen", "--protocol", "json", "--http-port",
         str(port), "--duration", "30"], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert (done.returncode, done.stderr.splitlines()[0]) == (
        1, f"tokenbridge: error: --host 127.0.0.1 --http-port {port}: connection refused; start "
        "tokenbridge serve there or point --http-port and --host at it")  # fmt: skip


async def test_loadgen_names_why_requests_failed(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(sqlite_url, tmp_path).start()
    run = LoadRun(LoadOptions(
        grpc_port=server.grpc_port, http_port=server.http_port, protocol="json", rate=400,
        duration=3.0, concurrency=2, spans=20, templates=2, spread=SPREAD, drain=1.0,
    ))  # fmt: skip
    task = asyncio.create_task(run.run())
    while run.summary.acknowledged < 3:
        await asyncio.sleep(0.05)
    await asyncio.to_thread(server.stop)
    summary = await task
    assert summary.failed > 0 and summary.acknowledged + summary.failed == summary.sent
    assert set(summary.failure_causes) == {"gave up after retries (connection refused)"}
    assert set(summary.retry_causes) == {"connection refused"}
    assert "; failed: " in summary.line() and "x gave up after retries (connection refused)" in (
        summary.line())  # fmt: skip
