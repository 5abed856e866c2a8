"""Usage counters and self-telemetry: exact values on the scrape endpoint and the OTLP push."""

from __future__ import annotations

import sqlite3
import urllib.request
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from collector import config as config_module
from collector.cli import main
from collector.model import Committed, Operation, Source, UsageReport
from exporters.metrics import names
from exporters.metrics.provider import MetricsExport
from exporters.metrics.usage import UsageMetrics
from tests import traffic
from tests.support import Server, free_port


def _report(n: int, **fields: Any) -> UsageReport:
    base = UsageReport("m", Source.GATEWAY, f"k{n}", 1, input_token=10, output_token=2)
    return base._replace(**fields)


def _sums(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, str], ...], int]]:
    data = reader.get_metrics_data()
    out: dict[str, dict[tuple[tuple[str, str], ...], int]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = tuple(sorted((k, str(v)) for k, v in point.attributes.items()))
                    out.setdefault(metric.name, {})[key] = int(point.value)
    return out


def test_usage_counters_store_what_sql_stores_and_cap_each_label() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    record = UsageMetrics(meter, labels=("user", "operation"), limits={"user": 2})
    record(Committed([
        _report(1, user_id="a", input_cached_token=4),
        _report(2, user_id="b"),
        _report(3, user_id="c"),  # a third user: folded into the overflow series
        _report(4, user_id="a", operation=Operation.EMBEDDING, total_token=50,
                input_token=0, output_token=0),  # prompt = total - completion, as stored
        _report(5, user_id="d", request_count=3, input_token=0, output_token=0),
    ], duplicates=0, rejects=0, seconds=0.0))  # fmt: skip
    sums = _sums(reader)
    chat = ("operation", "")
    assert sums[names.INPUT_TOKENS] == {
        (chat, ("user", "a")): 10, (("operation", "embedding"), ("user", "a")): 50,
        (chat, ("user", "b")): 10, (chat, ("user", "__overflow__")): 10,
    }  # fmt: skip
    assert sums[names.REQUESTS][(chat, ("user", "__overflow__"))] == 4
    assert sums[names.CACHED_INPUT_TOKENS][(chat, ("user", "a"))] == 4
    assert sum(sums[names.OUTPUT_TOKENS].values()) == 6


def test_cost_counters_share_the_labels_and_caps_and_keep_unpriced_apart() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    record = UsageMetrics(meter, labels=("user",), limits={"user": 2}, currency="EUR")
    # Costs in pico-units, beside the reports: 0.0012, 0.5, unpriced, 0.25 (folded), 0.
    record(Committed([_report(1, user_id="a"), _report(2, user_id="b"),
                      _report(3, user_id="b", request_count=2), _report(4, user_id="c"),
                      _report(5, user_id="a")], 0, 0, 0.0,
                     costs=[1_200_000_000, 5 * 10**11, None, 25 * 10**10, 0]))  # fmt: skip
    data = reader.get_metrics_data()
    assert data is not None
    points = {(m.name, tuple(sorted(p.attributes.items()))): p.value
              for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
              for p in m.data.data_points}  # fmt: skip
    cost = {k[1]: v for k, v in points.items() if k[0] == names.COST}
    assert cost == {(("currency", "EUR"), ("user", "a")): 0.0012,
                    (("currency", "EUR"), ("user", "b")): 0.5,
                    (("currency", "EUR"), ("user", "__overflow__")): 0.25}  # fmt: skip
    unpriced = {k[1]: v for k, v in points.items() if k[0] == names.UNPRICED_REQUESTS}
    assert unpriced == {(("user", "b"),): 2}


def test_an_unknown_label_is_refused() -> None:
    meter = MeterProvider().get_meter("test")
    with pytest.raises(ValueError, match="unknown metric labels"):
        UsageMetrics(meter, labels=("model", "colour"))


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_two_providers_in_one_process_serve_their_own_registry() -> None:
    first = MetricsExport(config_module.MetricsConfig(port=0))
    second = MetricsExport(config_module.MetricsConfig(port=0))
    first.start()
    second.start()
    try:
        assert first.port and second.port and first.port != second.port
        UsageMetrics(first.meter)(Committed([_report(1)], 0, 0, 0.0))
        UsageMetrics(second.meter)
        one, two = _scrape(first.port), _scrape(second.port)
        inputs = [v for (n, _l), v in one.items() if n == "tokenbridge_usage_input_tokens_total"]
        assert inputs == [10]
        assert not any(n.startswith("tokenbridge_usage") for n, _l in two)
    finally:
        first.shutdown()
        second.shutdown()
        first.shutdown()


def test_the_endpoint_is_on_by_default_and_null_or_disabled_turns_it_off() -> None:
    default = config_module.load(environ={}).metrics
    assert default is not None and (default.enabled, default.host, default.port) == (
        True, "127.0.0.1", 9464)  # fmt: skip
    assert config_module.load(overrides={"metrics": None}, environ={}).metrics is None
    disabled = config_module.load(overrides={"metrics": {"enabled": False}}, environ={})
    assert disabled.metrics is not None and not disabled.metrics.enabled
    environ = {"TOKENBRIDGE_METRICS__PORT": "9999", "TOKENBRIDGE_METRICS__LABELS": "[model, user]"}
    from_env = config_module.load(environ=environ)
    assert from_env.metrics is not None
    assert (from_env.metrics.port, from_env.metrics.labels) == (9999, ("model", "user"))


def test_serve_refuses_an_unknown_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("metrics: {port: 0, labels: [model, colour]}\n")
    code = main(["serve", "--config", str(config), "--database-url",
                 f"sqlite:///{tmp_path / 'db.sqlite'}"])  # fmt: skip
    assert code == 2
    assert "unknown metric labels" in capsys.readouterr().err


def _one_span() -> tpb.ExportTraceServiceRequest:
    request = tpb.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes(range(16)), span_id=bytes(range(8)), name="chat m",
        start_time_unix_nano=10**18, end_time_unix_nano=10**18 + 10**9,
    )  # fmt: skip
    for key, value in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "m")):
        span.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    span.attributes.add(key="gen_ai.usage.input_tokens", value=common_pb2.AnyValue(int_value=5))
    return request


def test_retryable_answers_and_database_errors_are_counted(
    tmp_path: Path, sqlite_url: str, server_factory: type[Server]
) -> None:
    port = free_port()
    server = server_factory(sqlite_url, tmp_path, {
        "metrics": {"port": port}, "commit": {"retry_after": 30},
    }).start()  # fmt: skip
    before = _scrape(port)
    assert before[("tokenbridge_database_errors_total", ())] == 0
    assert before[("tokenbridge_commit_pending", ())] == 0
    # The audit table disappears: the next transaction fails and the bridge answers 503.
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        db.execute("DROP TABLE model_usage_details")
    status, _answer = traffic.post(f"{server.http}/v2/usage/gateway-metrics", traffic.GATEWAY[0])
    assert status == 503
    # While the bridge waits for the database, gRPC callers are told to retry too.
    with grpc.insecure_channel(server.grpc) as channel, pytest.raises(grpc.RpcError) as error:
        tgrpc.TraceServiceStub(channel).Export(_one_span(), timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    after = _scrape(port)
    assert after[("tokenbridge_database_errors_total", ())] == 1
    assert after[("tokenbridge_retryable_answers_total", (("transport", "http"),))] == 1
    assert after[("tokenbridge_retryable_answers_total", (("transport", "grpc"),))] == 1
    assert after[("tokenbridge_reports_accepted_total", ())] == 0
    server.kill()


class _RecordingMetrics(mgrpc.MetricsServiceServicer):
    """A real OTLP/gRPC metrics endpoint that keeps the last value of each usage series."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def Export(
        self, request: mpb.ExportMetricsServiceRequest, context: Any
    ) -> mpb.ExportMetricsServiceResponse:
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if not metric.HasField("sum"):
                        continue
                    for point in metric.sum.data_points:
                        labels = tuple(sorted((a.key, a.value.string_value)
                                              for a in point.attributes))  # fmt: skip
                        self.last[(metric.name, labels)] = point.as_int or int(point.as_double)
        return mpb.ExportMetricsServiceResponse()

    def total(self, name: str) -> int:
        return sum(v for (n, _labels), v in self.last.items() if n == name)


def test_otlp_push_carries_the_committed_totals(
    tmp_path: Path, sqlite_url: str, server_factory: type[Server]
) -> None:
    recorder = _RecordingMetrics()
    receiver = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    mgrpc.add_MetricsServiceServicer_to_server(recorder, receiver)
    port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    try:
        server = server_factory(sqlite_url, tmp_path, {"metrics": {
            "prometheus": False, "otlp_endpoint": f"http://127.0.0.1:{port}",
            "otlp_interval": 60,
        }}).start()  # fmt: skip
        traffic.send_all(server.grpc, server.http)
        assert server.stop() == 0  # shutdown pushes what the interval has not sent yet
    finally:
        receiver.stop(None)
    assert recorder.total(names.INPUT_TOKENS) == traffic.INPUT
    assert recorder.total(names.OUTPUT_TOKENS) == traffic.OUTPUT
    assert recorder.total(names.CACHED_INPUT_TOKENS) == traffic.CACHED
    assert recorder.total(names.REQUESTS) == traffic.REQUESTS
    assert recorder.total(names.REPORTS_DEDUPLICATED) == traffic.DEDUPLICATED
    users = {dict(labels)["user"] for (n, labels) in recorder.last if n == names.REQUESTS}
    assert users == traffic.USERS
