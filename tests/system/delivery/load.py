"""In-test load: gateway JSON pushes over HTTP and raw OTLP/gRPC span exports, retried until
acknowledged, with every answer tallied. Each report is derived from (sender, request, item),
so a resend carries the same idempotency key, and expected totals are known exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Sequence

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector.model import digest

MODELS = ("model-a", "model-b", "model-c")
USERS = ("user-1", "user-2")
RETRY_INFO = "google.rpc.retryinfo-bin"


@dataclasses.dataclass(frozen=True)
class Item:
    key: str
    model: str
    user: str
    input: int
    output: int


def item(sender: str, request: int, index: int) -> Item:
    """One usage report; few models and users, so rollup keys overlap between senders."""
    key = f"{sender}-{request}-{index}"
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return Item(key, MODELS[h[0] % 3], USERS[h[1] % 2], 1 + int.from_bytes(h[2:4]) % 4000,
                int.from_bytes(h[4:6]) % 1500)  # fmt: skip


@dataclasses.dataclass
class Tally:
    """Answers seen, and the reports whose request was acknowledged (by key: resends of one
    request and duplicates sent to two bridges count once)."""

    answers: Counter[str] = dataclasses.field(default_factory=Counter)
    acked: dict[str, Item] = dataclasses.field(default_factory=dict)
    retry_hints: Counter[str] = dataclasses.field(default_factory=Counter)

    def ack(self, items: Sequence[Item]) -> None:
        for it in items:
            self.acked[it.key] = it

    def expected(self) -> dict[str, tuple[int, int, int]]:
        """model -> (prompt tokens, completion tokens, requests), as ``helpers.totals``."""
        out: dict[str, tuple[int, int, int]] = {}
        for it in self.acked.values():
            p, c, r = out.get(it.model, (0, 0, 0))
            out[it.model] = (p + it.input, c + it.output, r + 1)
        return out


async def wait_acks(tally: Tally, count: int, timeout: float) -> None:
    """Until ``count`` reports are acknowledged (bounded)."""
    deadline = time.monotonic() + timeout
    while len(tally.acked) < count:
        assert time.monotonic() < deadline, f"only {len(tally.acked)} reports acknowledged"
        await asyncio.sleep(0.05)


def dedup_key(it: Item) -> str:
    """The idempotency key the bridge stores for ``it`` (gateway body digest, or span ids)."""
    if it.key.startswith("grpc"):
        trace = hashlib.blake2b(it.key.encode(), digest_size=16).hexdigest()
        return f"{trace}/{hashlib.blake2b(it.key.encode(), digest_size=8).hexdigest()}"
    return "gw:" + digest(gateway_body([it])[0])


def gateway_body(items: Sequence[Item]) -> list[dict[str, object]]:
    return [
        {"model": it.model, "user_id": it.user, "input_token": it.input,
         "output_token": it.output, "total_token": it.input + it.output, "completed": True,
         "request_id": it.key}
        for it in items
    ]  # fmt: skip


def _attr(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(it: Item, now: int) -> Span:
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": it.model,
                  "user.id": it.user, "gen_ai.usage.input_tokens": it.input,
                  "gen_ai.usage.output_tokens": it.output}  # fmt: skip
    return Span(
        trace_id=hashlib.blake2b(it.key.encode(), digest_size=16).digest(),
        span_id=hashlib.blake2b(it.key.encode(), digest_size=8).digest(),
        name="chat",
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
        attributes=[_attr(k, v) for k, v in attributes.items()],
    )


def trace_request(items: Sequence[Item]) -> tpb.ExportTraceServiceRequest:
    now = time.time_ns()
    spans = [_span(it, now) for it in items]
    return tpb.ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )


@dataclasses.dataclass
class Sender:
    """Sends requests of ``size`` reports until ``stop`` is set (or ``requests`` are sent),
    resending each until it is acknowledged. ``give_up`` is set when the bridge is going away
    for good: the request in hand is then dropped unacknowledged."""

    name: str
    tally: Tally
    stop: asyncio.Event
    give_up: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    size: int = 5
    requests: int = 2000
    pause: float = 0.01
    deadline: float = 120.0

    def batches(self) -> list[list[Item]]:
        return [[item(self.name, r, i) for i in range(self.size)] for r in range(self.requests)]

    def _done(self, started: float) -> bool:
        if time.monotonic() - started > self.deadline:
            raise TimeoutError(f"{self.name}: a request was not acknowledged in time")
        return self.give_up.is_set()


async def gateway_sender(sender: Sender, urls: Sequence[str], duplicate_every: int = 0) -> None:
    """Gateway pushes; request r goes to ``urls[r % n]``; with ``duplicate_every`` k, every
    k-th request is also sent, at the same time, to the next bridge."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(url: str, items: list[Item]) -> bool:
            started = time.monotonic()
            while not sender._done(started):
                try:
                    async with session.post(url, json=gateway_body(items)) as response:
                        await response.read()
                        sender.tally.answers[f"http {response.status}"] += 1
                        if response.status == 503 and "Retry-After" in response.headers:
                            sender.tally.retry_hints["http Retry-After"] += 1
                        if response.status == 200:
                            sender.tally.ack(items)
                            return True
                except aiohttp.ClientError as error:
                    sender.tally.answers[f"http {type(error).__name__}"] += 1
                await asyncio.sleep(0.1)
            return False

        for number, items in enumerate(sender.batches()):
            if sender.stop.is_set():
                return
            targets = [urls[number % len(urls)]]
            if duplicate_every and number % duplicate_every == 0 and len(urls) > 1:
                targets.append(urls[(number + 1) % len(urls)])
            await asyncio.gather(*(post(f"{u}/v2/usage/gateway-metrics", items) for u in targets))
            await asyncio.sleep(sender.pause)


async def grpc_sender(sender: Sender, targets: Sequence[str]) -> None:
    """Raw OTLP/gRPC trace exports; request r goes to ``targets[r % n]``."""
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    stubs = [tgrpc.TraceServiceStub(c) for c in channels]
    try:
        for number, items in enumerate(sender.batches()):
            if sender.stop.is_set():
                return
            stub = stubs[number % len(stubs)]
            request = trace_request(items)
            started = time.monotonic()
            while not sender._done(started):
                try:
                    await stub.Export(request, timeout=30)
                    sender.tally.answers["grpc OK"] += 1
                    sender.tally.ack(items)
                    break
                except grpc.aio.AioRpcError as error:
                    sender.tally.answers[f"grpc {error.code().name}"] += 1
                    trailers = dict(error.trailing_metadata() or ())
                    if RETRY_INFO in trailers:
                        sender.tally.retry_hints["grpc RetryInfo"] += 1
                await asyncio.sleep(0.1)
            await asyncio.sleep(sender.pause)
    finally:
        for channel in channels:
            await channel.close()
