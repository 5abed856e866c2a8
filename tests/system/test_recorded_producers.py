"""Real output of the instrumentation libraries people use, through ``tokenbridge serve``.

Each fixture is one recorded export of a library (``tests/fixtures/record.py``) for calls to a
local mock API whose usage is fixed: OpenAI chat 1200 prompt tokens (1024 cached), 50
completion (20 reasoning); embeddings 8; text completion 7 + 9; Anthropic messages 12 uncached
+ 4000 cache-read + 300 cache-write input, 80 output. The rows must say exactly that, whatever
the library, except where the library itself lost a count (noted per row).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client.parser import text_string_to_metric_families

from tests import producer_fixtures
from tests.support import Server, free_port, query

Row = tuple[str, str, int, int, int, int, int]
CHAT = ("gpt-4o-mini", "chat_completion", 1200, 50, 1024, 0, 20)
CHAT_NO_REASONING = ("gpt-4o-mini", "chat_completion", 1200, 50, 1024, 0, 0)
EMBED = ("text-embedding-3-small", "embedding", 8, 0, 0, 0, 0)
CLAUDE = ("claude-sonnet-4-5", "chat_completion", 4312, 80, 4000, 300, 0)

NOT_USAGE = "not a usage span"
REPEATED = "repeated by another library's span"

# fixture -> (rows in call order, ignored spans by reason)
EXPECTED: dict[str, tuple[list[Row], dict[str, int]]] = {
    # openai-v2 reports neither cached nor reasoning tokens.
    "openai-v2-2.4b0/openai": ([("gpt-4o-mini", "chat_completion", 1200, 50, 0, 0, 0)] * 2
                               + [EMBED], {}),
    # Streamed: no reasoning count.
    "openllmetry-0.62.4/openai": ([CHAT, CHAT_NO_REASONING, EMBED], {}),
    # The Anthropic SDK's own spans (ignored) beside OpenLLMetry's; OpenLLMetry's streamed
    # output adds message_start's output_tokens (1) to the final 80.
    "openllmetry-0.62.4/anthropic": (
        [CLAUDE, ("claude-sonnet-4-5", "chat_completion", 4312, 81, 4000, 300, 0)], {REPEATED: 2}),
    # OpenInference names the response model on OpenAI chat spans.
    "openinference-0.1.66/openai": (
        [("gpt-4o-mini-2024-07-18", "chat_completion", 1200, 50, 1024, 0, 20)] * 2 + [EMBED], {}),
    "openinference-0.1.66/anthropic": ([CLAUDE, CLAUDE], {REPEATED: 2}),
    # httpx client spans are not usage; no reasoning count.
    "openlit-1.45.0/openai": ([CHAT_NO_REASONING, CHAT_NO_REASONING, EMBED], {NOT_USAGE: 3}),
    # Input without cache, corrected; the streamed call reports no cache at all.
    "openlit-1.45.0/anthropic": (
        [CLAUDE, ("claude-sonnet-4-5", "chat_completion", 12, 80, 0, 0, 0)], {NOT_USAGE: 2}),
    # The span of a streamed request ends before its stream: its usage is on the log span.
    "logfire-5.4.0/openai": ([CHAT_NO_REASONING, CHAT_NO_REASONING, EMBED], {NOT_USAGE: 1}),
    "logfire-5.4.0/anthropic": ([CLAUDE, CLAUDE], {NOT_USAGE: 1}),
    # completion, embedding, text_completion, acompletion, aembedding; raw_gen_ai_request
    # children are not usage.
    "litellm-1.110.2/openai": ([
        CHAT, EMBED, ("gpt-3.5-turbo-instruct", "completion", 7, 9, 0, 0, 0), CHAT, EMBED,
    ], {NOT_USAGE: 5}),
    # completion, acompletion: input includes the cache; cache counts from the usage object.
    "litellm-1.110.2/anthropic": ([CLAUDE, CLAUDE], {NOT_USAGE: 2}),
    # The proxy: OpenAI-format calls to gpt-4o-mini (then streamed), the embedding model and
    # claude-sonnet-4-5; auth, router, fastapi and request spans around each are not usage.
    "litellm-proxy-1.108.5/proxy": ([CHAT, CHAT, EMBED, CLAUDE], {NOT_USAGE: 45}),
    # The SDK's own spans alone: ignored by default (instrumentation libraries repeat them).
    "anthropic-sdk-2.14.0/anthropic": ([], {REPEATED: 2}),
}  # fmt: skip

DETAILS = """
    SELECT model_name, operation, prompt_token_count, completion_token_count,
           prompt_cached_token_count, prompt_cache_write_token_count,
           completion_reasoning_token_count
    FROM model_usage_details ORDER BY started_at, dedup_key
"""


def test_every_recorded_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == producer_fixtures.all_names()
    for name in EXPECTED:
        fixture = producer_fixtures.load(name)
        library, version = name.split("/")[0].rsplit("-", 1)
        assert (fixture["library"], fixture["version"]) == (library, version)


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}  # fmt: skip


def _ignored(port: int) -> dict[str, float]:
    """``tokenbridge_reports_ignored_total`` by reason (non-zero ones)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == "tokenbridge_reports_ignored_total" and sample.value
            and "reason" in sample.labels}  # fmt: skip


async def _post(url: str, **kwargs: Any) -> dict[str, Any]:
    """POST OTLP/JSON; the answer (``{}``: nothing rejected)."""
    async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        return dict(await response.json())


async def _post_protobuf(url: str, request: Message) -> int:
    """POST an OTLP protobuf request; how many items its answer says were rejected."""
    headers = {"Content-Type": "application/x-protobuf"}
    async with aiohttp.ClientSession() as http, http.post(
        url, data=request.SerializeToString(), headers=headers
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.read()
    if url.endswith("/v1/traces"):
        traces = ExportTraceServiceResponse.FromString(body)
        return int(traces.partial_success.rejected_spans)
    return int(ExportMetricsServiceResponse.FromString(body).partial_success.rejected_data_points)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recorded_spans_store_what_the_calls_used(
    name: str, sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    fixture = producer_fixtures.load(name)
    rows, ignored = EXPECTED[name]
    sent = len(producer_fixtures.spans(fixture))
    assert sent == len(rows) + sum(ignored.values())
    port = free_port()
    server = server_factory(sqlite_url, tmp_path, {"metrics": {"port": port}}).start()
    # As an OTLP/HTTP JSON exporter sends it, then again as protobuf: counted once.
    answer = await _post(f"{server.http}/v1/traces", json=fixture["traces"])
    assert answer == {}, answer  # no partial_success: nothing rejected
    counts = _scrape(port)
    assert counts["tokenbridge_reports_accepted_total"] == len(rows)
    assert counts["tokenbridge_reports_rejected_total"] == 0
    assert _ignored(port) == ignored
    request = producer_fixtures.protobuf_traces(fixture)
    assert await _post_protobuf(f"{server.http}/v1/traces", request) == 0
    counts = _scrape(port)
    assert counts["tokenbridge_reports_deduplicated_total"] == len(rows)
    assert counts["tokenbridge_reports_committed_total"] == len(rows)
    assert await query(sqlite_url, DETAILS) == rows


async def test_all_producers_on_postgresql_and_sqlite(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    """Every fixture as protobuf (the producer rules apply on both decoders)."""
    server = server_factory(database_url, tmp_path).start()
    for name in sorted(EXPECTED):
        request = producer_fixtures.protobuf_traces(producer_fixtures.load(name))
        assert await _post_protobuf(f"{server.http}/v1/traces", request) == 0
    totals = await query(database_url, """
        SELECT model_name, operation, SUM(prompt_token_count), SUM(completion_token_count),
               SUM(prompt_cached_token_count), SUM(prompt_cache_write_token_count),
               SUM(request_count)
        FROM model_usages GROUP BY model_name, operation ORDER BY model_name, operation""")
    assert [tuple(int(v) if not isinstance(v, str) else v for v in row) for row in totals] == [
        ("claude-sonnet-4-5", "chat_completion", 10 * 4312 + 12, 11 * 80 + 1, 10 * 4000,
         10 * 300, 11),
        ("gpt-3.5-turbo-instruct", "completion", 7, 9, 0, 0, 1),
        ("gpt-4o-mini", "chat_completion", 12 * 1200, 12 * 50, 10 * 1024, 0, 12),
        ("gpt-4o-mini-2024-07-18", "chat_completion", 2400, 100, 2048, 0, 2),
        ("text-embedding-3-small", "embedding", 8 * 8, 0, 0, 0, 8),
    ]  # fmt: skip
    # The one call that named its user (the proxy's llm.user, from the request's "user").
    assert await query(database_url, """
        SELECT user_id, model_name, prompt_token_count FROM model_usage_details
        WHERE user_id IS NOT NULL""") == [("alice", "gpt-4o-mini", 1200)]


async def test_a_configured_rule_replaces_the_default_one(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    """Without its correction, OpenLIT's Anthropic input is stored as sent (12), and the
    Anthropic SDK's own spans count once the rule ignoring them is replaced."""
    server = server_factory(sqlite_url, tmp_path, {"mapping": {"producer_rules": [
        {"scope": "openlit.instrumentation.anthropic"},
        {"scope": "com.anthropic.sdk.python"},
    ]}}).start()  # fmt: skip
    for name in ("openlit-1.45.0/anthropic", "openinference-0.1.66/anthropic",
                 "anthropic-sdk-2.14.0/anthropic"):
        traces = producer_fixtures.load(name)["traces"]
        assert await _post(f"{server.http}/v1/traces", json=traces) == {}
    assert await query(sqlite_url, DETAILS) == [
        # OpenInference's span wraps the SDK's (recorded first): each call now counts twice.
        CLAUDE, CLAUDE, CLAUDE, CLAUDE,
        ("claude-sonnet-4-5", "chat_completion", 12, 80, 4000, 300, 0),
        ("claude-sonnet-4-5", "chat_completion", 12, 80, 0, 0, 0),
        # The SDK's own spans, recorded last, now count: cache included, as OTel says.
        CLAUDE, CLAUDE,
    ]


# fixture -> rollups from its GenAI metrics alone: (model, operation, prompt, completion,
# requests). No library puts cached tokens on its metrics.
METRIC_ROLLUPS: dict[str, list[tuple[str, str | None, int, int, int]]] = {
    # The streamed call records no gen_ai.client.token.usage point at all.
    "openai-v2-2.4b0/openai": [("gpt-4o-mini", "chat_completion", 1200, 50, 1),
                               ("text-embedding-3-small", "embedding", 8, 0, 1)],
    # Only the response model on the points.
    "openllmetry-0.62.4/openai": [("gpt-4o-mini-2024-07-18", "chat_completion", 2400, 100, 2),
                                  ("text-embedding-3-small", "embedding", 8, 0, 1)],
    # No operation name on the Anthropic points; input includes the cache (2 x 4312).
    "openllmetry-0.62.4/anthropic": [("claude-sonnet-4-5-20250929", None, 8624, 161, 2)],
    "openlit-1.45.0/openai": [("gpt-4o-mini", "chat_completion", 2400, 100, 2),
                              ("text-embedding-3-small", "embedding", 8, 0, 1)],
    # OpenLIT's Anthropic input leaves the cache out here too, and the points carry no cache
    # counts to correct it with: 2 x 12 instead of 2 x 4312. Count OpenLIT from its spans.
    "openlit-1.45.0/anthropic": [("claude-sonnet-4-5", "chat_completion", 24, 160, 2)],
}  # fmt: skip
SPANS_ONLY = {"openinference-0.1.66/openai", "openinference-0.1.66/anthropic",
              "logfire-5.4.0/openai", "logfire-5.4.0/anthropic", "litellm-1.110.2/openai",
              "litellm-1.110.2/anthropic", "anthropic-sdk-2.14.0/anthropic",
              "litellm-proxy-1.108.5/proxy"}


def test_which_producers_send_genai_metrics() -> None:
    for name in EXPECTED:
        names = {m["name"] for rm in producer_fixtures.load(name)["metrics"].get(
            "resourceMetrics", []) for sm in rm["scopeMetrics"] for m in sm["metrics"]}
        assert ("gen_ai.client.token.usage" in names) == (name not in SPANS_ONLY), name
    assert sorted(METRIC_ROLLUPS) == sorted(set(EXPECTED) - SPANS_ONLY)


@pytest.mark.parametrize("name", sorted(METRIC_ROLLUPS))
async def test_recorded_metrics_alone(
    name: str, sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    port = free_port()
    server = server_factory(sqlite_url, tmp_path, {
        "sources": {"spans": False, "genai_metrics": True}, "metrics": {"port": port}}).start()
    fixture = producer_fixtures.load(name)
    points = sum(len(m["histogram"]["dataPoints"])
                 for rm in fixture["metrics"]["resourceMetrics"] for sm in rm["scopeMetrics"]
                 for m in sm["metrics"] if m["name"] == "gen_ai.client.token.usage")
    # OTLP/JSON, then the same cumulative points again as protobuf: a repeat adds nothing.
    assert await _post(f"{server.http}/v1/metrics", json=fixture["metrics"]) == {}
    request = producer_fixtures.protobuf_metrics(fixture)
    assert await _post_protobuf(f"{server.http}/v1/metrics", request) == 0
    counts = _scrape(port)
    # Each point of each send is a cumulative sample read; the repeat yields zero deltas.
    assert counts["tokenbridge_reports_accepted_total"] == 2 * points
    assert counts["tokenbridge_reports_rejected_total"] == 0
    # The library's other metrics (durations, choices, costs, ...) are not read.
    other = sum(len((m.get("histogram") or m.get("sum") or m.get("gauge") or {})["dataPoints"])
                for rm in fixture["metrics"]["resourceMetrics"] for sm in rm["scopeMetrics"]
                for m in sm["metrics"] if m["name"] != "gen_ai.client.token.usage")  # fmt: skip
    assert _ignored(port) == {"unused metric": 2 * other}
    rollups = await query(sqlite_url, """
        SELECT model_name, operation, prompt_token_count, completion_token_count, request_count
        FROM model_usages ORDER BY model_name""")
    assert rollups == METRIC_ROLLUPS[name]
