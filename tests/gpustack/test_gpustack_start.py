"""Starting in the GPUStack layout: one clear line when GPUStack's schema is not there, and a
catalog that follows GPUStack's tables within seconds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.gpustack.support import GpuStack, push
from tests.gpustack.test_gpustack_layout import CONFIG, post
from tests.support import ROOT, Server, query

pytestmark = [pytest.mark.gpustack, pytest.mark.postgres]


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENBRIDGE_DATABASE__LAYOUT": "gpustack"}
    return subprocess.run([sys.executable, "-m", "collector", "serve", "--http-port", "0",
                           "--grpc-port", "0", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_refuses_a_database_without_gpustack_schema(postgres_url: str, workers: str) -> None:
    done = serve("--database-url", postgres_url, "--workers", workers)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "tokenbridge: error: database.layout gpustack: no GPUStack schema in this database (no "
        "alembic_version table); point database.url at GPUStack's database, or start GPUStack "
        "once to create it")
    assert "Traceback" not in done.stderr
    tables = await query(postgres_url, "SELECT count(*) FROM information_schema.tables "
                                       "WHERE table_schema = 'public'")  # fmt: skip
    assert tables == [(0,)]


async def test_refuses_an_unsupported_gpustack_revision(
    gpustack_db: tuple[str, dict[str, int]],
) -> None:
    url, _ids = gpustack_db
    conn = await asyncpg.connect(url)
    await conn.execute("UPDATE alembic_version SET version_num = 'b1c2d3e4f5a6'")
    await conn.close()
    done = serve("--database-url", url)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "tokenbridge: error: database.layout gpustack: GPUStack schema revision b1c2d3e4f5a6 "
        "is not supported (supported: a7e2c9d4f681 (GPUStack 2.3))")
    assert await query(url, "SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name LIKE 'tokenbridge%'") == [(0,)]  # fmt: skip


def test_refuses_sqlite(tmp_path: Path) -> None:
    done = serve("--database-url", f"sqlite:///{tmp_path / 'gpustack.db'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "tokenbridge: error: database.layout gpustack needs GPUStack's PostgreSQL database "
        "(database.url is sqlite)")


async def test_a_user_and_key_added_in_gpustack_count_within_seconds(
    gpustack: GpuStack, gpustack_db: tuple[str, dict[str, int]],
    server_factory: type[Server], tmp_path: Path,
) -> None:  # fmt: skip
    url, ids = gpustack_db
    server = server_factory(url, tmp_path, CONFIG).start()
    at = int(time.time() * 1000)
    known = {"model_id": ids["qwen3"], "model_route_id": ids["r_qwen"]}
    carol_id = max(v for k, v in ids.items() if k in ("admin", "alice", "bob", "acme")) + 1
    early = push("qwen3", at, (5, 1, 6, 0), user_id=carol_id, access_key="ak-carol",
                 request_id="carol-1", **known)  # fmt: skip
    answer = await post(server, early)
    assert (answer["accepted"], answer["rejected"]) == (0, 1)
    assert answer["message"] == f"gpustack: user '{carol_id}' not found in principals"

    added = await asyncio.to_thread(gpustack.run, "seed", url, {
        "principals": [{"ref": "carol", "name": "carol"}],
        "api_keys": [{"ref": "k_carol", "name": "carol key", "access_key": "ak-carol",
                      "user": "carol", "owner": "carol"}]})  # fmt: skip
    assert added["carol"] == carol_id
    seen_at = time.monotonic()
    later = push("qwen3", at + 1, (7, 2, 9, 0), user_id=carol_id, access_key="ak-carol",
                 request_id="carol-2", **known)  # fmt: skip
    while (answer := await post(server, later))["accepted"] == 0:
        assert time.monotonic() - seen_at < 5, answer
        await asyncio.sleep(0.2)
    assert (answer["accepted"], answer["rejected"]) == (1, 0)
    assert server.stop() == 0
    assert await query(url, """
        SELECT user_name, api_key_name, consumer_principal_id, prompt_token_count,
               request_count FROM model_usages""") == [("carol", "carol key", carol_id, 7, 1)]


async def test_cumulative_counters_keep_their_state_beside_gpustack_tables(
    gpustack_db: tuple[str, dict[str, int]], server_factory: type[Server], tmp_path: Path
) -> None:
    """A cumulative custom counter: its stream state lives in ``tokenbridge_metric_streams``,
    so a repeated point counts nothing and a restart between points loses nothing."""
    url, ids = gpustack_db
    config = {**CONFIG, "mapping": {"counters": {"app.tokens": "input_token"}}}
    start = time.time_ns() - 60 * 10**9
    attrs = [{"key": k, "value": {"stringValue": str(v)}} for k, v in (
        ("gen_ai.request.model", "qwen3"), ("tokenbridge.model.id", ids["qwen3"]),
        ("tokenbridge.user.id", ids["alice"]), ("tokenbridge.model_route.id", ids["r_qwen"]))]

    def body(value: int, offset_s: int) -> bytes:
        point = {"asInt": str(value), "startTimeUnixNano": str(start),
                 "timeUnixNano": str(start + offset_s * 10**9), "attributes": attrs}
        return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": "app.tokens", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
                                          "dataPoints": [point]}}]}]}]}).encode()  # fmt: skip

    async def send(server: Server, data: bytes) -> None:
        async with aiohttp.ClientSession() as http, http.post(
            f"{server.http}/v1/metrics", data=data, headers={"Content-Type": "application/json"}
        ) as response:
            assert (response.status, await response.json()) == (200, {})

    server = server_factory(url, tmp_path, config).start()
    await send(server, body(10, 1))
    await send(server, body(10, 1))  # the same point again
    assert server.stop() == 0
    server = server_factory(url, tmp_path, config).start()
    await send(server, body(15, 2))
    assert server.stop() == 0
    assert await query(url, """SELECT user_id, model_route_name, prompt_token_count
                               FROM model_usages""") == [(ids["alice"], "qwen3", 15)]
    assert await query(url, "SELECT prompt_token_count FROM model_usage_details "
                            "ORDER BY completed_at") == [(10,), (5,)]  # fmt: skip
    assert await query(url, "SELECT value FROM tokenbridge_metric_streams") == [(15,)]
