"""Client processes for the delivery tests, built on the OpenTelemetry SDK's own OTLP exporters.

``python -m tests.system.delivery.clients spans --endpoint HOST:PORT ...``
    Load client: pre-built usage spans in batches through ``OTLPSpanExporter`` (gRPC). The
    exporter retries UNAVAILABLE and connection errors itself but gives up after its timeout,
    so a batch whose ``export()`` returned FAILURE is exported again until SUCCESS (what a
    Collector's persistent queue does), bounded by ``--deadline``. Prints ``acked N`` after each
    batch and a JSON line of totals last.

``python -m tests.system.delivery.clients metrics --endpoint HOST:PORT ...``
    Producer: a real ``MeterProvider`` with cumulative ``OTLPMetricExporter`` (gRPC), recording
    the ``gen_ai.client.token.usage`` histogram and two custom counters, one export per step.
    ``--replay URL`` sends the raw bytes of two earlier exports again to OTLP/HTTP half-way.
    Prints a JSON line of totals.

Every number derives from ``--seed`` so the test can check totals exactly.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

INPUT_COUNTER = "app.llm.input_tokens"
OUTPUT_COUNTER = "app.llm.output_tokens"
COUNTERS = {INPUT_COUNTER: "input_token", OUTPUT_COUNTER: "output_token"}
"""``mapping.counters`` for the producer's custom counters."""
EXIT_DEADLINE = 3


Batches = list[list[ReadableSpan]]


def build_spans(batches: int, size: int, seed: int) -> tuple[Batches, dict[str, int]]:
    """Usage spans over three models and four users (rollup keys overlap across batches)."""
    rng = random.Random(seed)
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "load-client"}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("tests.system.delivery")
    totals = {"spans": 0, "input": 0, "output": 0}
    for _ in range(batches * size):
        tokens_in, tokens_out = rng.randint(1, 5000), rng.randint(0, 2000)
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": f"model-{rng.randrange(3)}",
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "user.id": f"user-{rng.randrange(4)}",
        }
        tracer.start_span("chat", attributes=attributes).end()
        totals["spans"] += 1
        totals["input"] += tokens_in
        totals["output"] += tokens_out
    spans = list(recorder.get_finished_spans())
    return [spans[i : i + size] for i in range(0, len(spans), size)], totals


def send_spans(args: argparse.Namespace) -> int:
    batches, totals = build_spans(args.batches, args.size, args.seed)
    exporter = OTLPSpanExporter(endpoint=args.endpoint, insecure=True, timeout=args.timeout)
    deadline = time.monotonic() + args.deadline
    failures = 0
    for number, batch in enumerate(batches, 1):
        while exporter.export(batch) is not SpanExportResult.SUCCESS:
            failures += 1
            if time.monotonic() > deadline:
                print(f"deadline passed at batch {number}", file=sys.stderr)
                return EXIT_DEADLINE
            time.sleep(0.1)
        print(f"acked {number}", flush=True)
    exporter.shutdown()
    print(json.dumps({**totals, "failed_exports": failures}), flush=True)
    return 0


class RecordingMetricExporter(OTLPMetricExporter):
    """The SDK exporter, keeping the raw request bytes of each export for replays."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raw: list[bytes] = []

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        self.raw.append(encode_metrics(metrics_data).SerializeToString())
        return super().export(metrics_data, timeout_millis, **kwargs)


def produce_metrics(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    exporter = RecordingMetricExporter(endpoint=args.endpoint, insecure=True, timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": args.service, "service.instance.id": args.instance})
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("tests.system.delivery.producer")
    histogram = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    counters = {name: meter.create_counter(name, unit="{token}") for name in COUNTERS}
    totals = {"input": 0, "output": 0, "requests": 0, "counter_input": 0, "counter_output": 0}
    deadline = time.monotonic() + args.deadline
    for step in range(args.steps):
        if args.replay and step == args.steps // 2:
            # The newest export again (a duplicate), then the first one (out of order); the
            # steps after them show whether the stream's state moved back.
            for body in (exporter.raw[-1], exporter.raw[0]):
                _post(args.replay, body)
        for _call in range(rng.randint(0, 4)):  # some steps record nothing: unchanged points
            user = f"user-{rng.randrange(2)}"
            base = {"gen_ai.request.model": args.model, "gen_ai.operation.name": "chat",
                    "user.id": user}  # fmt: skip
            tokens_in, tokens_out = rng.randint(1, 900), rng.randint(1, 300)
            histogram.record(tokens_in, {**base, "gen_ai.token.type": "input"})
            histogram.record(tokens_out, {**base, "gen_ai.token.type": "output"})
            counter_base = {**base, "gen_ai.request.model": args.model + "-counter"}
            counters[INPUT_COUNTER].add(tokens_in, counter_base)
            counters[OUTPUT_COUNTER].add(tokens_out, counter_base)
            totals["input"] += tokens_in
            totals["output"] += tokens_out
            totals["requests"] += 1
            totals["counter_input"] += tokens_in
            totals["counter_output"] += tokens_out
        while not provider.force_flush(timeout_millis=10_000):
            if time.monotonic() > deadline:
                return EXIT_DEADLINE
            time.sleep(0.1)
    provider.shutdown()
    print(json.dumps({**totals, "exports": len(exporter.raw)}), flush=True)
    return 0


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url, body, {"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"replay answered {response.status}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clients")
    commands = parser.add_subparsers(dest="command", required=True)
    spans = commands.add_parser("spans")
    spans.add_argument("--endpoint", required=True)
    spans.add_argument("--batches", type=int, default=60)
    spans.add_argument("--size", type=int, default=50)
    spans.add_argument("--seed", type=int, default=1)
    spans.add_argument("--timeout", type=float, default=4.0, help="one export() call, seconds")
    spans.add_argument("--deadline", type=float, default=90.0, help="whole run, seconds")
    metrics = commands.add_parser("metrics")
    metrics.add_argument("--endpoint", required=True)
    metrics.add_argument("--model", required=True)
    metrics.add_argument("--service", default="producer")
    metrics.add_argument("--instance", default="1")
    metrics.add_argument("--steps", type=int, default=8)
    metrics.add_argument("--seed", type=int, default=1)
    metrics.add_argument("--replay", help="OTLP/HTTP /v1/metrics URL to replay exports to")
    metrics.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args(argv)
    return send_spans(args) if args.command == "spans" else produce_metrics(args)


if __name__ == "__main__":
    sys.exit(main())
