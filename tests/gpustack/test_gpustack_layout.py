"""``database.layout: gpustack`` against GPUStack 2.3 itself: its schema from its own
migrations, its catalog rows from its own models, its own read functions and its own collector
as the oracle of the seed's rules."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import Tracer

from tests.gpustack.support import GpuStack, gateway_reports, span_reports
from tests.otlp_clients import record_spans, send_spans
from tests.support import ROOT, Server, query

pytestmark = [pytest.mark.gpustack, pytest.mark.postgres]

CONFIG = {"database": {"layout": "gpustack", "catalog_refresh": 0.5}}
AT = int((time.time() - 3600) * 1000)  # an hour ago: today or yesterday, within the dashboard
DAY = datetime.fromtimestamp(AT / 1000, UTC).date()


async def post(server: Server, body: Any) -> dict[str, Any]:
    url = f"{server.http}/v2/usage/gateway-metrics"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


def send_otlp(server: Server, reports: list[dict[str, Any]]) -> None:
    def build(tracer: Tracer) -> None:
        for r in reports:
            span = tracer.start_span("chat qwen3", start_time=r["started_at"] * 1_000_000,
                                     attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": r["model"],
                "gen_ai.usage.input_tokens": r["input_token"],
                "gen_ai.usage.output_tokens": r["output_token"],
                "tokenbridge.model.id": r["model_id"], "tokenbridge.user.id": r["user_id"],
                "tokenbridge.model_route.id": r["model_route_id"]})  # fmt: skip
            span.end(end_time=r["completed_at"] * 1_000_000)

    assert send_spans(record_spans(build), http=server.http)


async def send_all(server: Server, ids: dict[str, int]) -> list[dict[str, Any]]:
    """Every push one by one (the plugin posts one object per call), then the spans; the
    gateway answers."""
    pushes, _resend = gateway_reports(ids, AT)
    answers = [await post(server, body) for body in pushes]
    await asyncio.to_thread(send_otlp, server, span_reports(ids, AT))
    return answers


USAGE_COLUMNS = (
    "user_id, user_name, model_id, model_name, model_route_id, model_route_name, provider_id, "
    "provider_name, provider_type, cluster_name, api_key_id, api_key_name, access_key, "
    "api_key_is_custom, owner_principal_id, consumer_principal_id, consumer_name, "
    "consumer_principal_kind, CAST(date AS text), prompt_token_count, completion_token_count, "
    "prompt_cached_token_count, request_count, CAST(operation AS text)"
)


async def usage_rows(url: str) -> list[tuple[Any, ...]]:
    rows = await query(url, f"SELECT {USAGE_COLUMNS} FROM model_usages")
    return sorted(rows, key=repr)


async def gpustack_schema(url: str) -> list[tuple[Any, ...]]:
    """GPUStack's tables as the catalog describes them (columns, types, defaults, indexes),
    and its alembic revision."""
    columns = await query(url, """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
          AND table_name NOT LIKE 'tokenbridge%' ORDER BY table_name, ordinal_position""")
    indexes = await query(url, """
        SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'
          AND tablename NOT LIKE 'tokenbridge%' ORDER BY tablename, indexname""")
    version = await query(url, "SELECT version_num FROM alembic_version")
    return [*columns, *indexes, *version]


async def test_gpustack_reads_exactly_what_tokenbridge_wrote(
    gpustack: GpuStack, gpustack_db: tuple[str, dict[str, int]],
    server_factory: type[Server], tmp_path: Path,
) -> None:  # fmt: skip
    url, ids = gpustack_db
    before = await gpustack_schema(url)
    server = server_factory(url, tmp_path, CONFIG).start()
    answers = await send_all(server, ids)
    assert server.stop() == 0

    # Accepted, rejected: the unknown user is kept with its reason, never dropped in silence.
    assert [(a["accepted"], a["rejected"]) for a in answers] == [
        (1, 0), (1, 0), (1, 0), (1, 0), (1, 0), (0, 1), (1, 0), (1, 0), (1, 0)]
    assert answers[5]["message"] == "gpustack: user '999' not found in principals"
    rejects = await query(url, "SELECT source, reason FROM tokenbridge_rejects ORDER BY source")
    assert rejects == [("gateway_json", "gpustack: user '999' not found in principals"),
                       ("otlp_span", "gpustack: model id 77 not found")]  # fmt: skip
    assert "3 duplicates skipped" not in server.log() and "1 duplicates skipped" in server.log()
    # GPUStack's tables untouched in shape; tokenbridge's own history beside them.
    assert await gpustack_schema(url) == before
    assert await query(url, "SELECT version_num FROM tokenbridge_alembic_version") == [
        ("gpustack_0001_bookkeeping",)]

    a, b, acme = ids["alice"], ids["bob"], ids["acme"]
    day = DAY.isoformat()
    q, lora, bge, ds = ids["r_qwen"], ids["r_lora"], ids["r_bge"], ids["r_ds"]
    assert await usage_rows(url) == sorted([
        (a, "alice", ids["qwen3"], "qwen3", q, "qwen3", None, None, None, "gpu-a", ids["k_alice"],
         "ci key", "ak-alice", False, 1, acme, "acme", "org", day, 100, 20, 40, 1, None),
        (b, "bob", ids["qwen3"], "qwen3", q, "qwen3", None, None, None, "gpu-a", None, None,
         None, None, 1, b, "bob", "user", day, 50 + 100, 10 + 10, 0, 3, None),
        (b, "bob", ids["qwen3"], "qwen3", lora, "qwen3:sql-lora", None, None, None, "gpu-a",
         None, None, None, None, 1, b, "bob", "user", day, 30, 5, 0, 1, None),
        (a, "alice", None, "ds-chat", ds, "ds-chat", ids["ds"], "deepseek", "deepseek", None,
         None, None, None, None, 1, acme, "acme", "org", day, 70, 30, 0, 1, None),
        (a, "alice", ids["bge"], "bge-m3", bge, "bge-m3", None, None, None, "gpu-a",
         ids["k_alice"], "ci key", "ak-alice", False, 1, acme, "acme", "org", day, 64, 0, 0, 1,
         None),
        (a, "alice", ids["qwen3"], "qwen3", q, "qwen3", None, None, None, "gpu-a", None, None,
         None, None, 1, a, "alice", "user", day, 30, 10, 0, 2, "CHAT_COMPLETION"),
    ], key=repr)  # fmt: skip
    details = await query(url, """
        SELECT request_id, prompt_token_count, completion_token_count, completed, operation,
               model_route_name, ttft_ms FROM model_usage_details
        ORDER BY completed_at, prompt_token_count""")
    assert details == [
        ("req-a1", 100, 20, True, None, "qwen3", None), ("req-fb", 0, 0, True, None, "qwen3", None),
        ("req-fb", 50, 10, True, None, "qwen3", None),
        ("req-lora", 30, 5, True, None, "qwen3:sql-lora", None),
        ("req-ds", 70, 30, True, None, "ds-chat", None),
        ("req-cut", 100, 10, False, None, "qwen3", None),
        ("req-emb", 64, 0, True, None, "bge-m3", None),
        (None, 10, 5, True, "CHAT_COMPLETION", "qwen3", None),
        (None, 20, 5, True, "CHAT_COMPLETION", "qwen3", None),
    ]  # fmt: skip

    everything = ["user", "api_key", "route", "date"]
    # tokenbridge's own report reads GPUStack's table in this layout, rejects included.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENBRIDGE_DATABASE__LAYOUT": "gpustack"}
    report = subprocess.run(
        [sys.executable, "-m", "collector", "report", "--database-url", url, "--by", "user_id",
         "--format", "json"], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert [(r["user_id"], r["prompt_tokens"], r["requests"]) for r in json.loads(report.stdout)
            ] == [(a, 264, 5), (b, 180, 4)]  # fmt: skip
    rejected = subprocess.run(
        [sys.executable, "-m", "collector", "report", "--database-url", url, "--rejects",
         "--format", "csv"], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert len(rejected.stdout.splitlines()) == 3

    read = await asyncio.to_thread(gpustack.run, "read", url, {
        "start": (DAY - timedelta(days=1)).isoformat(),
        "end": (DAY + timedelta(days=1)).isoformat(), "dashboard": True, "views": [
            {"user": ids["admin"], "scope": "all", "group_by": everything},
            {"user": b, "scope": "self", "group_by": ["api_key", "route", "date"]},
            {"user": a, "scope": "self", "group_by": ["route"]},
        ]})  # fmt: skip
    breakdown = {name: _view(answer) for name, answer in read["breakdown"].items()}
    total = (444, 85, 40, 529, 9, 4)  # input, output, cached, total, requests, routes called
    assert breakdown[f"all:{ids['admin']}/user"] == (total, [
        ("alice", 264, 60, 5), ("bob", 180, 25, 4)])
    # The key view leaves out rows without a key, as GPUStack's UI does.
    assert breakdown[f"all:{ids['admin']}/api_key"] == ((164, 20, 40, 184, 2, 2), [
        ("alice / ci key", 164, 20, 2)])
    assert breakdown[f"all:{ids['admin']}/route"] == (total, [
        ("qwen3", 280, 50, 6), ("ds-chat", 70, 30, 1), ("bge-m3", 64, 0, 1),
        ("qwen3:sql-lora", 30, 5, 1)])
    assert breakdown[f"all:{ids['admin']}/date"] == (total, [(day, 444, 85, 9)])
    # Bob's own view: his rows (consumer = his own principal); Alice's key bills Acme.
    bob_total = (180, 25, 0, 205, 4, 2)
    assert breakdown[f"self:{b}/route"] == (bob_total, [
        ("qwen3", 150, 20, 3), ("qwen3:sql-lora", 30, 5, 1)])
    assert breakdown[f"self:{b}/date"] == (bob_total, [(day, 180, 25, 4)])
    assert breakdown[f"self:{b}/api_key"] == ((0, 0, 0, 0, 0, 0), [])
    assert breakdown[f"self:{a}/route"] == ((30, 10, 0, 40, 2, 1), [("qwen3", 30, 10, 2)])

    stats = read["stats"]
    assert sum(p["value"] for p in stats["prompt_token_history"]) == 444
    assert sum(p["value"] for p in stats["completion_token_history"]) == 85
    assert sum(p["value"] for p in stats["api_request_history"]) == 9
    top = {u["username"]: (u["prompt_token_count"], u["completion_token_count"])
           for u in read["summary"]["top_users"]}  # fmt: skip
    assert top == {"alice": (264, 60), "bob": (180, 25)}
    assert sorted((u["model_name"], u["request_count"]) for u in read["usages"]) == sorted(
        [("qwen3", 1), ("qwen3", 3), ("qwen3", 1), ("ds-chat", 1), ("bge-m3", 1), ("qwen3", 2)])


def _view(answer: dict[str, Any]) -> tuple[tuple[int, ...], list[tuple[Any, ...]]]:
    s = answer["summary"]
    summary = (s["input_tokens"], s["output_tokens"], s["input_cached_tokens"],
               s["total_tokens"], s["api_requests"], s["models_called"])  # fmt: skip
    items = []
    for item in answer["items"]:
        group = answer["group_by"][0]
        label = item["date"]["label"] if group == "date" else item[group]["label"]
        items.append((label, item["input_tokens"], item["output_tokens"], item["api_requests"]))
    items.sort(key=lambda i: (-i[1], i[0]))
    return summary, items


async def test_rows_equal_gpustack_collectors_on_the_same_reports(
    gpustack: GpuStack, gpustack_db: tuple[str, dict[str, int]],
    oracle_db: tuple[str, dict[str, int]], server_factory: type[Server], tmp_path: Path,
) -> None:  # fmt: skip
    """GPUStack 2.3's own accumulate + flush on a second database is the oracle: the same
    reports (the resend removed: GPUStack would count it twice) give the same rows."""
    url, ids = gpustack_db
    oracle_url, oracle_ids = oracle_db
    assert oracle_ids == ids
    server = server_factory(url, tmp_path, CONFIG).start()
    await send_all(server, ids)
    assert server.stop() == 0
    pushes, resend = gateway_reports(ids, AT)
    reports = [r for n, r in enumerate(pushes) if n != resend] + span_reports(ids, AT)
    oracle_rows = await asyncio.to_thread(gpustack.run, "oracle", oracle_url, reports)
    assert len(oracle_rows) == 6
    ours = await usage_rows(url)
    theirs = await usage_rows(oracle_url)
    assert ours == theirs
