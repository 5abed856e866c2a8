"""An instrumented app, as the official OpenAI instrumentation reports its calls.

``opentelemetry-instrumentation-openai-v2`` emits, per call, a CLIENT span ``chat {model}``
with ``gen_ai.*`` usage attributes and ``gen_ai.client.token.usage`` (``gen_ai.token.type``
input and output) and ``gen_ai.client.operation.duration`` points, with the same resource on
both signals. This process does the same through the real OpenTelemetry SDK and its OTLP/gRPC
exporters (``openai_v2_app`` runs the real instrumentation instead), and takes commands on
stdin so a test decides when each signal is exported, and where to:

``calls N``          N calls (tokens drawn from ``--seed``)
``metrics ADDR``     collect the metrics now and export them to ADDR
``spans ADDR``       export the spans ended since the last ``spans``
``both MADDR SADDR`` both exports at once, from two threads
``quit``             exit

Every command answers one JSON line: the points exported per metric name, the spans
exported, and the totals recorded so far (``input``, ``output``, ``calls``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

MODELS = ("gpt-4o-mini", "gpt-4.1")


class Signals:
    """The SDK's tracer and meter providers of one producer (``--service``, ``--instance``),
    holding what they record in memory until a command exports it over OTLP/gRPC.
    ``calls`` is the app's: it records through ``tracers`` and ``meters`` and adds what it
    did to ``totals``."""

    def __init__(self, args: argparse.Namespace) -> None:
        attributes = {"service.name": args.service}
        if args.instance:
            attributes["service.instance.id"] = args.instance
        resource = Resource.create(attributes)
        temporality = {Histogram: AggregationTemporality[args.temporality.upper()]}
        self.reader = InMemoryMetricReader(preferred_temporality=temporality)
        self.meters = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.finished = InMemorySpanExporter()
        self.tracers = TracerProvider(resource=resource)
        self.tracers.add_span_processor(SimpleSpanProcessor(self.finished))
        self.rng = random.Random(args.seed)
        self.sent_spans = 0
        self.totals = {"input": 0, "output": 0, "calls": 0}

    def calls(self, n: int) -> dict[str, Any]:
        raise NotImplementedError

    def metrics(self, address: str) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        points: dict[str, int] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points[metric.name] = points.get(metric.name, 0) + len(metric.data.data_points)
        exporter = OTLPMetricExporter(endpoint=address, insecure=True, timeout=10)
        ok = data is None or exporter.export(data) is MetricExportResult.SUCCESS
        exporter.shutdown()
        return {"points": points, "metrics_ok": ok}

    def spans(self, address: str) -> dict[str, Any]:
        finished = self.finished.get_finished_spans()[self.sent_spans :]
        self.sent_spans += len(finished)
        exporter = OTLPSpanExporter(endpoint=address, insecure=True, timeout=10)
        ok = not finished or exporter.export(finished) is SpanExportResult.SUCCESS
        exporter.shutdown()
        return {"spans": len(finished), "spans_ok": ok}

    def both(self, metrics_address: str, spans_address: str) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        start = threading.Barrier(2)

        def run(export: Any, address: str) -> None:
            start.wait()
            answer.update(export(address))

        threads = [threading.Thread(target=run, args=(self.metrics, metrics_address)),
                   threading.Thread(target=run, args=(self.spans, spans_address))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answer


class App(Signals):
    """The instrumentation's calls imitated: the span and the points it records per call."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        meter = self.meters.get_meter("opentelemetry.instrumentation.openai_v2", "2.1b0")
        self.tokens = meter.create_histogram("gen_ai.client.token.usage", "{token}",
                                             "Measures number of input and output tokens used")
        self.duration = meter.create_histogram("gen_ai.client.operation.duration", "s",
                                               "GenAI operation duration")  # fmt: skip
        self.tracer = self.tracers.get_tracer("opentelemetry.instrumentation.openai_v2", "2.1b0")

    def calls(self, n: int) -> dict[str, Any]:
        for _ in range(n):
            model = MODELS[self.rng.randrange(len(MODELS))]
            tokens_in, tokens_out = self.rng.randint(1, 3000), self.rng.randint(1, 800)
            common = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                      "gen_ai.request.model": model, "gen_ai.response.model": model,
                      "server.address": "127.0.0.1", "server.port": 8080}  # fmt: skip
            with self.tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT,
                                                   attributes=common) as span:  # fmt: skip
                span.set_attributes({"gen_ai.usage.input_tokens": tokens_in,
                                     "gen_ai.usage.output_tokens": tokens_out,
                                     "gen_ai.response.finish_reasons": ["stop"]})  # fmt: skip
                # Recorded before the span ends (the real 2.4b0 does so for embeddings; for a
                # chat call it ends the span first).
                self.duration.record(0.25, common)
                self.tokens.record(tokens_in, {**common, "gen_ai.token.type": "input"})
                self.tokens.record(tokens_out, {**common, "gen_ai.token.type": "output"})
            self.totals["input"] += tokens_in
            self.totals["output"] += tokens_out
            self.totals["calls"] += 1
        return {}


def parser(prog: str) -> argparse.ArgumentParser:
    """The options every producer app takes: who it is, its draws, its temporality."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--service", default="chat-app")
    parser.add_argument("--instance", default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--temporality", choices=("cumulative", "delta"), default="cumulative")
    return parser


def serve(app: Signals) -> int:
    """Run the commands of stdin until ``quit`` or its end, one JSON answer line each."""
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "quit":
            break
        if command == "calls":
            answer = app.calls(int(rest[0]))
        elif command == "metrics":
            answer = app.metrics(rest[0])
        elif command == "spans":
            answer = app.spans(rest[0])
        elif command == "both":
            answer = app.both(rest[0], rest[1])
        else:
            answer = {"error": f"unknown command {command!r}"}
        print(json.dumps({**answer, **app.totals}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return serve(App(parser("genai_app").parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
