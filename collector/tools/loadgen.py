"""``tokenbridge loadgen``: a synthetic gateway sending pre-built requests to a bridge.

Requests start at ``rate`` spans per second (0: as fast as answers come) with at most
``concurrency`` in flight, until ``duration`` seconds have passed or ``requests`` were sent.
A retryable answer (gRPC UNAVAILABLE/RESOURCE_EXHAUSTED, HTTP 503/429) is retried with the same
body after the advised delay, as an OpenTelemetry exporter does, so nothing is lost; after the
deadline, retries go on for at most ``drain`` seconds. The summary counts requests sent,
acknowledged, retried (retryable answers) and failed (permanent errors or given up).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import random
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from collector.tools.senders import Outcome, Sender, nothing_listens, open_sender
from collector.tools.synthetic import PROTOCOLS, Spread, Template, templates


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    host: str = "127.0.0.1"
    grpc_port: int = 4317
    http_port: int = 4318
    protocol: str = "grpc"
    rate: float = 0.0
    """Spans per second; 0 sends as fast as the bridge answers."""
    duration: float = 10.0
    requests: int = 0
    """Stop after this many requests (0: only the duration bounds the run)."""
    concurrency: int = 8
    spans: int = 1000
    templates: int = 8
    spread: Spread = dataclasses.field(default_factory=Spread)
    seed: int = 1
    drain: float = 30.0
    timeout: float = 60.0


@dataclasses.dataclass
class Summary:
    protocol: str
    sent: int = 0
    acknowledged: int = 0
    retried: int = 0
    failed: int = 0
    spans: int = 0
    """Spans (calls) in acknowledged requests."""
    input_tokens: int = 0
    output_tokens: int = 0
    elapsed: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list, repr=False)
    retry_causes: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter)
    """Why requests were retried: ``HTTP 503``, ``connection refused``, ..."""
    failure_causes: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter)

    def percentile(self, fraction: float) -> float:
        """Latency of acknowledged attempts at ``fraction`` (nearest rank), seconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                               if f.name != "latencies"}  # fmt: skip
        out["retry_causes"] = dict(self.retry_causes)
        out["failure_causes"] = dict(self.failure_causes)
        out["spans_per_second"] = self.spans / self.elapsed if self.elapsed else 0.0
        out["p50_ms"] = self.percentile(0.50) * 1000
        out["p99_ms"] = self.percentile(0.99) * 1000
        return out

    def line(self) -> str:
        d = self.as_dict()
        line = (
            f"{self.protocol}: sent {self.sent}, acknowledged {self.acknowledged}, retried "
            f"{self.retried}, failed {self.failed}; {self.spans} spans in {self.elapsed:.1f}s "
            f"({d['spans_per_second']:,.0f}/s), ack p50 {d['p50_ms']:.0f} ms "
            f"p99 {d['p99_ms']:.0f} ms"
        )
        for name, causes in (("retried", self.retry_causes), ("failed", self.failure_causes)):
            if causes:
                line += f"; {name}: " + ", ".join(f"{n}x {c}" for c, n in causes.most_common())
        return line


class LoadRun:
    """One bounded run; ``progress`` is called about once a second."""

    def __init__(self, options: LoadOptions, progress: Callable[[Summary], None] | None = None):
        self.options = options
        self.summary = Summary(options.protocol)
        self._progress = progress
        # A random high half keeps request numbers unique across runs on one database.
        self._base = int.from_bytes(os.urandom(4), "big") << 32
        self._templates: list[Template] = templates(
            options.protocol, options.templates, options.spans, options.spread, options.seed
        )

    async def run(self) -> Summary:
        o = self.options
        sender = await open_sender(o.protocol, o.host, o.grpc_port, o.http_port, o.timeout,
                                   min(o.concurrency, 32))  # fmt: skip
        started = time.monotonic()
        deadline = started + o.duration
        ticker = asyncio.create_task(self._tick(started))
        try:
            await self._dispatch(sender, started, deadline)
        finally:
            ticker.cancel()
            await sender.close()
        self.summary.elapsed = time.monotonic() - started
        return self.summary

    async def _dispatch(self, sender: Sender, started: float, deadline: float) -> None:
        o = self.options
        slots = asyncio.Semaphore(o.concurrency)
        interval = o.spans / o.rate if o.rate > 0 else 0.0
        tasks: set[asyncio.Task[None]] = set()
        number = 0
        while time.monotonic() < deadline and (not o.requests or number < o.requests):
            await slots.acquire()
            if interval:
                await _sleep_until(started + number * interval)
            if time.monotonic() >= deadline:
                slots.release()
                break
            template = self._templates[number % len(self._templates)]
            body = template.render(self._base + number)
            number += 1
            self.summary.sent += 1
            task = asyncio.create_task(self._deliver(sender, template, body, deadline, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def _deliver(
        self, sender: Sender, template: Template, body: bytes, deadline: float,
        slots: asyncio.Semaphore,
    ) -> None:  # fmt: skip
        s = self.summary
        try:
            while True:
                began = time.monotonic()
                outcome, retry_after, cause = await sender.send(body)
                if outcome is Outcome.OK:
                    s.latencies.append(time.monotonic() - began)
                    s.acknowledged += 1
                    s.spans += template.spans
                    s.input_tokens += template.input_tokens
                    s.output_tokens += template.output_tokens
                    return
                if outcome is Outcome.FAILED or time.monotonic() > deadline + self.options.drain:
                    s.failed += 1
                    s.failure_causes[cause if outcome is Outcome.FAILED else
                                     f"gave up after retries ({cause})"] += 1  # fmt: skip
                    return
                s.retried += 1
                s.retry_causes[cause] += 1
                await asyncio.sleep(retry_after * random.uniform(0.5, 1.5))
        finally:
            slots.release()

    async def _tick(self, started: float) -> None:
        while self._progress is not None:
            await asyncio.sleep(1.0)
            self.summary.elapsed = time.monotonic() - started
            self._progress(self.summary)


async def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def progress_printer(stream: TextIO) -> Callable[[Summary], None]:
    end = "\r" if stream.isatty() else "\n"

    def show(s: Summary) -> None:
        rate = s.spans / s.elapsed if s.elapsed else 0.0
        stream.write(
            f"{s.elapsed:5.1f}s sent {s.sent} acknowledged {s.acknowledged} retried "
            f"{s.retried} failed {s.failed} ({rate:,.0f} spans/s){end}"
        )
        stream.flush()

    return show


def add_parser(commands: Any) -> None:
    """The ``loadgen`` subcommand's options."""
    p: argparse.ArgumentParser = commands.add_parser("loadgen", help="send synthetic usage")
    p.add_argument("--host", default="127.0.0.1", help="the bridge's address")
    p.add_argument("--grpc-port", type=int, default=4317, help="its OTLP/gRPC port")
    p.add_argument("--http-port", type=int, default=4318, help="its OTLP/HTTP port")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc", help="what to send")
    p.add_argument("--rate", type=float, default=0.0, help="spans/s (0: as fast as answered)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    p.add_argument("--requests", type=int, default=0, help="stop after this many requests")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--spans", type=int, default=1000, help="calls per request")
    p.add_argument("--models", type=int, default=Spread.models, help="distinct models")
    p.add_argument("--users", type=int, default=Spread.users, help="distinct users")
    p.add_argument("--keys", type=int, default=Spread.keys, help="distinct API keys")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic traffic")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def options_from(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        protocol=args.protocol, rate=args.rate, duration=args.duration,
        requests=args.requests, concurrency=args.concurrency, spans=args.spans,
        spread=Spread(models=args.models, users=args.users, keys=args.keys), seed=args.seed,
    )  # fmt: skip


def main(
    args: argparse.Namespace, run: Callable[[Coroutine[Any, Any, Summary]], Summary]
) -> int:
    """Run the load and print the summary; exit 1 when a request was not acknowledged, or at
    once when nothing listens at the target."""
    port = args.grpc_port if args.protocol == "grpc" else args.http_port
    flag = "--grpc-port" if args.protocol == "grpc" else "--http-port"
    why = nothing_listens(args.host, port)
    if why is not None:
        print(f"tokenbridge: error: --host {args.host} {flag} {port}: {why}; start tokenbridge "
              f"serve there or point {flag} and --host at it", file=sys.stderr)  # fmt: skip
        return 1
    progress = None if args.quiet else progress_printer(sys.stderr)
    summary = run(LoadRun(options_from(args), progress).run())
    if progress is not None and sys.stderr.isatty():
        sys.stderr.write("\n")
    print(json.dumps(summary.as_dict()) if args.json else summary.line(), flush=True)
    return 1 if summary.failed else 0
