"""The usage and health dashboards against a real Prometheus scraping a real bridge."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from exporters.sql.money import to_amount
from tests import traffic
from tests.dashboard_queries import PROMETHEUS_DASHBOARDS, promql, targets
from tests.prometheus import Prometheus, require_prometheus
from tests.support import Server, free_port, query


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[list[Prometheus]]:
    started: list[Prometheus] = []
    yield started
    for instance in started:
        instance.stop()


async def test_every_prometheus_panel_returns_data_and_totals_equal_sql(
    tmp_path: Path, sqlite_url: str, server_factory: type[Server],
    prometheus_factory: list[Prometheus],
) -> None:  # fmt: skip
    require_prometheus()
    metrics_port = free_port()
    server = server_factory(sqlite_url, tmp_path, {"metrics": {"port": metrics_port}}).start()
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"])
    prometheus_factory.append(prometheus)
    prometheus.start()

    traffic.send_all(server.grpc, server.http)

    # Scraped after the last commit, with enough samples for every rate window.
    prometheus.wait_for(
        lambda: prometheus.value("sum(tokenbridge_usage_input_tokens_total)") == traffic.INPUT
        and (prometheus.value("min(count_over_time(tokenbridge_usage_requests_total[15s]))")
             or 0) >= 4,
        60, "Prometheus did not scrape the committed totals",
    )  # fmt: skip

    expressions = [
        (name, title, promql(target["expr"]))
        for name in PROMETHEUS_DASHBOARDS for title, target in targets(name)
    ]  # fmt: skip
    assert len(expressions) >= 30
    empty = [(name, title, expr) for name, title, expr in expressions
             if not prometheus.query(expr)]  # fmt: skip
    assert empty == []

    rows = await query(sqlite_url, "SELECT sum(prompt_token_count), sum(completion_token_count), "
                       "sum(prompt_cached_token_count), sum(request_count) FROM model_usages")
    sql_totals = tuple(int(v) for v in rows[0])
    prom_totals = tuple(
        int(prometheus.value(f"sum(tokenbridge_usage_{name}_total)") or -1)
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "requests")
    )
    assert prom_totals == sql_totals == (
        traffic.INPUT, traffic.OUTPUT, traffic.CACHED, traffic.REQUESTS
    )

    # Cost: the priced requests' sum (gpt-4o, builtin) and the unpriced ones, as in SQL.
    [(cost, unpriced)] = await query(sqlite_url, "SELECT sum(cost), sum(unpriced_request_count) "
                                     "FROM model_usages")
    assert to_amount("sqlite", cost) == Decimal("0.0014")
    assert prometheus.value("sum(tokenbridge_usage_cost_total)") == 0.0014
    assert prometheus.value("sum(tokenbridge_usage_unpriced_requests_total)") == unpriced == 4

    by_user = "SELECT user_id, sum(prompt_token_count) FROM model_usages GROUP BY user_id"
    by_user_sql = {user: int(tokens) for user, tokens in await query(sqlite_url, by_user)}
    by_user_prom = {
        row["metric"]["user"]: int(float(row["value"][1]))
        for row in prometheus.query("sum by (user) (tokenbridge_usage_input_tokens_total)")
    }
    assert by_user_prom == by_user_sql == {"alice": 410, "bob": 200, "carol": 220}

    telemetry = {
        name: prometheus.value(f"sum(tokenbridge_reports_{name}_total)")
        for name in ("accepted", "rejected", "deduplicated", "committed")
    }
    assert telemetry == {
        "accepted": traffic.ACCEPTED, "rejected": traffic.REJECTS,
        "deduplicated": traffic.DEDUPLICATED, "committed": traffic.REQUESTS,
    }  # fmt: skip
    assert prometheus.value('sum(tokenbridge_usage_requests_total{estimated="true"})') == 1
    assert prometheus.value("sum(tokenbridge_retryable_answers_total)") == 0
    assert prometheus.value("sum(tokenbridge_database_errors_total)") == 0


def _status(url: str, authorization: str | None) -> int:
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def test_a_protected_endpoint_is_scraped_only_with_a_token(
    tmp_path: Path, sqlite_url: str, server_factory: type[Server],
    prometheus_factory: list[Prometheus],
) -> None:  # fmt: skip
    require_prometheus()
    metrics_port = free_port()
    config = {"metrics": {"port": metrics_port, "tokens": ["scrape-1", "scrape-2"]}}
    server = server_factory(sqlite_url, tmp_path, config).start()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    presented = [None, "Bearer nope", "Basic scrape-1", "Bearer scrape-1", "bearer scrape-2"]
    assert [_status(url, header) for header in presented] == [401, 401, 401, 200, 200]

    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"], jobs={
        "tokenbridge": {"authorization": {"credentials": "scrape-2"}},
        "no-token": {},
        "wrong-token": {"authorization": {"credentials": "scrape-3"}},
    })  # fmt: skip
    prometheus_factory.append(prometheus)
    prometheus.start()
    traffic.send_all(server.grpc, server.http)
    total = 'sum(tokenbridge_usage_input_tokens_total{job="tokenbridge"})'
    prometheus.wait_for(lambda: prometheus.value(total) == traffic.INPUT
                        and len(prometheus.query("up")) == 3,
                        60, "Prometheus did not scrape the committed totals")  # fmt: skip
    up = {row["metric"]["job"]: row["value"][1] for row in prometheus.query("up")}
    assert up == {"tokenbridge": "1", "no-token": "0", "wrong-token": "0"}
    assert prometheus.query('{__name__=~"tokenbridge_.+", job!="tokenbridge"}') == []
