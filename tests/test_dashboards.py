"""The committed dashboards: importable, generated, using only produced metric names, and
every billing SQL panel exact against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from genai_prices import Usage, calc_price

from dashboards import build
from exporters.metrics.names import PROMETHEUS_SERIES
from tests import traffic
from tests.dashboard_queries import (
    DASHBOARDS,
    PROMETHEUS_DASHBOARDS,
    SQL_DASHBOARDS,
    grafana_sql,
    load,
    metric_names,
    targets,
)
from tests.support import Server, query

ALL = PROMETHEUS_DASHBOARDS + SQL_DASHBOARDS


def test_committed_json_is_what_the_generator_writes() -> None:
    rendered = build.render()
    assert sorted(rendered) == sorted(ALL)
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"run python dashboards/build.py ({name})"


def test_dashboards_use_only_metric_names_the_exporter_produces() -> None:
    used = {name for dash in PROMETHEUS_DASHBOARDS for _title, target in targets(dash)
            for name in metric_names(target["expr"])}  # fmt: skip
    unknown = used - set(PROMETHEUS_SERIES)
    assert unknown == set()
    # Every usage counter and every self-telemetry instrument is charted somewhere.
    assert {PROMETHEUS_SERIES[name] for name in used} == set(PROMETHEUS_SERIES.values())


def test_a_dashboard_naming_an_unknown_metric_is_caught() -> None:
    expr = "sum(rate(tokenbridge_usage_prompt_tokens_total[$__rate_interval]))"
    assert metric_names(expr) - set(PROMETHEUS_SERIES) == {"tokenbridge_usage_prompt_tokens_total"}


def _uids(node: Any) -> list[str]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        found = [ds.get("uid", "")] if isinstance(ds, dict) else []
        return found + [u for value in node.values() for u in _uids(value)]
    if isinstance(node, list):
        return [u for value in node for u in _uids(value)]
    return []


def test_dashboards_are_importable_without_datasource_uids() -> None:
    for name in ALL:
        dash = load(name)
        assert dash["schemaVersion"] == build.SCHEMA_VERSION >= 41
        assert dash["uid"].startswith("tokenbridge-") and "id" not in dash
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert set(_uids(dash)) == {"${datasource}"}, name
        ids = [p["id"] for p in dash["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for panel in dash["panels"]:
            assert panel["targets"], panel["title"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24


def test_provisioning_points_at_the_dashboards_and_both_datasource_types() -> None:
    provisioning = DASHBOARDS / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "tokenbridge.yaml").read_text())
    kinds = {s["type"] for s in sources["datasources"]}
    assert kinds == {build.PROMETHEUS, build.POSTGRES}
    providers = yaml.safe_load((provisioning / "dashboards" / "tokenbridge.yaml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"


def _billing_queries() -> dict[str, str]:
    return {title: target["rawSql"] for title, target in targets("billing.json")}


async def test_every_billing_panel_returns_the_exact_numbers(
    tmp_path: Path, postgres_url: str, server_factory: type[Server]
) -> None:
    server = server_factory(postgres_url, tmp_path).start()
    traffic.send_all(server.grpc, server.http)
    server.stop()
    start = datetime.combine(traffic.DAY1, time(0), UTC)
    end = datetime.combine(traffic.DAY2, time(23, 59, 59), UTC)
    queries = _billing_queries()

    async def run(title: str) -> list[tuple[Any, ...]]:
        return await query(postgres_url, grafana_sql(queries[title], start, end))

    # Everything but the EARLY push is in the range.
    def day(d: date) -> datetime:
        return datetime.combine(d, time(0))

    titles = ("Tokens", "Input tokens", "Output tokens", "Cached input tokens", "Requests")
    tiles = {title: (await run(title))[0][0] for title in titles}
    assert tiles == {"Tokens": 820 + 107, "Input tokens": 820, "Output tokens": 107,
                     "Cached input tokens": 40, "Requests": 5}  # fmt: skip
    # Cost: gpt-4o is priced by the builtin table (genai-prices is the oracle); qwen3 and
    # text-embedding-3 have no price: 3 unpriced requests in the range, no cost.
    at = datetime.combine(traffic.DAY1, time(11), UTC)
    alice = calc_price(Usage(input_tokens=100, cache_read_tokens=40, output_tokens=20),
                       "gpt-4o", provider_id="openai", genai_request_timestamp=at).total_price
    bob = calc_price(Usage(input_tokens=200, output_tokens=50), "gpt-4o", provider_id="openai",
                     genai_request_timestamp=at).total_price  # fmt: skip
    assert (alice, bob) == (Decimal("0.0004"), Decimal("0.001"))
    assert (await run("Cost"))[0][0] == alice + bob
    assert (await run("Unpriced requests"))[0][0] == 3
    assert await run("Daily cost per user") == [
        (day(traffic.DAY1), "alice", alice), (day(traffic.DAY1), "bob", bob),
        (day(traffic.DAY1), "carol", None),
        (day(traffic.DAY2), "alice", None), (day(traffic.DAY2), "carol", None),
    ]  # fmt: skip
    assert await run("Daily cost per model") == [
        (day(traffic.DAY1), "gpt-4o", alice + bob), (day(traffic.DAY1), "qwen3", None),
        (day(traffic.DAY2), "qwen3", None), (day(traffic.DAY2), "text-embedding-3", None),
    ]  # fmt: skip
    assert [r[1:] for r in await run("Daily cost per API key")] == [
        ("key-a", alice), ("key-b", bob), ("key-c", None), ("key-a", None), ("key-c", None)]
    assert await run("Daily unpriced request share per model") == [
        (day(traffic.DAY1), "gpt-4o", 0.0), (day(traffic.DAY1), "qwen3", 1.0),
        (day(traffic.DAY2), "qwen3", 1.0), (day(traffic.DAY2), "text-embedding-3", 1.0),
    ]  # fmt: skip

    assert await run("Daily tokens per user") == [
        (day(traffic.DAY1), "alice", 120), (day(traffic.DAY1), "bob", 250),
        (day(traffic.DAY1), "carol", 150),
        (day(traffic.DAY2), "alice", 300), (day(traffic.DAY2), "carol", 107),
    ]  # fmt: skip
    assert await run("Daily tokens per model") == [
        (day(traffic.DAY1), "gpt-4o", 370), (day(traffic.DAY1), "qwen3", 150),
        (day(traffic.DAY2), "qwen3", 107), (day(traffic.DAY2), "text-embedding-3", 300),
    ]  # fmt: skip
    assert await run("Daily tokens per API key") == [
        (day(traffic.DAY1), "key-a", 120), (day(traffic.DAY1), "key-b", 250),
        (day(traffic.DAY1), "key-c", 150),
        (day(traffic.DAY2), "key-a", 300), (day(traffic.DAY2), "key-c", 107),
    ]  # fmt: skip

    csv_title = next(t for t in queries if t.startswith("Usage by day"))
    assert await run(csv_title) == [
        (traffic.DAY1, "alice", None, "gpt-4o", "openai", "key-a", None, "chat_completion",
         100, 20, 40, 1, 0, alice, 0),
        (traffic.DAY1, "bob", None, "gpt-4o", "openai", "key-b", None, "chat_completion",
         200, 50, 0, 1, 0, bob, 0),
        (traffic.DAY1, "carol", None, "qwen3", "gpustack", "key-c", None, "chat_completion",
         120, 30, 0, 1, 0, None, 1),
        (traffic.DAY2, "alice", None, "text-embedding-3", "openai", "key-a", None, "embedding",
         300, 0, 0, 1, 0, None, 1),
        (traffic.DAY2, "carol", None, "qwen3", "gpustack", "key-c", None, "chat_completion",
         100, 7, 0, 1, 1, None, 1),
    ]  # fmt: skip

    # Newest first: a span's instant is its end (11:00), a push's its completed_at.
    recent = await run("Recent requests")
    assert [(r[0].hour, r[1], r[2], r[5], r[6], r[8], r[10], r[12], r[13]) for r in recent] == [
        (11, "text-embedding-3", "alice", 300, 0, False, "otlp_span", None, "unpriced"),
        (9, "qwen3", "carol", 100, 7, True, "gateway_json", None, "unpriced"),
        (12, "qwen3", "carol", 120, 30, False, "gateway_json", None, "unpriced"),
        (11, "gpt-4o", "bob", 200, 50, False, "otlp_span", bob, "priced"),
        (11, "gpt-4o", "alice", 100, 20, False, "otlp_span", alice, "priced"),
    ]
