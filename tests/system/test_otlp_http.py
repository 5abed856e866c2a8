"""Raw OTLP/HTTP bodies: JSON and protobuf, gzip, partial success, rejects, delta points."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.support import Server, query

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"key": key, "value": {"stringValue": value}}
    return {"key": key, "value": {"intValue": str(value)}}


def json_span(span_id: str, **attrs: Any) -> dict[str, Any]:
    return {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": "chat",
            "kind": 3, "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 2 * 10**9),
            "attributes": [attr(k.replace("_", ".", 1) if k.startswith("gen_") else k, v)
                           for k, v in attrs.items()]}  # fmt: skip


def traces_doc(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": [attr("service.name", "gw")]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}]}


async def test_json_traces_partial_success_and_rejects(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(database_url, tmp_path).start()
    doc = traces_doc(
        {**json_span("eee19b7ec3c1b171"), "attributes": [
            attr("gen_ai.request.model", "llama.3"), attr("gen_ai.usage.input_tokens", 10),
            attr("gen_ai.usage.output_tokens", 4), attr("tokenbridge.user.id", "u1")]},
        {**json_span("eee19b7ec3c1b172"), "attributes": [
            attr("gen_ai.request.model", "llama.3"), attr("gen_ai.usage.input_tokens", -5)]},
        {**json_span("eee19b7ec3c1b173"), "attributes": [attr("http.route", "/health")]},
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(f"{server.http}/v1/traces", json=doc) as response:
                assert response.status == 200
                assert response.content_type == "application/json"
                body = await response.json()
    reason = "gen_ai.usage.input_tokens: negative count -5"
    assert body == {"partialSuccess": {"rejectedSpans": "1", "errorMessage": reason}}
    assert await query(database_url, "SELECT model_name, user_id, prompt_token_count, "
                       "completion_token_count, request_count, date FROM model_usages") == [
        ("llama.3", "u1", 10, 4, 1, _date("2023-11-14", database_url))]  # fmt: skip
    rejects = await query(database_url, "SELECT source, reason FROM usage_rejects")
    assert rejects == [("otlp_span", "gen_ai.usage.input_tokens: negative count -5")]


def _date(iso: str, url: str) -> Any:
    from datetime import date

    return iso if url.startswith("sqlite") else date.fromisoformat(iso)


def _pb_request(count: int) -> ExportTraceServiceRequest:
    spans = []
    for i in range(count):
        spans.append(Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=(i + 1).to_bytes(8, "big"), name="chat",
            start_time_unix_nano=T0, end_time_unix_nano=T0 + 10**9,
            attributes=[
                KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
                KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="m")),
                KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=i + 1)),
                KeyValue(key="gen_ai.usage.output_tokens", value=AnyValue(int_value=2)),
            ]))  # fmt: skip
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )


async def test_gzip_protobuf_and_json_metrics(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"mapping": {"counters": {"gateway.tokens.in": "input_token"}}}
    server = server_factory(sqlite_url, tmp_path, config).start()
    body = gzip.compress(_pb_request(50).SerializeToString())
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    metrics = {"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [{
        "name": "gateway.tokens.in", "unit": "{token}",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [
            {"attributes": [attr("gen_ai.request.model", "m")], "asInt": "1000",
             "startTimeUnixNano": str(T0), "timeUnixNano": str(T0 + 60 * 10**9)},
            {"attributes": [attr("gen_ai.request.model", "m")], "asDouble": 24.0,
             "startTimeUnixNano": str(T0 + 60 * 10**9), "timeUnixNano": str(T0 + 120 * 10**9)},
        ]}}]}]}]}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.http}/v1/traces", data=body, headers=headers) as response:
            assert response.status == 200
            assert response.content_type == "application/x-protobuf"
            parsed = ExportTraceServiceResponse.FromString(await response.read())
            assert parsed.partial_success.rejected_spans == 0
        for _ in range(2):
            async with http.post(f"{server.http}/v1/metrics", json=metrics) as response:
                assert response.status == 200 and await response.json() == {}
        async with http.post(f"{server.http}/v1/traces", data=b"\x0a\xff",
                             headers={"Content-Type": "application/x-protobuf"}) as response:
            assert response.status == 400
        async with http.post(f"{server.http}/v1/traces", data=b"{",
                             headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400
            assert (await response.json())["message"].startswith("malformed JSON")
        async with http.post(f"{server.http}/v1/traces", data=b"x",
                             headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415
    assert await query(sqlite_url, "SELECT operation, prompt_token_count, completion_token_count, "
                       "request_count FROM model_usages ORDER BY operation") == [
        (None, 1000 + 24, 0, 0), ("chat_completion", sum(range(1, 51)), 100, 50)]  # fmt: skip
    assert await query(sqlite_url, "SELECT source, count(*) FROM model_usage_details "
                       "GROUP BY source ORDER BY source") == [
        ("otlp_metric", 2), ("otlp_span", 50)]  # fmt: skip


async def test_health_and_readiness(sqlite_url: str, server_factory: type[Server],
                                    tmp_path: Path) -> None:  # fmt: skip
    server = server_factory(sqlite_url, tmp_path).start()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http}/healthz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with http.get(f"{server.http}/readyz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ready"})
