"""``tokenbridge loadgen`` against the real server: what it reports acknowledged is in SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from collector.tools.loadgen import LoadOptions, LoadRun
from collector.tools.synthetic import Spread
from tests.support import ROOT, Server, query

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
