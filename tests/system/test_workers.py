"""``serve --workers 2``: both workers take traffic, SIGTERM drains both, and the
supervisor's listener receives exactly what was committed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from collector.config import Config
from collector.model import Committed
from collector.runtime.workers import Supervisor
from collector.tools.loadgen import LoadOptions, LoadRun
from collector.tools.synthetic import Spread
from tests.support import Server, free_port, query
from tests.system.test_metrics_export import _scrape


def _load(supervisor: Supervisor, requests: int, duration: float) -> LoadRun:
    return LoadRun(LoadOptions(
        grpc_port=supervisor.grpc_port, http_port=supervisor.http_port, protocol="grpc",
        duration=duration, requests=requests, concurrency=16, spans=50, templates=2,
        spread=Spread(models=3, users=5, keys=10), drain=0.0,
    ))  # fmt: skip


async def test_two_workers_share_traffic_and_drain_into_one_listener(database_url: str) -> None:
    seen: list[Committed] = []
    config = Config.model_validate({
        "database": {"url": database_url},
        "receivers": {"grpc_port": free_port(), "http_port": free_port()}, "metrics": None,
    })  # fmt: skip
    supervisor = Supervisor(config, 2, [seen.append])
    await asyncio.to_thread(supervisor.start)
    try:
        first = await _load(supervisor, 32, 120).run()
        assert (first.acknowledged, first.failed) == (32, 0)
        # 16 connections spread by the kernel: each worker took some (all on one: 2**-15).
        assert all(n > 0 for n in supervisor.committed)
        # SIGTERM while requests are in flight: what was acknowledged must be committed.
        second_run = _load(supervisor, 400, 20)
        second = asyncio.create_task(second_run.run())
        while second_run.summary.acknowledged < 2:
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(supervisor.stop)
    second_summary = await second
    acknowledged = first.spans + second_summary.spans
    input_tokens = first.input_tokens + second_summary.input_tokens
    rows = await query(database_url, "select count(*) from model_usage_details")
    prompt = await query(database_url, "select sum(prompt_token_count) from model_usages")
    assert rows == [(acknowledged,)]
    assert prompt == [(input_tokens,)]
    assert sum(len(c.reports) for c in seen) == acknowledged == sum(supervisor.committed)
    assert sum(r.input_token for c in seen for r in c.reports) == input_tokens


async def test_serve_workers_cli_stops_gracefully(
    postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(postgres_url, tmp_path, extra_args=["--workers", "2"]).start()
    summary = await LoadRun(LoadOptions(
        grpc_port=server.grpc_port, http_port=server.http_port, protocol="http",
        duration=120, requests=8, concurrency=8, spans=25, templates=2,
        spread=Spread(models=2, users=2, keys=4),
    )).run()  # fmt: skip
    assert server.stop() == 0
    assert summary.acknowledged == 8
    assert await query(postgres_url, "select count(*) from model_usage_details") == [(200,)]
    assert "200 reports committed by 2 workers" in server.log()


def _totals(port: int) -> dict[str, float]:
    sums: dict[str, float] = {}
    for (name, _labels), value in _scrape(port).items():
        sums[name] = sums.get(name, 0.0) + value
    return sums


async def test_workers_show_one_consistent_set_of_counters(
    postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    metrics_port = free_port()
    prices = tmp_path / "prices.yaml"
    prices.write_text('prices: [{match: {prefix: "model-"}, per_million: {input: 1.5, output: 3}}]')
    config = {"pricing": {"path": str(prices), "builtin": False}}
    server = server_factory(postgres_url, tmp_path, config, extra_args=[
        "--workers", "2", "--metrics-port", str(metrics_port)]).start()  # fmt: skip
    summary = await LoadRun(LoadOptions(
        grpc_port=server.grpc_port, http_port=server.http_port, protocol="grpc",
        duration=120, requests=24, concurrency=8, spans=25, templates=2,
        spread=Spread(models=2, users=3, keys=4),
    )).run()  # fmt: skip
    assert summary.acknowledged == 24
    [(rows, prompt, completion, cost)] = await query(postgres_url, """
        SELECT (SELECT count(*) FROM model_usage_details), sum(prompt_token_count),
               sum(completion_token_count), sum(cost) FROM model_usages""")  # fmt: skip
    assert cost == (Decimal("1.5") * prompt + 3 * completion) / 1_000_000
    assert rows == 24 * 25
    first = await asyncio.to_thread(_totals, metrics_port)
    second = await asyncio.to_thread(_totals, metrics_port)
    for scrape in (first, second):  # the same totals on every scrape: no per-worker resets
        assert scrape["tokenbridge_usage_input_tokens_total"] == prompt == summary.input_tokens
        assert scrape["tokenbridge_usage_output_tokens_total"] == completion
        assert scrape["tokenbridge_usage_requests_total"] == rows
        assert scrape["tokenbridge_reports_committed_total"] == rows
        assert scrape["tokenbridge_reports_accepted_total"] == rows
        assert scrape["tokenbridge_database_errors_total"] == 0
        # The workers' costs reach the one endpoint (a float sum over the series).
        assert scrape["tokenbridge_usage_cost_total"] == pytest.approx(float(cost), rel=1e-12)
        assert "tokenbridge_usage_unpriced_requests_total" not in scrape
        assert scrape["tokenbridge_reports_ignored_total"] == 0
    # A worker's ignored items reach the supervisor's counter too.
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{}, {}, {}]}]}]}
    async with aiohttp.ClientSession() as http, http.post(f"{server.http}/v1/logs",
                                                          json=logs) as response:  # fmt: skip
        assert response.status == 200
    ignored = "tokenbridge_reports_ignored_total"
    for _ in range(50):
        seen = (await asyncio.to_thread(_totals, metrics_port))[ignored]
        if seen:
            break
        await asyncio.sleep(0.1)
    assert seen == 3
    assert server.stop() == 0
