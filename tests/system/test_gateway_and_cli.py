"""GPUStack gateway pushes, the report command, the README example and config errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import ROOT, Server, query


async def push(server: Server, body: Any) -> tuple[int, Any]:
    url = f"{server.http}/v2/usage/gateway-metrics"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return response.status, await response.json()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)  # fmt: skip


STAMP = 1_700_000_000_000  # 2023-11-14T22:13:20Z, 2023-11-15 06:13:20 in Asia/Shanghai


async def test_gateway_pushes_are_counted_once_with_seed_rules(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"aggregation": {"timezone": "Asia/Shanghai", "tokens_per_output_chunk": 2}}
    server = server_factory(database_url, tmp_path, config).start()
    real = {"model": "qwen3", "input_token": 100, "output_token": 20, "total_token": 120,
            "input_cached_token": 60, "user_id": 7, "model_id": 3, "access_key": "ak-7",
            "completed": True, "started_at": STAMP - 900, "completed_at": STAMP,
            "request_id": "req-1"}  # fmt: skip
    fallback_zero = {**real, "input_token": 0, "output_token": 0, "total_token": 0,
                     "input_cached_token": 0}  # fmt: skip
    partial = {"model": "qwen3", "user_id": 7, "model_id": 3, "access_key": "ak-7",
               "completed": False, "request_content_bytes": 400, "output_chunk_count": 10,
               "completed_at": STAMP + 1}  # fmt: skip
    one = {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""}
    # A fallback pair: two requests in GPUStack, the real one's tokens.
    assert await push(server, fallback_zero) == (200, one)
    assert await push(server, real) == (200, one)
    lots = "input_token: expected a count, got 'lots'"
    # The real one resent (accepted, counted once), a cut stream, a bad item.
    assert await push(server, [real, partial, {"model": "qwen3", "input_token": "lots"}]) == (
        200, {"accepted": 2, "rejected": 1, "ignored": 0, "message": lots})  # fmt: skip
    assert await push(server, partial) == (200, one)

    assert await query(database_url, """
        SELECT model_name, model_id, user_id, access_key, prompt_token_count,
               completion_token_count, prompt_cached_token_count, request_count,
               estimated_request_count FROM model_usages""") == [
        ("qwen3", 3, "7", "ak-7", 100 + 100, 20 + 20, 60, 3, 1)]  # fmt: skip
    dates = await query(database_url, "SELECT DISTINCT CAST(date AS VARCHAR(10)) FROM model_usages")
    assert dates == [("2023-11-15",)]
    details = await query(database_url, """
        SELECT request_id, prompt_token_count, completion_token_count, total_token_count,
               request_content_bytes, output_chunk_count, request_count FROM model_usage_details
        ORDER BY COALESCE(request_id, ''), prompt_token_count""")  # fmt: skip
    assert details == [(None, 100, 20, 120, 400, 10, 1), ("req-1", 0, 0, 0, 0, 0, 1),
                       ("req-1", 100, 20, 120, 0, 0, 1)]  # fmt: skip
    assert await query(database_url, "SELECT count(*) FROM usage_rejects") == [(1,)]

    report = cli("report", "--database-url", database_url, "--by", "date,model_name,user_id",
                 "--format", "csv")  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines() == [
        "date,model_name,user_id,prompt_tokens,completion_tokens,total_tokens,cached_tokens,"
        "cache_write_tokens,reasoning_tokens,requests,estimated_requests,unpriced_requests,cost",
        "2023-11-15,qwen3,7,200,40,240,60,0,0,3,1,3,",  # qwen3 has no price: no cost, 3 unpriced
    ]
    as_json = cli("report", "--database-url", database_url, "--by", "access_key",
                  "--from", "2023-11-15", "--to", "2023-11-15", "--format", "json")  # fmt: skip
    assert json.loads(as_json.stdout) == [{
        "access_key": "ak-7", "prompt_tokens": 200, "completion_tokens": 40, "total_tokens": 240,
        "cached_tokens": 60, "cache_write_tokens": 0, "reasoning_tokens": 0, "requests": 3,
        "estimated_requests": 1, "unpriced_requests": 3, "cost": None}]  # fmt: skip
    empty = cli("report", "--database-url", database_url, "--from", "2023-11-16", "--format",
                "json")  # fmt: skip
    assert json.loads(empty.stdout) == []


async def test_readme_example_shows_up_in_the_report(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    body = re.search(r"-d '(\{.*?\})'", readme, re.S)
    assert body is not None
    server = server_factory(sqlite_url, tmp_path).start()
    assert (await push(server, json.loads(body.group(1))))[0] == 200
    result = cli("report", "--database-url", sqlite_url, "--by", "model_name,user_id")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model_name", "user_id", "prompt_tokens", "completion_tokens",
                                "total_tokens", "cached_tokens", "cache_write_tokens",
                                "reasoning_tokens", "requests", "estimated_requests",
                                "unpriced_requests", "cost"]  # fmt: skip
    # qwen3 has no price (neither a price file nor genai-prices): unpriced, cost left empty.
    assert lines[2].split() == ["qwen3", "7", "120", "30", "150", "0", "0", "0", "1", "0", "1"]


def test_invalid_configuration_names_the_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("commit:\n  max_batch: 0\nreceivers:\n  grpcport: 1\n")
    result = cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "commit.max_batch" in result.stderr and "receivers.grpcport" in result.stderr
    zone = tmp_path / "zone.yaml"
    zone.write_text("aggregation:\n  timezone: Mars/Olympus\n")
    result = cli("serve", "--config", str(zone))
    assert (result.returncode, "aggregation.timezone" in result.stderr) == (2, True)
    env_result = subprocess.run(
        [sys.executable, "-m", "collector", "serve"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOKENBRIDGE_COMMIT__FLUSH_INTERVAL": "-1"},
        cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert env_result.returncode == 2 and "commit.flush_interval" in env_result.stderr


async def test_catalog_validates_and_snapshots_names(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "models: [{id: 1, name: qwen3, cluster_id: 4}]\n"
        "users: [{id: 7, name: alice}]\n"
        "api_keys: [{access_key: ak-7, id: 30, name: ci key}]\n"
        "clusters: [{id: 4, name: gpu-a}]\n"
    )
    server = server_factory(sqlite_url, tmp_path, {"catalog": {"path": str(catalog)}}).start()
    good = {"model": "qwen3", "model_id": 1, "user_id": 7, "access_key": "ak-7",
            "input_token": 5, "output_token": 1, "completed": True}  # fmt: skip
    deleted = {**good, "model_id": 2, "request_id": "gone"}
    reason = "catalog: model id 2 not found"
    assert await push(server, [good, deleted]) == (
        200, {"accepted": 1, "rejected": 1, "ignored": 0, "message": reason})  # fmt: skip
    assert await query(sqlite_url, "SELECT user_name, api_key_id, api_key_name, cluster_name, "
                       "prompt_token_count FROM model_usages") == [
        ("alice", 30, "ci key", "gpu-a", 5)]  # fmt: skip
    assert await query(sqlite_url, "SELECT cluster_id, cluster_name FROM model_usage_details") == [
        (4, "gpu-a")]  # fmt: skip
    rejects = await query(sqlite_url, "SELECT source, reason, item FROM usage_rejects")
    assert [(source, reason) for source, reason, _ in rejects] == [
        ("gateway_json", "catalog: model id 2 not found")]  # fmt: skip
    assert json.loads(rejects[0][2]) == deleted  # kept as received: it can be replayed


async def _logged(server: Server, text: str, count: int, timeout: float = 20.0) -> None:
    """Wait (bounded) until ``text`` appears ``count`` times in the server's log."""
    deadline = asyncio.get_running_loop().time() + timeout
    while server.log().count(text) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} not logged {count}x"
        await asyncio.sleep(0.05)


async def test_a_changed_catalog_is_reloaded_and_a_broken_one_ignored(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    alice = "models: [{id: 1, name: qwen3}]\nusers: [{id: 7, name: alice}]\n"
    catalog.write_text(alice)
    config = {"catalog": {"path": str(catalog), "reload_interval": 0.1}}
    server = server_factory(sqlite_url, tmp_path, config).start()
    call = {"model": "qwen3", "model_id": 1, "user_id": 8, "input_token": 3, "completed": True}
    unknown = "catalog: user '8' not found"
    assert await push(server, {**call, "request_id": "r1"}) == (
        200, {"accepted": 0, "rejected": 1, "ignored": 0, "message": unknown})  # fmt: skip

    catalog.write_text(alice.replace("alice}]", "alice}, {id: 8, name: bob}]"))
    await _logged(server, "catalog reloaded", 1)
    assert await push(server, {**call, "request_id": "r2"}) == (
        200, {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""})  # fmt: skip

    catalog.write_text("users: [{id: 9, name: carol, age: 3}]\n")  # unknown field: invalid
    await _logged(server, "catalog not reloaded", 1)
    assert await push(server, {**call, "request_id": "r3"}) == (
        200, {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""})  # fmt: skip

    assert await query(sqlite_url, "SELECT request_id, user_name, prompt_token_count "
                       "FROM model_usage_details ORDER BY request_id") == [
        ("r2", "bob", 3), ("r3", "bob", 3)]  # fmt: skip
    assert await query(sqlite_url, "SELECT reason FROM usage_rejects") == [(unknown,)]
