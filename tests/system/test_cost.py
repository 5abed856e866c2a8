"""Cost end to end: a day across a price change, the builtin table, an unknown model; the
same exact totals in SQL, in ``tokenbridge report`` and on ``/metrics``."""

from __future__ import annotations

import csv
import io
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from genai_prices import Usage, calc_price
from prometheus_client.parser import text_string_to_metric_families

from exporters.sql.money import text, to_amount
from tests.support import Server, free_port, query
from tests.system.test_gateway_and_cli import cli, push

DAY = datetime(2026, 3, 2, tzinfo=UTC)
H = 3_600_000
T0 = int(DAY.timestamp() * 1000)
PRICES = """
currency: USD
prices:
  - model: chat-a
    from: "2026-03-01T00:00:00Z"
    per_million: {input: 1.25, output: 2.5}
  - model: chat-a
    from: "2026-03-02T16:00:00Z"
    per_million: {input: 3, cached_input: 0.3, output: 4.125}
"""


def _push(request_id: str, model: str, at: int, inp: int, out: int, cached: int = 0,
          user: int = 7) -> dict[str, Any]:  # fmt: skip
    return {"model": model, "input_token": inp, "output_token": out, "total_token": inp + out,
            "input_cached_token": cached, "user_id": user, "access_key": f"ak-{user}",
            "completed": True, "completed_at": at, "request_id": request_id}  # fmt: skip


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def builtin_cost(model: str, inp: int, out: int, at: int) -> Decimal:
    """genai-prices' own answer, the oracle for the builtin table."""
    when = datetime.fromtimestamp(at / 1000, UTC)
    usage = Usage(input_tokens=inp, output_tokens=out)
    return calc_price(usage, model, genai_request_timestamp=when).total_price


async def test_a_day_across_a_price_change_is_priced_once_per_request(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    metrics_port = free_port()
    config = {"pricing": {"path": str(prices)}, "metrics": {"port": metrics_port}}
    server = server_factory(database_url, tmp_path, config).start()
    before = _push("a1", "chat-a", T0 + 10 * H, 1000, 500, cached=200)
    edge = _push("a2", "chat-a", T0 + 16 * H - 1, 1000, 500)
    after = _push("a3", "chat-a", T0 + 16 * H, 1000, 500, cached=200, user=8)
    mini = _push("b1", "gpt-4o-mini", T0 + 12 * H, 1_000_000, 100_000)
    unknown = _push("c1", "mystery-model-xyz", T0 + 13 * H, 10, 10)
    assert await push(server, [before, edge, after]) == (
        200, {"accepted": 3, "rejected": 0, "ignored": 0, "message": ""})  # fmt: skip
    # Duplicate delivery: the same requests again, alone and in a batch with new ones.
    assert await push(server, after) == (
        200, {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""})  # fmt: skip
    assert await push(server, [before, mini, unknown, mini]) == (
        200, {"accepted": 4, "rejected": 0, "ignored": 0, "message": ""})  # fmt: skip

    # Worked by hand: before 16:00 input 1.25, cached falls back to input, output 2.5;
    # from 16:00 input 3, cached 0.3, output 4.125 (per million).
    cost_before = Decimal("0.00125") + Decimal("0.00125")  # 1000 in (200 cached), 500 out
    cost_edge = Decimal("0.00125") + Decimal("0.00125")
    cost_after = Decimal("0.0024") + Decimal("0.00006") + Decimal("0.0020625")
    cost_mini = builtin_cost("gpt-4o-mini", 1_000_000, 100_000, T0 + 12 * H)
    assert cost_mini > 0
    details = await query(database_url, """
        SELECT request_id, cost, cost_status, price_version FROM model_usage_details
        ORDER BY request_id""")  # fmt: skip
    dialect = "postgresql" if database_url.startswith("postgres") else "sqlite"
    assert [(k, to_amount(dialect, c), s, v) for k, c, s, v in details] == [
        ("a1", cost_before, "priced", "file:chat-a@2026-03-01T00:00:00Z"),
        ("a2", cost_edge, "priced", "file:chat-a@2026-03-01T00:00:00Z"),
        ("a3", cost_after, "priced", "file:chat-a@2026-03-02T16:00:00Z"),
        ("b1", cost_mini, "priced", details[3][3]),
        ("c1", None, "unpriced", None),
    ]
    assert details[3][3].startswith("genai-prices ") and "gpt-4o-mini" in details[3][3]

    rollups = await query(database_url, """
        SELECT model_name, user_id, request_count, cost, unpriced_request_count
        FROM model_usages ORDER BY model_name, user_id""")  # fmt: skip
    assert [(m, u, n, to_amount(dialect, c), x) for m, u, n, c, x in rollups] == [
        ("chat-a", "7", 2, cost_before + cost_edge, 0),
        ("chat-a", "8", 1, cost_after, 0),
        ("gpt-4o-mini", "7", 1, cost_mini, 0),
        ("mystery-model-xyz", "7", 1, None, 1),
    ]
    total = await query(database_url, "SELECT sum(cost) FROM model_usages")
    assert to_amount(dialect, total[0][0]) == cost_before + cost_edge + cost_after + cost_mini

    report = cli("report", "--database-url", database_url, "--by", "model_name",
                 "--format", "csv")  # fmt: skip
    assert report.returncode == 0, report.stderr
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert [(r["model_name"], r["requests"], r["unpriced_requests"], r["cost"]) for r in rows] == [
        ("chat-a", "3", "0", str(cost_before + cost_edge + cost_after)),
        ("gpt-4o-mini", "1", "0", str(cost_mini.normalize())),
        ("mystery-model-xyz", "1", "1", ""),
    ]

    samples = scrape(metrics_port)
    costs = {(dict(labels)["model"], dict(labels)["user"]): value
             for (name, labels), value in samples.items()
             if name == "tokenbridge_usage_cost_total"}  # fmt: skip
    # The exposition's decimal text reads back as the exact amounts.
    assert {k: Decimal(repr(v)) for k, v in costs.items()} == {
        ("chat-a", "7"): cost_before + cost_edge, ("chat-a", "8"): cost_after,
        ("gpt-4o-mini", "7"): cost_mini}  # fmt: skip
    currencies = {dict(labels)["currency"] for (name, labels) in samples
                  if name == "tokenbridge_usage_cost_total"}  # fmt: skip
    assert currencies == {"USD"}
    unpriced = {dict(labels)["model"]: value for (name, labels), value in samples.items()
                if name == "tokenbridge_usage_unpriced_requests_total"}  # fmt: skip
    assert unpriced == {"mystery-model-xyz": 1.0}

    # A correction while the bridge runs: the 16:00 price was wrong (output 4.125 -> 5) and
    # the unknown model gets a price; reprice the day, twice.
    prices.write_text(PRICES.replace("output: 4.125", "output: 5") +
                      "  - {model: mystery-model-xyz, per_million: {input: 100}}\n")
    args = ("reprice", "--config", str(server.config_path), "--database-url", database_url,
            "--from", "2026-03-02", "--to", "2026-03-02", "--format", "csv")  # fmt: skip
    first, again = cli(*args), cli(*args)
    assert first.returncode == 0, first.stderr
    fixed_after = cost_after + Decimal("0.0004375")  # 500 output x (5 - 4.125) per million
    old_a, new_a = cost_before + cost_edge + cost_after, cost_before + cost_edge + fixed_after
    assert first.stdout.splitlines() == [
        "model_name,rows,rows_changed,old_cost_USD,new_cost_USD,old_unpriced_requests,"
        "new_unpriced_requests",
        f"chat-a,3,1,{text(old_a)},{text(new_a)},0,0",
        f"gpt-4o-mini,1,0,{text(cost_mini)},{text(cost_mini)},0,0",
        "mystery-model-xyz,1,1,0,0.001,1,0",
    ]
    assert "rollups rebuilt: 4 (2 changed)" in first.stderr
    assert [line.split(",")[2] for line in again.stdout.splitlines()[1:]] == ["0", "0", "0"]
    assert "rollups rebuilt: 4 (0 changed)" in again.stderr
    rollups = await query(database_url, """
        SELECT model_name, user_id, request_count, cost, unpriced_request_count
        FROM model_usages ORDER BY model_name, user_id""")  # fmt: skip
    assert [(m, u, n, to_amount(dialect, c), x) for m, u, n, c, x in rollups] == [
        ("chat-a", "7", 2, cost_before + cost_edge, 0),
        ("chat-a", "8", 1, fixed_after, 0),
        ("gpt-4o-mini", "7", 1, cost_mini, 0),
        ("mystery-model-xyz", "7", 1, Decimal("0.001"), 0),
    ]
    assert server.stop() == 0


async def test_spans_carry_cache_writes_and_reasoning_into_the_cost(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES + """  - model: chat-a
    provider: azure
    from: "2026-03-02T16:00:00Z"
    per_million: {input: 6, output: 9, reasoning: 20}
""")
    server = server_factory(database_url, tmp_path, {"pricing": {"path": str(prices)}}).start()
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=server.grpc, insecure=True)
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            results.append(exporter.export([span]))

    provider.add_span_processor(Recording(exporter))
    tracer = provider.get_tracer("test")
    end = (T0 + 17 * H) * 1_000_000
    for vendor in ("openai", "azure"):
        span = tracer.start_span("chat chat-a", start_time=end - 10**9, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "chat-a",
            "gen_ai.provider.name": vendor, "gen_ai.usage.input_tokens": 2000,
            "gen_ai.usage.cache_read.input_tokens": 500,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.output_tokens": 300, "gen_ai.usage.reasoning.output_tokens": 100})
        span.end(end_time=end)
    provider.shutdown()
    assert results == [SpanExportResult.SUCCESS] * 2  # each span acknowledged once committed
    rows = await query(database_url, "SELECT provider_name, prompt_token_count, "
                       "prompt_cached_token_count, prompt_cache_write_token_count, "
                       "completion_reasoning_token_count, cost, price_version "
                       "FROM model_usage_details ORDER BY provider_name")
    dialect = "postgresql" if database_url.startswith("postgres") else "sqlite"
    # openai, the 16:00 row for any provider: 1400 uncached x 3 + 500 cached x 0.3 + 100
    # cache writes x 3 (input's rate) + 200 output x 4.125 + 100 reasoning x 4.125 (output's).
    openai = Decimal("0.0042") + Decimal("0.00015") + Decimal("0.0003") + \
        Decimal("0.000825") + Decimal("0.0004125")
    # azure, its own row: cached and cache writes at its input 6, reasoning at 20.
    azure = Decimal("0.0084") + Decimal("0.003") + Decimal("0.0006") + Decimal("0.0018") + \
        Decimal("0.002")
    assert [(*r[:5], to_amount(dialect, r[5]), r[6]) for r in rows] == [
        ("azure", 2000, 500, 100, 100, azure, "file:chat-a[azure]@2026-03-02T16:00:00Z"),
        ("openai", 2000, 500, 100, 100, openai, "file:chat-a@2026-03-02T16:00:00Z"),
    ]
    assert server.stop() == 0
