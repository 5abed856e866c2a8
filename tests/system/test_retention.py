"""Retention through the real server and CLI: late reports rejected, prune under load, the
periodic prune inside serve, and a refused change of the rollup time zone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collector.tools.loadgen import LoadOptions, LoadRun
from collector.tools.synthetic import Spread
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from tests.exporters.sql.retention_support import ensure, execute, partition_names, totals
from tests.support import ROOT, Server, free_port, query

OLD_MS = 1_700_000_000_000  # 2023-11-14


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, check=False)  # fmt: skip


def _scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)  # fmt: skip


async def _push(server: Server, body: object) -> tuple[int, Any]:
    url = f"{server.http}/v2/usage/gateway-metrics"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return response.status, await response.json()


async def test_serve_rejects_a_report_older_than_retention(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    port = free_port()
    config = {"retention": {"details_days": 30}, "metrics": {"port": port}}
    server = server_factory(database_url, tmp_path, config).start()
    now_ms = int(time.time() * 1000)
    body = [
        {"model": "m1", "input_token": 100, "output_token": 1, "completed_at": OLD_MS,
         "request_id": "old"},
        {"model": "m1", "input_token": 7, "output_token": 1, "completed_at": now_ms,
         "request_id": "new"},
    ]  # fmt: skip
    status, answer = await _push(server, body)
    first = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()
    assert (status, answer) == (200, {
        "accepted": 1, "rejected": 1, "ignored": 0,
        "message": f"older than retention: day 2023-11-14 is before {first}, the first day kept",
    })  # fmt: skip
    rejected = await asyncio.to_thread(_scrape, port, "tokenbridge_reports_rejected_total")
    assert server.stop() == 0
    assert rejected == 1
    assert await query(database_url, "select source, reason from usage_rejects") == [
        ("gateway_json", answer["message"])
    ]
    assert await totals(database_url, "model_usages") == (1, 7, 1, 1)


def _old_rows_sql(first: date, days: int, per_day: int, prefix: str) -> str:
    return f"""
        insert into model_usage_details (dedup_key, date, model_name, user_id,
            prompt_token_count, completion_token_count, request_count, total_token_count,
            completed, estimated, source, created_at, updated_at)
        select '{prefix}-' || n, date '{first}' + (n % {days}), 'm1', 'u' || (n % 7), n % 100,
            1, 1, n % 100 + 1, true, false, 'otlp_span', now(), now()
        from generate_series(1, {days * per_day}) as n"""


async def test_prune_drops_old_partitions_while_serve_commits_under_load(
    postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    today = datetime.now(UTC).date()
    old_first, kept_first = today - timedelta(days=420), today - timedelta(days=8)
    await ensure(postgres_url, old_first, old_first + timedelta(days=9), "day")
    await ensure(postgres_url, kept_first, today, "day")
    await execute(postgres_url, _old_rows_sql(old_first, 10, 5000, "old"))
    await execute(postgres_url, _old_rows_sql(kept_first, 8, 2000, "kept"))
    kept_where = f"date >= '{kept_first}' and date < '{today}'"
    kept = await totals(postgres_url, where=kept_where)
    config = {"retention": {"details_days": 400, "partition": "day", "interval": 0}}
    server = server_factory(postgres_url, tmp_path, config).start()
    cfg = tmp_path / "prune.yaml"
    cfg.write_text(yaml.safe_dump(config))
    load = LoadRun(LoadOptions(
        grpc_port=server.grpc_port, http_port=server.http_port, protocol="grpc", duration=6,
        requests=0, concurrency=4, spans=200, templates=2, spread=Spread(3, 4, 8),
    ))  # fmt: skip
    running = asyncio.create_task(load.run())
    await asyncio.sleep(1.5)
    started = time.monotonic()
    pruned = await asyncio.to_thread(_cli, "prune", "-c", str(cfg), "--database-url", postgres_url)
    took = time.monotonic() - started
    summary = await running
    assert server.stop() == 0
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.count("removed partition model_usage_details_p") == 10
    assert "removed 50000 rows in all" in pruned.stdout
    assert took < 60
    assert summary.failed == 0 and summary.acknowledged == summary.sent > 0
    names = await partition_names(postgres_url)
    assert not [n for n in names if n.startswith(f"model_usage_details_p{old_first:%Y}")
                and n < f"model_usage_details_p{old_first + timedelta(days=10):%Y%m%d}"]
    assert await totals(postgres_url, where=kept_where) == kept
    spans = await query(postgres_url, f"select count(*) from model_usage_details "
                                      f"where dedup_key not like 'kept-%' and date >= '{today}'")
    assert spans == [(summary.spans,)]


async def test_serve_prunes_on_its_own_and_logs_it(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    engine = create_engine(sqlite_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    old = (datetime.now(UTC).date() - timedelta(days=50)).isoformat()
    for n in range(3):
        await execute(sqlite_url, f"insert into model_usage_details (dedup_key, date, "
                      f"model_name, completed, estimated, source, created_at, updated_at) values"
                      f" ('k{n}', '{old}', 'm1', 1, 0, 'otlp_span', '{old}', '{old}')")
    config = {"retention": {"details_days": 30, "interval": 0.2}}
    server = server_factory(sqlite_url, tmp_path, config).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (await totals(sqlite_url))[0]:
        await asyncio.sleep(0.2)
    assert server.stop() == 0
    assert await totals(sqlite_url) == (0, 0, 0, 0)
    assert f"retention: removed model_usage_details day {old}: 3 rows" in server.log()


async def test_a_changed_time_zone_is_refused_until_confirmed(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server_factory(sqlite_url, tmp_path).start().stop()
    paris = tmp_path / "paris.yaml"
    paris.write_text(yaml.safe_dump({"aggregation": {"timezone": "Europe/Paris"}}))
    refused = _cli("serve", "-c", str(paris), "--database-url", sqlite_url, "--grpc-port", "0",
                   "--http-port", "0", timeout=60)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "tokenbridge: error: aggregation.timezone is 'Europe/Paris' but the stored days are in "
        "'UTC'"
    )
    assert "Traceback" not in refused.stderr
    workers = _cli("serve", "-c", str(paris), "--database-url", sqlite_url, "--grpc-port", "0",
                   "--http-port", "0", "--workers", "2", timeout=60)  # fmt: skip
    assert workers.returncode == 2 and "Traceback" not in workers.stderr
    assert workers.stderr.strip().splitlines()[-1] == refused.stderr.strip().splitlines()[-1]
    confirmed = _cli("migrate", "-c", str(paris), "--database-url", sqlite_url,
                     "--accept-timezone-change")  # fmt: skip
    assert confirmed.returncode == 0, confirmed.stderr
    config = {"aggregation": {"timezone": "Europe/Paris"}}
    server_factory(sqlite_url, tmp_path, config).start().stop()
    stored = await query(sqlite_url, "select value from tokenbridge_settings")
    assert stored == [("Europe/Paris",)]


async def test_prune_and_restore_commands_speak_plainly(sqlite_url: str, tmp_path: Path) -> None:
    unmigrated = _cli("prune", "--database-url", sqlite_url)
    assert unmigrated.returncode == 2 and "Traceback" not in unmigrated.stderr
    assert "run tokenbridge migrate" in unmigrated.stderr
    assert _cli("migrate", "--database-url", sqlite_url).returncode == 0
    missing = _cli("archive", "--restore", str(tmp_path / "nope.csv.gz"),
                   "--database-url", sqlite_url)  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().endswith("nope.csv.gz: no such archive file")
    dry = _cli("prune", "--dry-run", "--database-url", sqlite_url)
    assert (dry.returncode, dry.stdout.splitlines()[-1]) == (0, "would remove 0 rows in all")
    down = _cli("prune", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert "connection refused" in down.stderr.splitlines()[-1]


async def test_two_replicas_pruning_at_once_drop_each_partition_once(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    first = datetime.now(UTC).date() - timedelta(days=450)
    await ensure(postgres_url, first, first + timedelta(days=19), "day")
    await execute(postgres_url, _old_rows_sql(first, 20, 2000, "old"))
    args = ("prune", "--database-url", postgres_url)
    both = await asyncio.gather(*(asyncio.to_thread(_cli, *args) for _ in range(2)))
    assert [done.returncode for done in both] == [0, 0], [d.stderr for d in both]
    dropped = [line for done in both for line in done.stdout.splitlines()
               if line.startswith("removed partition")]  # fmt: skip
    assert len(dropped) == len(set(dropped)) == 20
    for done in both:  # the other replica skipped, or came after and found nothing
        last = done.stdout.splitlines()[-1]
        assert last in ("another replica is pruning now; nothing done",
                        "removed 0 rows in all", "removed 40000 rows in all"), last
    assert await totals(postgres_url) == (0, 0, 0, 0)
