"""``make bench``: throughput, latency and memory of the bridge, each beside its reference.

    python -m bench.run [--duration 5] [--databases postgres,sqlite] [--workers 2]

Every ratio is taken between two figures measured in this run, so it holds on a noisy machine:
- decode ceiling: protobuf parse + a Python walk of every attribute of the benchmark's own
  requests, in this process (what any Python OTLP receiver must at least do);
- end to end: ``tokenbridge serve`` (one process) and a separate ``tokenbridge loadgen``
  sending pre-built requests of 1,000 spans (12 attributes each) with 8 in flight, per
  protocol; committed spans/s counted from SQL, ack latency, the bridge's peak RSS, and the
  bridge's CPU time per committed span (beside the ceiling's time per span of one core);
- half load: the gRPC rate halved, for the ack latency against the flush interval;
- overload: many more requests in flight than the queue takes: retryable answers, RSS, and
  the SQL total checked against what the load process saw acknowledged;
- persistence: the same reports through ``SqlSink.write`` and through a seed-style writer;
- pricing: OTLP/gRPC end to end with every span priced (price file rows by prefix and regex,
  time versions, a tier, the genai-prices fallback) beside ``pricing.enabled: false``,
  alternating bridges on fresh databases (``--only pricing`` runs just this).
- source rule: spans and GenAI metrics of one producer under ``sources.genai_metrics: auto``
  (the default) beside ``false``, then with two metrics-only producers added (``bench.sources``;
  alone: ``python -m bench.sources``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import producer_rules, sources
from bench.bridge import Bridge, load
from bench.common import drop_all, fresh_postgres, fresh_sqlite, scalar
from bench.seed_writer import rows_per_second
from collector.aggregation.rules import Estimation, estimate
from collector.decode import protobuf as pb
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.spans import span_report
from collector.tools.synthetic import templates

FLUSH_INTERVAL = 0.1
OVERLOAD = {"commit": {"max_pending": 20_000}}
PRICES = """
prices:
  - {match: {prefix: "model-00"}, per_million: {input: 0.5, cached_input: 0.25, output: 1.5}}
  - {match: {regex: "model-0[1-9][0-9]"}, from: "2025-01-01T00:00:00Z",
     per_million: {input: 2, output: 8}, per_request: 0.0001,
     tiers: [{above_input_tokens: 100000, per_million: {input: 4, output: 16}}]}
  - {match: {regex: "model-0[1-9][0-9]"}, from: "2026-06-01T00:00:00Z",
     per_million: {input: 2.5, output: 10}}
"""
ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, value: str, reference: str = "", verdict: str = "") -> None:
    ROWS.append((name, value, reference, verdict))
    print(f"  {name}: {value} {reference} {verdict}", flush=True)


def target(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'} ({text})"


def decode_ceiling(seconds: float = 2.0) -> float:
    """Spans/s of parse + a walk of every attribute, best of several passes."""
    bodies = [t.render(n) for n, t in enumerate(templates("grpc", 8))]
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        spans = 0
        for body in bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                pb.all_attrs(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        pb.all_attrs(span.attributes)
                        spans += 1
        best = max(best, spans / (time.perf_counter() - started))
    return best


def reports(batches: int, size: int) -> list[list[Any]]:
    mapper = FieldMapper(MappingRules())
    out = []
    pool = templates("grpc", 4, spans=size)
    for n in range(batches):
        request = ExportTraceServiceRequest()
        request.ParseFromString(pool[n % len(pool)].render(n))
        found = [span_report(s, mapper, 0) for s in pb.spans(request, mapper.wanted)]
        out.append([estimate(r, Estimation()) for r in found if r is not None])
    return out


async def fresh(database: str) -> str:
    return await fresh_postgres() if database == "postgres" else fresh_sqlite()


async def end_to_end(database: str, duration: float, workers: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    url = await fresh(database)
    bridge = Bridge(url, {"commit": {"flush_interval": FLUSH_INTERVAL}}).start()
    try:
        for protocol in ("grpc", "http", "json", "gateway"):
            figures[protocol] = await _phase(bridge, url, protocol, duration)
        rate = figures["grpc"]["committed_per_second"] / 2
        figures["half"] = await _phase(bridge, url, "grpc", duration, rate=rate)
    finally:
        bridge.stop()
    if workers > 1:
        url = await fresh(database)
        bridge = Bridge(url, {"commit": {"flush_interval": FLUSH_INTERVAL}}, workers).start()
        try:
            figures["workers"] = await _phase(bridge, url, "grpc", duration)
        finally:
            bridge.stop()
    url = await fresh(database)
    bridge = Bridge(url, OVERLOAD).start()
    try:
        figures["overload"] = await _phase(bridge, url, "grpc", duration, concurrency=64)
    finally:
        bridge.stop()
    return figures


async def _phase(bridge: Bridge, url: str, protocol: str, duration: float,
                 concurrency: int = 8, rate: float = 0.0) -> dict[str, Any]:  # fmt: skip
    count = "select count(*) from model_usage_details"
    before = await scalar(url, count)
    bridge.reset_peak()
    cpu = bridge.cpu_seconds()
    summary = load(bridge, protocol, duration, concurrency, rate)
    summary["bridge_cpu"] = bridge.cpu_seconds() - cpu
    committed = await scalar(url, count) - before
    summary["committed"] = committed
    summary["committed_per_second"] = committed / summary["elapsed"]
    summary["peak_rss_mb"] = bridge.peak_rss_mb
    return summary


def _e2e_line(label: str, s: dict[str, Any]) -> str:
    cpu = s["bridge_cpu"] / s["committed"] * 1e6 if s["committed"] else 0.0
    return (f"{s['committed_per_second']:>9,.0f} spans/s committed, ack p50 {s['p50_ms']:.0f} ms "
            f"p99 {s['p99_ms']:.0f} ms, peak RSS {s['peak_rss_mb']:.0f} MB, "
            f"bridge CPU {cpu:.0f} us/span")  # fmt: skip


async def bench_database(database: str, duration: float, workers: int, ceiling: float) -> None:
    print(f"{database}:", flush=True)
    f = await end_to_end(database, duration, workers)
    for protocol, label in (("grpc", "OTLP/gRPC"), ("http", "OTLP/HTTP protobuf"),
                            ("json", "OTLP/HTTP JSON"), ("gateway", "gateway JSON")):  # fmt: skip
        s = f[protocol]
        verdict = ""
        if protocol == "grpc":
            ratio = s["committed_per_second"] / ceiling
            verdict = target(ratio >= 0.5, f"{ratio:.2f}x ceiling, target >= 0.5x")
        if protocol == "json":
            ratio = s["committed_per_second"] / f["http"]["committed_per_second"]
            verdict = target(ratio >= 0.5, f"{ratio:.2f}x protobuf, target >= 0.5x")
        row(f"{database} e2e {label}, 1 process", _e2e_line(label, s), "", verdict)
    if "workers" in f:
        s = f["workers"]
        ratio = s["committed_per_second"] / f["grpc"]["committed_per_second"]
        row(f"{database} e2e OTLP/gRPC, {workers} workers", _e2e_line("", s),
            f"{ratio:.2f}x 1 process")  # fmt: skip
    s = f["half"]
    limit = 2 * FLUSH_INTERVAL * 1000
    row(f"{database} half load ({s['spans_per_second']:,.0f} spans/s)",
        f"ack p50 {s['p50_ms']:.0f} ms p99 {s['p99_ms']:.0f} ms", "",
        target(s["p99_ms"] <= limit, f"p99 <= {limit:.0f} ms"))  # fmt: skip
    s = f["overload"]
    # Nothing lost: every acknowledged span is committed, and no more. Requests the load
    # generator stopped retrying after the run were never acknowledged (a real sender keeps
    # retrying them); they are shown, not counted as lost.
    exact = s["committed"] == s["spans"]
    row(f"{database} overload (64 in flight, max_pending 20000)",
        f"{s['retried']} retryable answers, {s['committed']:,} committed = {s['spans']:,} "
        f"acknowledged: {'exact' if exact else 'MISMATCH'} ({s['failed']} requests given up "
        f"by the sender after the run), peak RSS {s['peak_rss_mb']:.0f} MB",
        "", target(s["peak_rss_mb"] <= 300 and exact and s["retried"] > 0,
                   "RSS <= 300 MB, retryable answers, nothing lost"))  # fmt: skip
    batches = reports(20, 2000)
    ours, _ = await rows_per_second(await fresh(database), batches, 4.0, seed_style=False)
    seed, _ = await rows_per_second(await fresh(database), batches, 4.0, seed_style=True)
    row(f"{database} persistence (2000-report batches)",
        f"SqlSink {ours:,.0f} rows/s", f"seed-style ORM {seed:,.0f} rows/s",
        target(ours >= 30 * seed, f"{ours / seed:.0f}x, target >= 30x"))  # fmt: skip
    for name, producers in sources.LOADS.items():
        auto, off, cost = await sources.compare(database, duration, 3, producers=producers)
        row(f"{database} source rule, {name}",
            *sources.line(auto, off, cost, held=name == "mixed"))  # fmt: skip
    await drop_all()
    await bench_pricing(database, duration)


async def bench_pricing(database: str, duration: float, rounds: int = 3) -> None:
    """Committed spans/s with pricing off and on, alternating, best round of each."""
    prices = Path(tempfile.mkdtemp(prefix="tb-bench-prices-")) / "prices.yaml"
    prices.write_text(PRICES)
    configs = {"off": {"pricing": {"enabled": False}},
               "on": {"pricing": {"path": str(prices), "builtin": True}}}  # fmt: skip
    best = {"off": 0.0, "on": 0.0}
    cpu = {"off": 1e9, "on": 1e9}
    for _ in range(rounds):
        for mode, extra in configs.items():
            url = await fresh(database)
            bridge = Bridge(url, {"commit": {"flush_interval": FLUSH_INTERVAL}, **extra}).start()
            try:
                s = await _phase(bridge, url, "grpc", duration)
            finally:
                bridge.stop()
            if mode == "on":
                priced = await scalar(url, "select count(*) from model_usage_details "
                                           "where cost_status = 'priced'")  # fmt: skip
                assert priced == s["committed"], "every span of the load has a price"
            best[mode] = max(best[mode], s["committed_per_second"])
            cpu[mode] = min(cpu[mode], s["bridge_cpu"] / max(1, s["committed"]) * 1e6)
    ratio = best["on"] / best["off"]
    row(f"{database} pricing on vs off (OTLP/gRPC e2e, best of {rounds})",
        f"on {best['on']:,.0f} spans/s, bridge {cpu['on']:.0f} us/span",
        f"off {best['off']:,.0f} spans/s, bridge {cpu['off']:.0f} us/span",
        target(ratio >= 0.9, f"{ratio:.2f}x, target >= 0.9x"))  # fmt: skip
    await drop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load phase")
    parser.add_argument("--databases", default="postgres,sqlite")
    parser.add_argument("--workers", type=int, default=2, help="the scale-out figure's N")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--only", choices=("pricing",), help="run only this piece")
    args = parser.parse_args()
    if args.only == "pricing":
        for database in args.databases.split(","):
            asyncio.run(bench_pricing(database, args.duration))
        print("\n" + table())
        return
    ceiling = decode_ceiling()
    row("decode ceiling (parse + attribute walk, in process)",
        f"{ceiling:,.0f} spans/s ({1e6 / ceiling:.0f} us/span of one core)")  # fmt: skip
    producer_rules.main(lambda line: row("producer rules", line))
    for database in args.databases.split(","):
        asyncio.run(bench_database(database, args.duration, args.workers, ceiling))
    print("\n" + table())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(ROWS, out, indent=1)


def table() -> str:
    widths = [max(len(r[i]) for r in ROWS) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in ROWS]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
