"""Known usage traffic for the metrics, dashboard and collector tests, with its exact totals.

Spans go through the real opentelemetry-sdk OTLP/gRPC exporter; gateway pushes are real HTTP
posts. Every report lands on DAY1 or DAY2 (UTC), except one on EARLY (outside the billing
range), one duplicate push, one rejected push and one agent span that repeats its child.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, date, datetime
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

EARLY = date(2025, 3, 1)
DAY1 = date(2025, 3, 10)
DAY2 = date(2025, 3, 11)


def _ns(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()) * 10**9


def _ms(day: date, hour: int) -> int:
    return _ns(day, hour) // 10**6


# (model, provider, operation, user, key, day, input, output, cached)
SPANS = [
    ("gpt-4o", "openai", "chat", "alice", "key-a", DAY1, 100, 20, 40),
    ("gpt-4o", "openai", "chat", "bob", "key-b", DAY1, 200, 50, 0),
    ("text-embedding-3", "openai", "embeddings", "alice", "key-a", DAY2, 300, 0, 0),
]
GATEWAY = [
    {"model": "qwen3", "provider_name": "gpustack", "operation": "chat_completion",
     "user_id": "carol", "access_key": "key-c", "input_token": 120, "output_token": 30,
     "total_token": 150, "completed": True, "request_id": "gw-1",
     "completed_at": _ms(DAY1, 12)},
    # Estimated: a cut stream; 400 bytes -> 100 input tokens, 7 chunks -> 7 output tokens.
    {"model": "qwen3", "provider_name": "gpustack", "operation": "chat_completion",
     "user_id": "carol", "access_key": "key-c", "completed": False,
     "request_content_bytes": 400, "output_chunk_count": 7, "request_id": "gw-2",
     "completed_at": _ms(DAY2, 9)},
    {"model": "qwen3", "provider_name": "gpustack", "operation": "chat_completion",
     "user_id": "alice", "access_key": "key-a", "input_token": 10, "output_token": 5,
     "completed": True, "request_id": "gw-early", "completed_at": _ms(EARLY, 8)},
]  # fmt: skip
DUPLICATE = GATEWAY[0]
REJECTED = {"model": "qwen3", "input_token": -5, "request_id": "gw-bad"}

# Totals of everything committed (all days).
INPUT = 100 + 200 + 300 + 120 + 100 + 10
OUTPUT = 20 + 50 + 0 + 30 + 7 + 5
CACHED = 40
REQUESTS = 6
ACCEPTED = REQUESTS + 1  # the duplicate push is accepted, then skipped at the commit
DEDUPLICATED = 1
REJECTS = 1
ESTIMATED_REQUESTS = 1
USERS = {"alice", "bob", "carol"}
KEYS = {"key-a", "key-b", "key-c"}


def send_spans(grpc_address: str) -> None:
    exporter = OTLPSpanExporter(endpoint=grpc_address, insecure=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    results: list[SpanExportResult] = []

    class _Recording(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            results.append(exporter.export([span]))

    provider.add_span_processor(_Recording(exporter))
    tracer = provider.get_tracer("tests.traffic")
    for model, vendor, op, user, key, day, inp, out, cached in SPANS:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": op, "gen_ai.request.model": model,
            "gen_ai.provider.name": vendor, "gen_ai.usage.input_tokens": inp,
            "gen_ai.usage.output_tokens": out, "tokenbridge.user.id": user,
            "tokenbridge.api_key.access_key": key,
        }  # fmt: skip
        if cached:
            attributes["gen_ai.usage.cache_read.input_tokens"] = cached
        if op == "chat":
            # An agent span around the call repeats its usage: it must not count.
            agent = tracer.start_span("invoke_agent planner", start_time=_ns(day, 10), attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out})  # fmt: skip
            agent.end(end_time=_ns(day, 11))
        span = tracer.start_span(f"{op} {model}", start_time=_ns(day, 10), attributes=attributes)
        span.end(end_time=_ns(day, 11))
    provider.shutdown()
    assert results == [SpanExportResult.SUCCESS] * len(results), results


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def send_gateway(http: str) -> None:
    url = f"{http}/v2/usage/gateway-metrics"
    assert post(url, GATEWAY) == (200, {"accepted": 3, "rejected": 0, "ignored": 0, "message": ""})
    assert post(url, DUPLICATE)[1]["accepted"] == 1
    status, answer = post(url, REJECTED)
    assert (status, answer["accepted"], answer["rejected"]) == (200, 0, 1)


def send_all(grpc_address: str, http: str) -> None:
    send_spans(grpc_address)
    send_gateway(http)
