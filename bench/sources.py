"""The cost of the source rule: ``sources.genai_metrics: auto`` (the default) against
``false``, on one mixed load, in one run.

    python -m bench.sources [--duration 5] [--database postgres|sqlite] [--rounds 2]

The load: ``tokenbridge loadgen`` usage spans over gRPC (1,000 per request, 8 in flight, from
the producer ``synthetic-gateway``), and beside it GenAI metric exports as the official OpenAI
instrumentation sends them (cumulative ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration`` over OTLP/HTTP), from that same producer and from two
metrics-only producers. Under ``auto`` the span producer's points are ignored (their streams
still advance) and the metrics-only producers' points count; under ``false`` all points are
ignored before mapping. The figure is the bridge's CPU time per committed span (all its
work, the metrics included, divided by the spans), the two modes alternated ``--rounds``
times, best of each.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import urllib.request
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

from bench.bridge import Bridge, load
from bench.common import drop_all, fresh_postgres, fresh_sqlite, scalar

PRODUCERS = ("synthetic-gateway", "metrics-app-1", "metrics-app-2")
"""The first also sends the spans (loadgen's resource); the others send only metrics."""
MODELS = 25
EXPORTS_PER_SECOND = 1.0
"""Each producer exports every second: 10-60x more often than the SDK default interval."""
SPANS = "select count(*) from model_usage_details where source = 'otlp_span'"
POINT_ROWS = "select count(*) from model_usage_details where source = 'otlp_metric'"


def _kv(key: str, value: str) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv


def metrics_body(export: int, start_ns: int) -> bytes:
    """Export number ``export`` of every producer: per model an input and an output series
    of the token histogram and one duration series, cumulative since ``start_ns``."""
    request = ExportMetricsServiceRequest()
    now = time.time_ns()
    for service in PRODUCERS:
        rm = request.resource_metrics.add()
        rm.resource.attributes.append(_kv("service.name", service))
        scope = rm.scope_metrics.add()
        scope.scope.name = "opentelemetry.instrumentation.openai_v2"
        tokens = scope.metrics.add(name="gen_ai.client.token.usage", unit="{token}")
        tokens.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
        duration = scope.metrics.add(name="gen_ai.client.operation.duration", unit="s")
        duration.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
        for model in range(MODELS):
            common = [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.system", "openai"),
                      _kv("gen_ai.request.model", f"model-{model}")]  # fmt: skip
            calls = export * (model % 3 + 1)
            for kind, per_call in (("input", 700), ("output", 150)):
                point = tokens.histogram.data_points.add(
                    start_time_unix_nano=start_ns, time_unix_nano=now, count=calls,
                    sum=calls * per_call)  # fmt: skip
                point.attributes.extend([*common, _kv("gen_ai.token.type", kind)])
            point = duration.histogram.data_points.add(
                start_time_unix_nano=start_ns, time_unix_nano=now, count=calls, sum=calls * 0.3)
            point.attributes.extend(common)
    return request.SerializeToString()


class MetricsLoad:
    """A thread posting ``metrics_body`` exports to OTLP/HTTP at a fixed rate."""

    def __init__(self, bridge: Bridge, rate: float = EXPORTS_PER_SECOND) -> None:
        self._url = f"{bridge.http}/v1/metrics"
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.exports = 0
        self.failed = 0

    def __enter__(self) -> MetricsLoad:
        if self._rate > 0:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        start_ns = time.time_ns()
        interval = 1 / self._rate
        while not self._stop.wait(interval):
            body = metrics_body(self.exports + 1, start_ns)
            request = urllib.request.Request(
                self._url, body, {"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                self.exports += 1
            except OSError:
                self.failed += 1


async def phase(database: str, mode: Any, duration: float, rate: float) -> dict[str, float]:
    url = await fresh_postgres() if database == "postgres" else fresh_sqlite()
    config = {"commit": {"flush_interval": 0.1}, "sources": {"genai_metrics": mode}}
    bridge = Bridge(url, config).start()
    try:
        # The span producer's first spans before its first metrics (it switches at once),
        # as when both signals describe the same calls: loadgen's spans are not the calls
        # these metrics count, so metrics first would, rightly, ignore them.
        load(bridge, "grpc", duration, requests=1)
        cpu = bridge.cpu_seconds()
        with MetricsLoad(bridge, rate) as metrics:
            summary = load(bridge, "grpc", duration)
        used = bridge.cpu_seconds() - cpu
    finally:
        bridge.stop()
    spans = await scalar(url, SPANS) - 1000  # the warm-up request's
    return {"spans_per_second": spans / summary["elapsed"], "cpu_us": used / spans * 1e6,
            "exports": metrics.exports, "failed": metrics.failed,
            "point_rows": await scalar(url, POINT_ROWS)}  # fmt: skip


async def compare(
    database: str, duration: float, rounds: int, rate: float = EXPORTS_PER_SECOND
) -> tuple[dict[str, float], ...]:
    """Best (lowest CPU per span) of ``rounds`` alternated phases per mode: (auto, false)."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for mode in (False, "auto"):
            figures = await phase(database, mode, duration, rate)
            key = str(mode)
            if key not in best or figures["cpu_us"] < best[key]["cpu_us"]:
                best[key] = figures
    await drop_all()
    return best["auto"], best["False"]


def line(auto: dict[str, float], off: dict[str, float]) -> tuple[str, str, str]:
    cost = auto["cpu_us"] / off["cpu_us"] - 1
    value = (f"auto {auto['spans_per_second']:,.0f} spans/s, {auto['cpu_us']:.1f} us/span "
             f"({auto['exports']:.0f} metric exports, {auto['point_rows']:.0f} point rows)")
    reference = (f"false {off['spans_per_second']:,.0f} spans/s, {off['cpu_us']:.1f} us/span "
                 f"({off['exports']:.0f} exports, {off['point_rows']:.0f} point rows)")
    verdict = f"{'PASS' if cost <= 0.10 else 'FAIL'} (cost {cost:+.1%}, target <= +10%)"
    return value, reference, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--exports", type=float, default=EXPORTS_PER_SECOND,
                        help="metric exports per second (0: spans only)")
    args = parser.parse_args()
    auto, off = asyncio.run(compare(args.database, args.duration, args.rounds, args.exports))
    value, reference, verdict = line(auto, off)
    print(f"{args.database} source rule, mixed spans + metrics: {value}\n"
          f"  vs {reference}\n  {verdict}")


if __name__ == "__main__":
    main()
