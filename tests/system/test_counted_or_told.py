"""Every item a sender sends ends accepted, rejected or ignored, and both sides can see which:
gateway pushes as GPUStack counts them, bad bodies refused, OTLP logs answered, ignored
items counted by reason on the bridge's metrics endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToDict
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Tracer

from collector.model import Ignored
from tests.otlp_clients import record_metrics, record_spans, send_metrics, send_spans
from tests.support import Server, query
from tests.system.producers.drive import counts, serve_with_metrics

STAMP = 1_700_000_000_000
ROLLUP = "SELECT sum(prompt_token_count), sum(completion_token_count), sum(request_count), " \
         "sum(estimated_request_count) FROM model_usages"  # fmt: skip


async def push(server: Server, body: Any) -> tuple[int, Any]:
    url = f"{server.http}/v2/usage/gateway-metrics"
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=data,
                                                         headers=headers) as response:  # fmt: skip
        return response.status, await response.json()


def answer(accepted: int, rejected: int = 0, ignored: int = 0, message: str = "") -> Any:
    return 200, {"accepted": accepted, "rejected": rejected, "ignored": ignored,
                 "message": message}  # fmt: skip


def _serve(factory: type[Server], url: str, tmp_path: Path,
           config: dict[str, Any] | None = None) -> tuple[Server, int]:  # fmt: skip
    return serve_with_metrics(factory, url, tmp_path, config)


async def test_every_gateway_push_is_a_request_as_gpustack_counts_it(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server, port = _serve(server_factory, database_url, tmp_path)
    base = {"model": "qwen3", "user_id": 7, "completed_at": STAMP}
    no_usage = {**base, "input_token": 0, "output_token": 0, "completed": True}
    cut = {**base, "completed": False, "request_content_bytes": 40, "output_chunk_count": 5}
    zero = {**base, "input_token": 0, "output_token": 0, "completed": True, "request_id": "r-1"}
    real = {**base, "input_token": 90, "output_token": 30, "completed": True, "request_id": "r-1"}
    # A call that ended with no usage chunk: one request, no tokens (GPUStack does not
    # estimate a completed one); a stream cut before usage: estimated by the seed's rules.
    assert await push(server, no_usage) == answer(1)
    assert await push(server, cut) == answer(1)
    assert await query(database_url, ROLLUP) == [(10, 5, 2, 1)]
    # The fallback pair: two requests and the real one's tokens.
    assert await push(server, zero) == answer(1)
    assert await push(server, real) == answer(1)
    assert await query(database_url, ROLLUP) == [(100, 35, 4, 1)]
    # Identical resends of each (keys in another order): accepted again, counted once.
    resends = [dict(reversed(body.items())) for body in (no_usage, cut, zero, real)]
    assert await push(server, resends) == answer(4)
    assert await query(database_url, ROLLUP) == [(100, 35, 4, 1)]
    rows = await query(database_url, "SELECT count(*) FROM model_usage_details "
                                     "WHERE request_id = 'r-1'")  # fmt: skip
    assert rows == [(2,)]
    scraped = counts(port)
    assert (scraped["accepted"], scraped["rejected"]) == (8, 0)
    assert not [key for key in scraped if key.startswith("ignored")]


async def test_a_gateway_body_that_is_not_objects_is_refused_and_a_bad_model_rejected(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server, _port = _serve(server_factory, sqlite_url, tmp_path)
    for body in ("qwen3", 5, [1], [{"model": "qwen3", "input_token": 1}, "more"], None):
        status, refusal = await push(server, body)
        assert status == 400, body
        assert "expected a JSON object or a list of objects" in refusal["message"]
    assert await push(server, {"model": 5}) == answer(
        0, 1, message="model: expected a string, got int")
    assert await push(server, []) == answer(0)
    assert await query(sqlite_url, "SELECT count(*) FROM model_usage_details") == [(0,)]
    assert await query(sqlite_url, "SELECT reason FROM usage_rejects") == [
        ("model: expected a string, got int",)]


async def test_a_source_turned_off_answers_its_items_as_ignored(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"sources": {"gateway": False, "spans": False}, "log": {"level": "DEBUG"}}
    server, port = _serve(server_factory, sqlite_url, tmp_path, config)
    assert await push(server, [{"model": "q", "input_token": 3}] * 2) == answer(0, ignored=2)
    assert "ignored 2 items of a request: 2 gateway pushes not counted (sources.gateway: " \
        "false)" in server.log()  # fmt: skip
    spans = record_spans(lambda tracer: _chat(tracer, 2))
    assert send_spans(spans, grpc=server.grpc)
    assert counts(port) == {"accepted": 0, "rejected": 0,
                            f"ignored: {Ignored.GATEWAY_OFF}": 2,
                            f"ignored: {Ignored.SPANS_OFF}": 2}  # fmt: skip


def _chat(tracer: Tracer, calls: int) -> None:
    for n in range(calls):
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                      "gen_ai.usage.input_tokens": 10 + n, "gen_ai.usage.output_tokens": 1}
        tracer.start_span("chat m", attributes=attributes).end()


def _mixed(tracer: Tracer) -> None:
    """Two usage spans, an agent span around them, an HTTP span and a span with a bad
    count."""
    agent = tracer.start_span("invoke_agent", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 21})  # fmt: skip
    _chat(tracer, 2)
    agent.end()
    tracer.start_span("GET /", attributes={"http.request.method": "GET"}).end()
    tracer.start_span("chat m", attributes={"gen_ai.request.model": "m",
                                            "gen_ai.usage.input_tokens": -1}).end()


async def test_otlp_items_ignored_are_counted_by_reason_and_partial_success_is_rejects(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server, port = _serve(server_factory, sqlite_url, tmp_path)
    spans = record_spans(_mixed)
    url = f"{server.http}/v1/traces"
    async with aiohttp.ClientSession() as http:
        body = _trace_json(spans)
        async with http.post(url, json=body) as response:
            assert response.status == 200
            assert await response.json() == {"partialSuccess": {
                "rejectedSpans": "1",
                "errorMessage": "gen_ai.usage.input_tokens: negative count -1"}}  # fmt: skip

    def gauges(meter: Any) -> None:
        meter.create_gauge("process.memory").set(1.0)  # not usage: unused
        meter.create_counter("http.requests").add(3)  # not usage: unused
        meter.create_histogram("gen_ai.client.token.usage").record(
            5, {"gen_ai.request.model": "m", "gen_ai.token.type": "input"})

    assert send_metrics(record_metrics(gauges), grpc=server.grpc)
    assert await query(sqlite_url, "SELECT sum(prompt_token_count) FROM model_usages") == [
        (10 + 11 + 5,)]  # fmt: skip
    assert counts(port) == {
        "accepted": 2 + 1, "rejected": 1,
        f"ignored: {Ignored.REPEATS_CHILDREN}": 1, f"ignored: {Ignored.NOT_USAGE_SPAN}": 1,
        f"ignored: {Ignored.UNUSED_METRIC}": 2,
    }  # fmt: skip


def _trace_json(spans: Any) -> dict[str, Any]:
    return MessageToDict(encode_spans(spans))


def _log_records(count: int) -> list[Any]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "openlit-app"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("openlit.otel.events")
    for n in range(count):
        logger.emit(LogRecord(body=f"gen_ai.content.prompt {n}", severity_text="INFO"))
    provider.shutdown()
    return list(memory.get_finished_logs())


async def test_otlp_logs_are_answered_as_otlp_expects_and_counted_as_ignored(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server, port = _serve(server_factory, sqlite_url, tmp_path)
    records = _log_records(3)
    assert GrpcLogs(endpoint=server.grpc, insecure=True).export(records) is \
        LogRecordExportResult.SUCCESS  # fmt: skip
    http = HttpLogs(endpoint=f"{server.http}/v1/logs")
    assert http.export(records) is LogRecordExportResult.SUCCESS
    # OTLP/JSON as well: answered with an empty ExportLogsServiceResponse.
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "a"}},
                                                            {"body": {"stringValue": "b"}}]}]}]}
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.http}/v1/logs", json=doc) as response:  # fmt: skip
        assert (response.status, await response.json()) == (200, {})
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.http}/v1/logs", data=b"\xff\xff",
            headers={"Content-Type": "application/x-protobuf"}) as response:  # fmt: skip
        assert response.status == 400
    assert counts(port) == {"accepted": 0, "rejected": 0,
                            f"ignored: {Ignored.LOG_RECORD}": 3 + 3 + 2}  # fmt: skip
    assert await query(sqlite_url, "SELECT count(*) FROM model_usage_details") == [(0,)]
