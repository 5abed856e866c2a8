"""``tokenbridge rejects replay``: rejects are kept as received (JSON) and, once the operator
fixed their cause (here a catalog edit), count exactly once however often replay runs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from exporters.sql import schema
from exporters.sql.engine import normalize_url
from tests.support import ROOT, Server, query

NS = 1_700_000_000_000_000_000
MODEL = {"key": "gen_ai.request.model", "value": {"stringValue": "qwen3"}}
BOB = {"key": "user.id", "value": {"stringValue": "9"}}
SPANS = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
    "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
    "name": "chat qwen3", "startTimeUnixNano": str(NS), "endTimeUnixNano": str(NS + 10**9),
    "attributes": [MODEL, BOB, {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                   {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "300"}},
                   {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "20"}}],
}]}]}]}  # fmt: skip
POINTS = {"resourceMetrics": [{"resource": {"attributes": []}, "scopeMetrics": [{
    "scope": {"name": "app"}, "metrics": [{"name": "app.tokens", "unit": "{token}", "sum": {
        "aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [{
            "attributes": [MODEL, BOB], "startTimeUnixNano": str(NS),
            "timeUnixNano": str(NS + 10**9), "asInt": "4000"}]}}]}]}]}  # fmt: skip
PUSHES = [
    {"model": "qwen3", "input_token": 50, "output_token": 5, "user_id": 9, "completed": True,
     "request_id": "bob-1"},
    {"model": "qwen3", "model_id": 2, "input_token": 7, "user_id": 7, "completed": True,
     "request_id": "no-such-model"},
]  # fmt: skip
TOTALS = "SELECT user_id, CAST(sum(prompt_token_count) AS INTEGER), CAST(sum(request_count) " \
         "AS INTEGER) FROM model_usages GROUP BY user_id ORDER BY user_id"  # fmt: skip


async def _post(server: Server, path: str, body: object) -> object:
    async with aiohttp.ClientSession() as http, http.post(server.http + path, json=body) as r:
        assert r.status == 200
        return await r.json()


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, cwd=ROOT,
        timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _replay(config: Path, url: str) -> str:
    return _cli("rejects", "replay", "-c", str(config), "--database-url", url)


async def test_replay_after_a_catalog_edit_counts_each_reject_once(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("models: [{id: 1, name: qwen3}]\nusers: [{id: 7, name: alice}]\n")
    config = {"catalog": {"path": str(catalog)}, "mapping": {"counters": {
        "app.tokens": "input_token"}}}  # fmt: skip
    server = server_factory(database_url, tmp_path, config).start()
    unknown = "catalog: user '9' not found"
    assert await _post(server, "/v1/traces", SPANS) == {
        "partialSuccess": {"rejectedSpans": "1", "errorMessage": unknown}}
    assert await _post(server, "/v1/metrics", POINTS) == {
        "partialSuccess": {"rejectedDataPoints": "1", "errorMessage": unknown}}
    assert await _post(server, "/v2/usage/gateway-metrics", PUSHES) == {
        "accepted": 0, "rejected": 2, "ignored": 0,
        "message": f"{unknown}; catalog: model id 2 not found"}  # fmt: skip
    assert server.stop() == 0
    kept = await query(database_url, "SELECT source, item FROM usage_rejects ORDER BY source")
    assert [(s, json.loads(item)) for s, item in kept if s == "gateway_json"] == [
        ("gateway_json", PUSHES[0]), ("gateway_json", PUSHES[1])]  # fmt: skip
    assert {s for s, _ in kept} == {"gateway_json", "otlp_span", "otlp_metric"}
    assert await query(database_url, TOTALS) == []

    catalog.write_text("models: [{id: 1, name: qwen3}]\n"
                       "users: [{id: 7, name: alice}, {id: 9, name: bob}]\n")  # fmt: skip
    config_path = server.config_path
    assert _replay(config_path, database_url) == (
        "replayed 4 rejects: 3 now count (3 newly committed, 0 counted before), 1 still "
        "rejected, 0 ignored\nstill rejected:\n  1  catalog: model id 2 not found\n")
    expected = [("9", 4350, 2)]  # span + push (the counter point counts tokens only)
    assert await query(database_url, TOTALS) == expected
    # Named by the catalog of the replay, and groupable by those names.
    by_name = json.loads(_cli("report", "--database-url", database_url, "--by",
                              "user_name,api_key_name,model_route_name,cluster_name",
                              "--format", "json"))  # fmt: skip
    assert [(r["user_name"], r["api_key_name"], r["model_route_name"], r["cluster_name"],
             r["prompt_tokens"]) for r in by_name] == [("bob", None, None, None, 4350)]
    assert _replay(config_path, database_url) == (
        "replayed 1 rejects: 0 now count (0 newly committed, 0 counted before), 1 still "
        "rejected, 0 ignored\nstill rejected:\n  1  catalog: model id 2 not found\n")
    assert await query(database_url, TOTALS) == expected
    # A replay cut before it removed the rows it counted: the rows come back, and the
    # dedup keys keep them from counting twice.
    again = [{"reject_key": source[:16], "received_at": datetime.now(UTC).replace(tzinfo=None),
              "source": source, "reason": unknown, "item": item} for source, item in kept
             if source != "gateway_json" or json.loads(item)["request_id"] == "bob-1"]
    engine = create_async_engine(normalize_url(database_url))
    async with engine.begin() as conn:
        await conn.execute(insert(schema.usage_rejects), again)
    await engine.dispose()
    assert _replay(config_path, database_url) == (
        "replayed 4 rejects: 3 now count (0 newly committed, 3 counted before), 1 still "
        "rejected, 0 ignored\nstill rejected:\n  1  catalog: model id 2 not found\n")
    assert await query(database_url, TOTALS) == expected
    assert await query(database_url, "SELECT reason FROM usage_rejects") == [
        ("catalog: model id 2 not found",)]
