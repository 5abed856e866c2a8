"""Both kinds of producer count once by default: real SDK processes, spans and metrics in
either order, across a restart, across two replicas, and producers that share a name.

The producer is ``tests.system.producers.genai_app`` (the official OpenAI instrumentation's
spans and metrics imitated through the SDK's OTLP/gRPC exporters, either temporality);
``test_source_rule_openai_v2`` runs the same cases with the real library. Totals are checked
in SQL, and the bridge's counts of accepted and ignored items (by reason) on its metrics
endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from collector.model import Ignored
from tests.support import Server, query
from tests.system.producers.drive import GenAiApp, counts, serve_with_metrics

SUMS = "SELECT sum(prompt_token_count), sum(completion_token_count), sum(request_count) " \
       "FROM model_usages"  # fmt: skip
FROM_METRICS = f"ignored: {Ignored.FROM_METRICS}"
FROM_SPANS = f"ignored: {Ignored.FROM_SPANS}"
UNUSED = f"ignored: {Ignored.UNUSED_METRIC}"
Start = Callable[..., GenAiApp]
"""Starts a producer app with these arguments (and stops it after the test)."""


def _app(apps: list[GenAiApp], *args: str) -> GenAiApp:
    app = GenAiApp(*args)
    apps.append(app)
    return app


def _serve(factory: type[Server], url: str, tmp_path: Path) -> tuple[Server, int]:
    return serve_with_metrics(factory, url, tmp_path)


async def _sums(url: str) -> tuple[int, int, int]:
    [(prompt, completion, requests)] = await query(url, SUMS)
    return int(prompt or 0), int(completion or 0), int(requests or 0)


def _expected(*apps: GenAiApp) -> tuple[int, int, int]:
    return (sum(a.totals["input"] for a in apps), sum(a.totals["output"] for a in apps),
            sum(a.totals["calls"] for a in apps))  # fmt: skip


# The scenarios, each with a ``Start`` (arguments -> a running producer app): the imitation
# here, the real openai-v2 instrumentation in test_source_rule_openai_v2.py.


async def metrics_first_then_spans(
    start: Start, url: str, factory: type[Server], tmp_path: Path, *args: str
) -> None:
    server, port = _serve(factory, url, tmp_path)
    app = start("--instance", "i-1", *args)
    app.do("calls", "8")
    first = app.do("metrics", server.grpc)  # counted: a metrics-only producer so far
    assert first["token_points"] > 0
    assert app.do("spans", server.grpc)["spans"] == 8  # ended before the switch: ignored
    app.do("calls", "5")
    assert app.do("spans", server.grpc)["spans"] == 5  # after the switch: counted
    later = app.do("metrics", server.grpc)  # after the switch: ignored
    assert app.totals["calls"] == 13
    assert await _sums(url) == _expected(app)
    assert counts(port) == {
        "accepted": first["token_points"] + 5, "rejected": 0, FROM_METRICS: 8,
        FROM_SPANS: later["token_points"], UNUSED: app.exported["duration_points"],
    }  # fmt: skip


async def spans_first_then_metrics(
    start: Start, url: str, factory: type[Server], tmp_path: Path
) -> None:
    server, port = _serve(factory, url, tmp_path)
    app = start("--instance", "i-1")
    app.do("calls", "8")
    assert app.do("spans", server.grpc)["spans"] == 8  # the first spans: the switch is never
    app.do("metrics", server.grpc)
    app.do("calls", "5")
    app.do("metrics", server.grpc)
    assert app.do("spans", server.grpc)["spans"] == 5
    assert app.totals["calls"] == 13
    assert await _sums(url) == _expected(app)
    assert counts(port) == {
        "accepted": 13, "rejected": 0, FROM_SPANS: app.exported["token_points"],
        UNUSED: app.exported["duration_points"],
    }  # fmt: skip


async def restart_between_the_signals(
    first: str, start: Start, url: str, factory: type[Server], tmp_path: Path
) -> None:
    app = start("--instance", "i-1")
    server, port = _serve(factory, url, tmp_path)
    app.do("calls", "6")
    before = app.do(first, server.grpc)
    assert server.stop() == 0
    server, port = _serve(factory, url, tmp_path)  # a new process, same DB
    second = "spans" if first == "metrics" else "metrics"
    after = app.do(second, server.grpc)
    app.do("calls", "2")
    assert app.do("spans", server.grpc)["spans"] == 2
    last = app.do("metrics", server.grpc)
    assert app.totals["calls"] == 8
    assert await _sums(url) == _expected(app)
    if first == "metrics":  # the first 6 calls from the metrics, the last 2 from the spans
        assert after["spans"] == 6
        expected = {"accepted": 2, FROM_METRICS: 6, FROM_SPANS: last["token_points"]}
    else:  # everything from the spans
        assert before["spans"] == 6
        expected = {"accepted": 2,
                    FROM_SPANS: after["token_points"] + last["token_points"]}  # fmt: skip
    unused = app.exported["duration_points"] - before["duration_points"]
    assert counts(port) == {**expected, "rejected": 0, UNUSED: unused}


async def two_replicas_one_signal_each(
    start: Start, postgres_url: str, factory: type[Server], tmp_path: Path
) -> None:
    (on_a, port_a), (on_b, port_b) = (_serve(factory, postgres_url, tmp_path)
                                      for _ in range(2))  # fmt: skip
    ordered = start("--instance", "ordered", "--seed", "2")  # metrics to A, spans to B
    ordered.do("calls", "4")
    counted = ordered.do("metrics", on_a.grpc)
    assert ordered.do("spans", on_b.grpc)["spans"] == 4
    ordered.do("calls", "3")
    assert ordered.do("spans", on_b.grpc)["spans"] == 3
    late = ordered.do("metrics", on_a.grpc)
    # Both signals of the same calls at once, one to each replica: either may commit first.
    racing = start("--instance", "racing", "--seed", "3")
    racing.do("calls", "5")
    race = racing.do("both", on_a.grpc, on_b.grpc)
    assert race["spans"] == 5
    racing.do("calls", "2")
    assert racing.do("spans", on_b.grpc)["spans"] == 2
    last = racing.do("metrics", on_a.grpc)
    assert await _sums(postgres_url) == _expected(ordered, racing)
    a, b = counts(port_a), counts(port_b)
    metrics_won = b.get(FROM_METRICS) == 4 + 5
    race_tokens = race["token_points"]
    assert a == {
        "accepted": counted["token_points"] + (race_tokens if metrics_won else 0),
        FROM_SPANS: late["token_points"] + last["token_points"]
        + (0 if metrics_won else race_tokens),
        UNUSED: ordered.exported["duration_points"] + racing.exported["duration_points"],
        "rejected": 0,
    }  # fmt: skip
    assert b == {"accepted": 3 + 2 + (0 if metrics_won else 5), "rejected": 0,
                 FROM_METRICS: 4 + (5 if metrics_won else 0)}  # fmt: skip


def _imitation(apps: list[GenAiApp]) -> Start:
    return lambda *args: _app(apps, *args)


async def test_metrics_first_then_spans_counts_each_call_once(
    database_url: str, server_factory: type[Server], tmp_path: Path, apps: list[GenAiApp]
) -> None:
    await metrics_first_then_spans(_imitation(apps), database_url, server_factory, tmp_path)


async def test_spans_first_then_metrics_counts_each_call_once(
    database_url: str, server_factory: type[Server], tmp_path: Path, apps: list[GenAiApp]
) -> None:
    await spans_first_then_metrics(_imitation(apps), database_url, server_factory, tmp_path)


@pytest.mark.parametrize("first", ["metrics", "spans"])
async def test_the_rule_holds_across_a_restart_between_the_two_signals(
    first: str, database_url: str, server_factory: type[Server], tmp_path: Path,
    apps: list[GenAiApp],
) -> None:  # fmt: skip
    await restart_between_the_signals(first, _imitation(apps), database_url, server_factory,
                                      tmp_path)  # fmt: skip


async def test_two_replicas_receiving_one_signal_each_count_each_call_once(
    postgres_url: str, server_factory: type[Server], tmp_path: Path, apps: list[GenAiApp]
) -> None:
    await two_replicas_one_signal_each(_imitation(apps), postgres_url, server_factory, tmp_path)


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
async def test_producers_sharing_a_name_but_not_an_instance_both_count(
    temporality: str, database_url: str, server_factory: type[Server], tmp_path: Path,
    apps: list[GenAiApp],
) -> None:  # fmt: skip
    """A spans-only and a metrics-only Python producer, both counted in full."""
    server, port = _serve(server_factory, database_url, tmp_path)
    spans_only = _app(apps, "--service", "shared", "--instance", "a", "--seed", "4")
    metrics_only = _app(apps, "--service", "shared", "--instance", "b", "--seed", "5",
                        "--temporality", temporality)  # fmt: skip
    for calls in ("3", "4", "0"):
        spans_only.do("calls", calls)
        metrics_only.do("calls", calls)
        spans_only.do("spans", server.grpc)
        metrics_only.do("metrics", server.grpc)
    assert await _sums(database_url) == _expected(spans_only, metrics_only)
    assert counts(port) == {
        "accepted": 7 + metrics_only.exported["token_points"], "rejected": 0,
        UNUSED: metrics_only.exported["duration_points"],
    }  # fmt: skip
