"""The cost of the source rule: ``sources.genai_metrics: auto`` (the default) against
``false``, in one run.

    python -m bench.sources [--duration 5] [--database postgres|sqlite] [--rounds 3]

The load: ``tokenbridge loadgen`` usage spans over gRPC (1,000 per request, 8 in flight, from
the producer ``synthetic-gateway``), and beside it GenAI metric exports as the official OpenAI
instrumentation sends them (cumulative ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration`` over OTLP/HTTP, every second: 60x the SDK's default
interval), in two loads:

- ``mixed``: the span producer also sends the metrics of its calls, as openai-v2, OpenLLMetry
  and OpenLIT do. This is what the rule exists for, and what the target is about: under
  ``auto`` its points are ruled and ignored (their streams still advance, so nothing is
  counted twice later); under ``false`` they are dropped before mapping. Both count the same.
- ``metrics-only``: two more producers send only metrics. ``auto`` counts their
  usage and ``false`` loses it, so the difference is the price of counting that usage (point
  rows, stream states), not of the rule; it is shown, not held to the target.

The figure is the bridge's CPU time per committed span (all its work, the metrics included,
divided by the spans). Each round runs the two bridges at the same time (each on its own
database, with its own load process), so both meet the same machine; the cost is the median
of the rounds' ratios. (Run one after the other, the same mode's figure moved by 10-30%
between phases on the shared machine, more than the cost measured.) Throughput figures are
of two bridges sharing the machine, lower than alone.
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

SPAN_PRODUCER = "synthetic-gateway"
"""loadgen's resource: the producer that sends the spans."""
METRICS_ONLY = ("metrics-app-1", "metrics-app-2")
LOADS = {"mixed": (SPAN_PRODUCER,), "metrics-only": (SPAN_PRODUCER, *METRICS_ONLY)}
MODELS = 25
EXPORTS_PER_SECOND = 1.0
"""Each producer exports every second: 10-60x more often than the SDK default interval."""
SPANS = "select count(*) from model_usage_details where source = 'otlp_span'"
POINT_ROWS = "select count(*) from model_usage_details where source = 'otlp_metric'"


def _kv(key: str, value: str) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv


def metrics_body(export: int, start_ns: int, producers: tuple[str, ...]) -> bytes:
    """Export number ``export`` of each of ``producers``: per model an input and an output
    series of the token histogram and one duration series, cumulative since ``start_ns``."""
    request = ExportMetricsServiceRequest()
    now = time.time_ns()
    for service in producers:
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

    def __init__(
        self, bridge: Bridge, producers: tuple[str, ...], rate: float = EXPORTS_PER_SECOND
    ) -> None:
        self._url = f"{bridge.http}/v1/metrics"
        self._producers = producers
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
        interval, started = 1 / self._rate, time.monotonic()
        # On a fixed schedule, so a slower answer does not mean fewer exports.
        while not self._stop.wait(max(0.0, started + (self.exports + 1) * interval
                                      - time.monotonic())):  # fmt: skip
            body = metrics_body(self.exports + 1, start_ns, self._producers)
            request = urllib.request.Request(
                self._url, body, {"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                self.exports += 1
            except OSError:
                self.failed += 1


async def phases(
    database: str, duration: float, rate: float, producers: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """One bridge per mode, run at the same time, each on its own fresh database with its
    own load process and metric exports: both see the same machine, whatever else runs."""
    modes: tuple[Any, ...] = (False, "auto")
    urls = [await fresh_postgres() if database == "postgres" else fresh_sqlite() for _ in modes]
    bridges = [Bridge(url, {"commit": {"flush_interval": 0.1},
                            "sources": {"genai_metrics": mode}}).start()
               for url, mode in zip(urls, modes, strict=True)]  # fmt: skip
    results: dict[int, dict[str, Any]] = {}
    try:
        # The span producer's first spans before its first metrics (it switches at once),
        # as when both signals describe the same calls: loadgen's spans are not the calls
        # these metrics count, so metrics first would, rightly, ignore them.
        for bridge in bridges:
            load(bridge, "grpc", duration, requests=1)

        def run(index: int) -> None:
            bridge = bridges[index]
            cpu = bridge.cpu_seconds()
            with MetricsLoad(bridge, producers, rate) as metrics:
                summary = load(bridge, "grpc", duration)
            results[index] = {"summary": summary, "cpu": bridge.cpu_seconds() - cpu,
                              "exports": metrics.exports, "failed": metrics.failed}  # fmt: skip

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(modes))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for bridge in bridges:
            bridge.stop()
    figures = {}
    for index, (url, mode) in enumerate(zip(urls, modes, strict=True)):
        result = results[index]
        spans = await scalar(url, SPANS) - 1000  # the warm-up request's
        figures[str(mode)] = {
            "spans_per_second": spans / result["summary"]["elapsed"],
            "cpu_us": result["cpu"] / spans * 1e6, "exports": result["exports"],
            "failed": result["failed"], "point_rows": await scalar(url, POINT_ROWS)}  # fmt: skip
    return figures


async def compare(
    database: str, duration: float, rounds: int, rate: float = EXPORTS_PER_SECOND,
    producers: tuple[str, ...] = LOADS["mixed"],
) -> tuple[dict[str, float], dict[str, float], float]:
    """(auto, false, cost): the round of median cost, and that cost."""
    paired: list[tuple[float, dict[str, float], dict[str, float]]] = []
    for _ in range(rounds):
        figures = await phases(database, duration, rate, producers)
        auto, off = figures["auto"], figures["False"]
        paired.append((auto["cpu_us"] / off["cpu_us"] - 1, auto, off))
    await drop_all()
    cost, auto, off = sorted(paired, key=lambda p: p[0])[len(paired) // 2]
    return auto, off, cost


def line(
    auto: dict[str, float], off: dict[str, float], cost: float, held: bool = True
) -> tuple[str, str, str]:
    """``held``: whether the target applies (the mixed load), or the cost is only shown."""
    value = (f"auto {auto['spans_per_second']:,.0f} spans/s, {auto['cpu_us']:.1f} us/span "
             f"({auto['exports']:.0f} metric exports, {auto['point_rows']:.0f} point rows)")
    reference = (f"false {off['spans_per_second']:,.0f} spans/s, {off['cpu_us']:.1f} us/span "
                 f"({off['exports']:.0f} exports, {off['point_rows']:.0f} point rows)")
    if held:
        verdict = f"{'PASS' if cost <= 0.10 else 'FAIL'} (cost {cost:+.1%}, target <= +10%)"
    else:
        verdict = f"(cost {cost:+.1%}: counting the usage false loses, not held to the target)"
    return value, reference, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exports", type=float, default=EXPORTS_PER_SECOND,
                        help="metric exports per second (0: spans only)")
    parser.add_argument("--load", choices=sorted(LOADS), action="append",
                        help="which loads (default: both)")
    args = parser.parse_args()
    for name in args.load or LOADS:
        auto, off, cost = asyncio.run(
            compare(args.database, args.duration, args.rounds, args.exports, LOADS[name]))
        value, reference, verdict = line(auto, off, cost, held=name == "mixed")
        print(f"{args.database} source rule, {name}: {value}\n  vs {reference}\n  {verdict}")


if __name__ == "__main__":
    main()
