"""Hostile values on both databases: SQL-looking strings land as literal text; values that
used to fail the whole commit (and so every retry of the request) are rejected alone; the
reject table is bounded and readable through ``tokenbridge report --rejects``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

from collector import cli
from tests.support import Server, free_port, query
from tests.system.test_metrics_export import _scrape

INJECTIONS = [
    "'; DROP TABLE model_usages; --",
    "Robert'); DROP TABLE usage_rejects;--",
    '" OR 1=1 --',
    "\\'; SELECT 1; --",
    "%_\\%",
    "名前'--\t\n",
    "$$; DELETE FROM model_usage_details; $$",
]
STRING_KEYS = {
    "provider_name": "tokenbridge.provider.name",
    "provider_type": "tokenbridge.provider.type",
    "user_id": "tokenbridge.user.id",
    "access_key": "tokenbridge.api_key.access_key",
    "organization_id": "tokenbridge.organization.id",
    "request_id": "tokenbridge.request.id",
}
COLUMNS = "model_name, provider_name, provider_type, user_id, access_key, organization_id"
T0 = 1_700_000_000_000_000_000


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    return {"intValue": str(value)}


def _json_span(trace: int, attrs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"traceId": f"{trace:032x}", "spanId": f"{trace:016x}", "name": "chat",
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 10**9),
            "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()],
            **fields}  # fmt: skip


def _traces(*spans: dict[str, Any]) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}).encode()


async def _post(server: Server, path: str, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(
        server.http + path, data=body, headers=headers
    ) as response:
        return response.status, await response.json()


def _attrs(text: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.request.model": text, "gen_ai.usage.input_tokens": 3,
                             "gen_ai.usage.output_tokens": 2}  # fmt: skip
    attrs.update({key: text for key in STRING_KEYS.values()})
    return attrs


async def test_sql_looking_strings_land_as_literal_text_from_every_source(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    metrics_port = free_port()
    config = {"mapping": {"counters": {"app.tokens": "input_token"}},
              "metrics": {"port": metrics_port,
                          "labels": ["model", "provider", "user", "api_key", "organization"]}}
    server = server_factory(database_url, tmp_path, config).start()
    # JSON spans
    spans = [_json_span(i + 1, _attrs(f"json {text}")) for i, text in enumerate(INJECTIONS)]
    assert await _post(server, "/v1/traces", _traces(*spans)) == (200, {})
    # protobuf spans over gRPC
    request = tpb.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i, text in enumerate(INJECTIONS):
        span = scope.spans.add(trace_id=(100 + i).to_bytes(16, "big"),
                               span_id=(100 + i).to_bytes(8, "big"), name="chat")  # fmt: skip
        for key, value in _attrs(f"grpc {text}").items():
            kv = span.attributes.add(key=key)
            if isinstance(value, str):
                kv.value.string_value = value
            else:
                kv.value.int_value = value
    async with grpc.aio.insecure_channel(server.grpc) as channel:
        await tgrpc.TraceServiceStub(channel).Export(request, timeout=10)
    # gateway pushes
    pushes = [{"model": f"gw {text}", "input_token": 3, "output_token": 2,
               **{field: f"gw {text}" for field in STRING_KEYS}}
              for text in INJECTIONS]  # fmt: skip
    status, answer = await _post(server, "/v2/usage/gateway-metrics", json.dumps(pushes).encode())
    assert (status, answer["accepted"]) == (200, len(INJECTIONS))
    # a custom counter point: its attributes are the stream identity
    point = {"asInt": "3", "timeUnixNano": str(T0), "attributes": [
        {"key": k, "value": _value(v)} for k, v in _attrs(f"metric {INJECTIONS[0]}").items()]}
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "app.tokens", "sum": {
        "aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [point]}}]}]}]}
    assert await _post(server, "/v1/metrics", json.dumps(metrics).encode()) == (200, {})

    expected = [
        *((f"{prefix} {text}",) * 6 for prefix in ("json", "grpc", "gw") for text in INJECTIONS),
        (f"metric {INJECTIONS[0]}",) * 6,
    ]
    rows = await query(database_url, f"SELECT {COLUMNS} FROM model_usages ORDER BY model_name")
    assert sorted(rows) == sorted(expected)
    details = await query(database_url, "SELECT model_name, request_id FROM model_usage_details "
                          "WHERE request_id IS NOT NULL")  # fmt: skip
    assert sorted(details) == sorted((row[0], row[0]) for row in expected)
    totals = await query(database_url, "SELECT SUM(prompt_token_count), COUNT(*) FROM model_usages")
    assert totals == [(3 * (3 * len(INJECTIONS) + 1), 3 * len(INJECTIONS) + 1)]
    assert await query(database_url, "SELECT COUNT(*) FROM usage_rejects") == [(0,)]
    # ... and as escaped label values on /metrics, read back unchanged by a Prometheus parser
    scraped = await asyncio.to_thread(_scrape, metrics_port)
    series = {
        tuple(dict(labels)[name] for name in ("model", "provider", "user", "api_key",
                                              "organization")): value
        for (name, labels), value in scraped.items()
        if name == "tokenbridge_usage_input_tokens_total"
    }  # fmt: skip
    assert series == {(row[0], row[1], row[3], row[4], row[5]): 3.0 for row in expected}


async def test_values_that_used_to_poison_the_commit_are_rejected_alone(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"mapping": {"counters": {"app.tokens": "input_token"}}}
    server = server_factory(database_url, tmp_path, config).start()
    big = str(2**63 - 1)
    spans = [
        _json_span(1, {"gen_ai.request.model": "m\ud800", "gen_ai.usage.input_tokens": 1}),
        _json_span(2, {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1},
                   traceId="\ud800" * 32),
        _json_span(3, {"gen_ai.request.model": "big", "gen_ai.usage.input_tokens": big}),
        _json_span(4, {"gen_ai.request.model": "big", "gen_ai.usage.input_tokens": big}),
        _json_span(5, {"gen_ai.request.model": "digits", "gen_ai.usage.input_tokens": "١٢"}),
        _json_span(6, {"gen_ai.request.model": "digits", "gen_ai.usage.input_tokens": "1_0"}),
        _json_span(7, {"gen_ai.request.model": "ok", "gen_ai.usage.input_tokens": " 12 "}),
        _json_span(8, {"gen_ai.request.model": "m\x00", "gen_ai.usage.input_tokens": 1}),
        _json_span(9, {"gen_ai.request.model": "ok", "gen_ai.usage.input_tokens": 1},
                   endTimeUnixNano=str(2**64 - 1)),
    ]  # fmt: skip
    status, answer = await _post(server, "/v1/traces", _traces(*spans))
    assert (status, answer["partialSuccess"]["rejectedSpans"]) == (200, "7")
    assert "not valid Unicode text" in answer["partialSuccess"]["errorMessage"]

    def point(value: str, time_ns: int, temporality: int) -> dict[str, Any]:
        attrs = [{"key": "gen_ai.request.model", "value": {"stringValue": "pt"}}]
        return {"name": "app.tokens", "sum": {"aggregationTemporality": temporality,
                "isMonotonic": True, "dataPoints": [{"asInt": value, "attributes": attrs,
                "startTimeUnixNano": str(time_ns), "timeUnixNano": str(time_ns)}]}}  # fmt: skip

    metrics = [point("5", 2**63 + 5, 2), point("5", 2**64 - 1, 1), point(big, T0, 1),
               point(big, T0 + 1, 1), point("4", T0 + 2, 1)]  # fmt: skip
    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": metrics}]}]}
    status, answer = await _post(server, "/v1/metrics", json.dumps(doc).encode())
    assert (status, answer["partialSuccess"]["rejectedDataPoints"]) == (200, "4")

    pushes = [{"model": "gw\ud800", "input_token": 1}, {"model": "gw", "input_token": big},
              {"model": "gw", "input_token": 1, "request_count": big},
              {"model": "gw", "input_token": 1, "x": json.loads("[" * 100 + "]" * 100)},
              {"model": "gw", "input_token": 1, **{f"k{i}": i for i in range(300)}},
              {"model": "gw", "input_token": 9, "request_id": "fine"}]  # fmt: skip
    status, answer = await _post(server, "/v2/usage/gateway-metrics", json.dumps(pushes).encode())
    assert (status, answer["accepted"], answer["rejected"]) == (200, 1, 5)

    rows = await query(database_url, "SELECT model_name, prompt_token_count, request_count, "
                       "date FROM model_usages ORDER BY model_name, date")  # fmt: skip
    # the span ending at 2**64-1 ns is storable: it lands on its day in 2554
    assert [(*row[:3], str(row[3])[:4]) for row in rows] == [
        ("gw", 9, 1, str(datetime.now(UTC).year)), ("ok", 12, 1, "2023"),
        ("ok", 1, 1, "2554"), ("pt", 4, 0, "2023")]  # fmt: skip
    assert await query(database_url, "SELECT COUNT(*) FROM usage_rejects") == [(16,)]
    assert "Traceback" not in server.log()


async def test_deeply_nested_json_is_a_400_not_a_crash(
    server_factory: type[Server], sqlite_url: str, tmp_path: Path
) -> None:
    server = server_factory(sqlite_url, tmp_path).start()
    deep: dict[str, Any] = {"stringValue": "x"}
    for _ in range(300):
        deep = {"arrayValue": {"values": [deep]}}
    span = _json_span(1, {"gen_ai.usage.input_tokens": 1})
    span["attributes"].append({"key": "gen_ai.request.model", "value": deep})
    status, answer = await _post(server, "/v1/traces", _traces(span))
    assert (status, answer["message"]) == (
        400, "malformed OTLP/JSON: attribute value nested deeper than 64 levels")
    nested = b"[" * 100_000 + b"]" * 100_000
    for path in ("/v1/traces", "/v2/usage/gateway-metrics"):
        status, answer = await _post(server, path, nested)
        assert status == 400
        assert answer["message"].startswith("malformed JSON")
    assert await query(sqlite_url, "SELECT COUNT(*) FROM model_usages") == [(0,)]
    assert "Traceback" not in server.log()


async def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``tokenbridge`` in this process (its own event loop, on a thread)."""
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, list(args)) == 0
    return capsys.readouterr().out


async def test_reject_table_keeps_the_newest_rows_and_the_report_lists_them(
    database_url: str, server_factory: type[Server], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = {"limits": {"max_reject_rows": 100}}
    server = server_factory(database_url, tmp_path, config).start()
    url = "/v2/usage/gateway-metrics"
    first = [{"model": f"r{i:03d}", "input_token": -1} for i in range(80)]
    second = [{"model": f"r{i:03d}", "input_token": -1} for i in range(80, 130)]
    for batch in (first, second):
        status, answer = await _post(server, url, json.dumps(batch).encode())
        assert (status, answer["rejected"]) == (200, len(batch))
    kept = await query(database_url, "SELECT item FROM usage_rejects ORDER BY id")
    models = [json.loads(item)["model"] for (item,) in kept]
    # newest 100 rows: the whole second request and the last 50 rows of the first (one
    # commit inserts its rejects in key order, so which 50 of the first is not list order)
    assert len(models) == 100
    assert set(models[50:]) == {f"r{i:03d}" for i in range(80, 130)}
    assert set(models[:50]) < {f"r{i:03d}" for i in range(80)}
    server.stop()

    today = datetime.now(UTC).date()
    common = ["report", "--rejects", "--database-url", database_url]
    rows = json.loads(await _cli(capsys, *common, "--format", "json", "--from", today.isoformat()))
    assert len(rows) == 100
    assert rows[0]["source"] == "gateway_json"
    assert {row["reason"] for row in rows} == {"input_token: negative count -1"}
    assert sorted(row["item"] for row in rows)[-1] == '{"model":"r129","input_token":-1}'
    csv_lines = (await _cli(capsys, *common, "--format", "csv")).splitlines()
    assert csv_lines[0] == "received_at,source,reason,item"
    assert len(csv_lines) == 101
    table = (await _cli(capsys, *common)).splitlines()
    assert table[0].split() == ["received_at", "source", "reason", "item"]
    assert len(table) == 102
    yesterday = (today - timedelta(days=1)).isoformat()
    assert json.loads(await _cli(capsys, *common, "--format", "json", "--to", yesterday)) == []
