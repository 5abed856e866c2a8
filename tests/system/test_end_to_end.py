"""``tokenbridge serve`` as a user runs it, fed by real OTLP clients, read back from SQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry.sdk.metrics import Meter
from opentelemetry.sdk.trace import Tracer
from sqlalchemy import select

from exporters.sql.schema import model_usage_details
from tests.otlp_clients import record_metrics, record_spans, send_metrics, send_spans
from tests.support import Server, query

ROLLUPS = """
    SELECT model_name, user_id, operation, prompt_token_count, completion_token_count,
           prompt_cached_token_count, completion_reasoning_token_count, request_count
    FROM model_usages ORDER BY model_name, user_id
"""


def _chat_traffic(tracer: Tracer) -> None:
    with tracer.start_as_current_span("invoke_agent planner", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 999, "gen_ai.usage.output_tokens": 999}):  # fmt: skip
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                "gen_ai.provider.name": "openai", "user.id": "alice",
                "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
                "gen_ai.usage.cache_read.input_tokens": 100}):  # fmt: skip
            pass
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                "gen_ai.provider.name": "openai", "user.id": "alice",
                "gen_ai.usage.input_tokens": 80, "gen_ai.usage.output_tokens": 20}):  # fmt: skip
            pass
        with tracer.start_as_current_span("embeddings", attributes={
                "gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-emb.3",
                "user.id": "bob", "gen_ai.usage.input_tokens": 64}):  # fmt: skip
            pass


async def test_sdk_spans_over_grpc_and_http_commit_exact_rows_once(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    spans = record_spans(_chat_traffic)
    server = server_factory(database_url, tmp_path).start()
    chat_first, chat_second, embedding, agent = spans
    assert await asyncio.to_thread(
        send_spans, [chat_first, embedding, agent], grpc=server.grpc, gzip=True
    )
    assert await asyncio.to_thread(send_spans, [chat_second], http=server.http, gzip=True)
    # The whole trace again, over the other transport: nothing is counted twice.
    assert await asyncio.to_thread(send_spans, spans, http=server.http)
    assert await asyncio.to_thread(send_spans, spans, grpc=server.grpc)

    assert await query(database_url, ROLLUPS) == [
        ("gpt-4o", "alice", "chat_completion", 200, 50, 100, 0, 2),
        ("text-emb.3", "bob", "embedding", 64, 0, 0, 0, 1),
    ]
    t = model_usage_details
    details = await query(database_url, select(
        t.c.dedup_key, t.c.model_name, t.c.provider_name, t.c.prompt_token_count,
        t.c.total_token_count, t.c.source, t.c.completed, t.c.estimated, t.c.date,
        t.c.completed_at).order_by(t.c.prompt_token_count))  # fmt: skip
    expected = []
    for span, provider in ((embedding, None), (chat_second, "openai"), (chat_first, "openai")):
        ctx = span.get_span_context()
        assert ctx is not None and span.end_time is not None
        ended = datetime.fromtimestamp(span.end_time // 1_000_000 / 1000, UTC)
        expected.append((
            f"{ctx.trace_id:032x}/{ctx.span_id:016x}", span.attributes["gen_ai.request.model"],
            provider, span.attributes["gen_ai.usage.input_tokens"],
            span.attributes["gen_ai.usage.input_tokens"]
            + span.attributes.get("gen_ai.usage.output_tokens", 0),
            "otlp_span", True, False, ended.date(), ended.replace(tzinfo=None),
        ))  # fmt: skip
    assert details == expected
    assert server.stop() == 0


def _genai_metrics(meter: Meter) -> None:
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m1",
            "gen_ai.provider.name": "openai", "user.id": "carol"}  # fmt: skip
    usage.record(100, {**chat, "gen_ai.token.type": "input"})
    usage.record(40, {**chat, "gen_ai.token.type": "output"})
    usage.record(50, {**chat, "gen_ai.token.type": "input"})
    reasoning = meter.create_counter("gen_ai.client.inference.usage.reasoning.output_tokens")
    reasoning.add(7, chat)
    custom = meter.create_counter("app.billing.cached_tokens")
    custom.add(11, {"gen_ai.request.model": "m2"})


async def test_sdk_delta_metrics_commit_exact_rows_once(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"sources": {"genai_metrics": True},
              "mapping": {"counters": {"app.billing.cached_tokens": "input_cached_token"}}}
    server = server_factory(database_url, tmp_path, config).start()
    data = record_metrics(_genai_metrics)
    assert await asyncio.to_thread(send_metrics, data, grpc=server.grpc)
    assert await asyncio.to_thread(send_metrics, data, http=server.http)  # the same points again
    assert await query(database_url, ROLLUPS) == [
        ("m1", "carol", "chat_completion", 150, 47 - 7, 0, 7, 2),
        ("m2", None, None, 0, 0, 11, 0, 0),
    ]
    sources = await query(database_url, "SELECT DISTINCT source FROM model_usage_details")
    assert sources == [("otlp_metric",)]


async def test_genai_metrics_false_counts_and_reads_none(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(sqlite_url, tmp_path, {"sources": {"genai_metrics": False}}).start()

    def without_model(meter: Meter) -> None:
        _genai_metrics(meter)
        usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
        usage.record(9, {"gen_ai.token.type": "input"})  # would be a reject if it were read

    data = record_metrics(without_model)
    assert await asyncio.to_thread(send_metrics, data, http=server.http)
    assert await query(sqlite_url, "SELECT count(*) FROM model_usage_details") == [(0,)]
    assert await query(sqlite_url, "SELECT count(*) FROM usage_rejects") == [(0,)]
