"""Bounded fuzz run of the decoders and the ingest core, as the HTTP and gRPC receivers call them.

The "structure bombs" target sends bodies just under and over the element bound at every
repeated OTLP level (protobuf and JSON) and counts as a crash any that is decoded over the
bound or refused under it.

For each target, hypothesis generates inputs (random bytes, mutated valid requests, JSON
documents built from OTLP's own keys) and feeds them through the same functions a receiver
calls before the commit: inflate, parse, decode, map, bound. An input may be refused with a
``PermanentError`` (the 400/413/415 path); any other exception is a crash. Prints inputs tried
and crashes per target; exits 1 when there was a crash.

    python -m bench.fuzz --examples 3000

``tests/test_fuzz_smoke.py`` imports this module (``bench.fuzz``) and runs it in miniature.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (python bench/fuzz.py): the repository root first
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.aggregation.rules import Estimation
from collector.config import LimitsConfig
from collector.errors import Kind, PermanentError
from collector.ingest import Ingest
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.points import MetricRules
from collector.model import Encoding, Signal, Work
from collector.receivers.body import inflate


class Recording:
    """Stands in for the group commit: keeps what would be committed."""

    def __init__(self) -> None:
        self.reports = 0

    def admit(self, size: int = 0) -> None:
        """Takes everything."""

    async def submit(self, work: Work) -> None:
        self.reports += len(work.reports) + len(work.samples)


def _ingest() -> Ingest:
    commit: Any = Recording()
    rules = MetricRules(custom_counters={"app.tokens": "input_token"})
    limits = LimitsConfig(max_items=BOMB_LIMIT).settings()
    return Ingest(FieldMapper(MappingRules()), rules, Estimation(), commit, limits=limits)


def _seed_traces() -> bytes:
    request = tpb.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "gw"
    span = resource.scope_spans.add().spans.add(
        trace_id=b"\1" * 16, span_id=b"\2" * 8, name="chat", end_time_unix_nano=10**18
    )
    for key, value in (("gen_ai.request.model", "m"), ("gen_ai.usage.input_tokens", 5),
                       ("tokenbridge.user.id", "u"), ("gen_ai.usage.output_tokens", 7)):
        kv = span.attributes.add(key=key)
        if isinstance(value, str):
            kv.value.string_value = value
        else:
            kv.value.int_value = value
    arr = span.attributes.add(key="tokenbridge.cluster.id").value.array_value
    arr.values.add().int_value = 1
    return request.SerializeToString()


def _seed_metrics() -> bytes:
    request = mpb.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="app.tokens")
    metric.sum.aggregation_temporality = 2
    point = metric.sum.data_points.add(as_int=9, start_time_unix_nano=1, time_unix_nano=2)
    point.attributes.add(key="gen_ai.request.model").value.string_value = "m"
    histogram = request.resource_metrics[0].scope_metrics[0].metrics.add(
        name="gen_ai.client.token.usage")
    h = histogram.histogram.data_points.add(sum=3.0, count=1, time_unix_nano=5)
    h.attributes.add(key="gen_ai.token.type").value.string_value = "input"
    h.attributes.add(key="gen_ai.request.model").value.string_value = "m"
    histogram.histogram.aggregation_temporality = 1
    return request.SerializeToString()


SEEDS = {"traces": _seed_traces(), "metrics": _seed_metrics()}
KEYS = ["resourceSpans", "scopeSpans", "spans", "resourceMetrics", "scopeMetrics", "metrics",
        "attributes", "key", "value", "stringValue", "intValue", "doubleValue", "boolValue",
        "arrayValue", "kvlistValue", "bytesValue", "values", "traceId", "spanId", "name",
        "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "sum", "histogram",
        "dataPoints", "asInt", "asDouble", "count", "aggregationTemporality", "flags",
        "resource", "gen_ai.request.model", "gen_ai.usage.input_tokens", "model",
        "input_token", "request_count", "request_id"]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(KEYS) | st.sampled_from(["NaN", "Infinity", "app.tokens", "-1", "1e400"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


def _mutate(seed: bytes) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=3)
    cut = st.one_of(st.just(len(seed)), st.integers(1, len(seed)))
    tail = st.one_of(st.just(b""), st.binary(max_size=16))
    return st.tuples(edits, cut, tail).map(lambda t: _apply(seed, *t))


def _apply(seed: bytes, edits: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
    data = bytearray(seed)
    for at, byte in edits:
        data[at] = byte
    return bytes(data[:cut]) + tail


def _protobuf_bytes(kind: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), _mutate(SEEDS[kind]))


def _json_bytes() -> st.SearchStrategy[bytes]:
    docs = JSON_VALUES.map(lambda v: json.dumps(v).encode())
    return st.one_of(docs, st.binary(max_size=200), docs.map(gzip.compress))


Target = Callable[[Ingest, Any], Any]


def _inflated(data: bytes) -> bytes:
    """The body as the HTTP receiver reads it (gzip inflated within a cap)."""
    return inflate(data, 31, 1 << 20) if data[:2] == b"\x1f\x8b" else data


async def _grpc_traces(ingest: Ingest, data: bytes) -> Any:
    return await ingest.export(Signal.TRACES, Encoding.PROTOBUF, data)


async def _grpc_metrics(ingest: Ingest, data: bytes) -> Any:
    return await ingest.export(Signal.METRICS, Encoding.PROTOBUF, data)


async def _json_traces(ingest: Ingest, data: bytes) -> Any:
    return await ingest.export(Signal.TRACES, Encoding.JSON, _inflated(data))


async def _json_metrics(ingest: Ingest, data: bytes) -> Any:
    return await ingest.export(Signal.METRICS, Encoding.JSON, _inflated(data))


async def _gateway(ingest: Ingest, data: bytes) -> Any:
    return await ingest.export(Signal.GATEWAY, Encoding.JSON, _inflated(data))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2), to build bombs byte by byte."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# Where a bomb repeats its element: (signal, the fields leading there, the repeated field,
# the elements counted on the way).
PATHS = [
    (Signal.TRACES, [], 1, 0),  # ResourceSpans
    (Signal.TRACES, [1], 2, 1),  # ScopeSpans of one ResourceSpans
    (Signal.TRACES, [1, 2], 2, 2),  # Spans
    (Signal.TRACES, [1, 2, 2], 9, 3),  # attributes of one span
    (Signal.TRACES, [1, 2, 2, 9, 2, 5], 1, 5),  # values of one array attribute
    (Signal.TRACES, [1, 1], 1, 1),  # resource attributes
    (Signal.METRICS, [1, 2, 2, 7], 1, 3),  # data points of one Sum
    (Signal.METRICS, [1, 2, 2, 9, 1], 9, 4),  # attributes of one histogram point
]
JSON_BOMBS = [
    (Signal.TRACES, b'{"resourceSpans":[{"scopeSpans":[{"spans":[', b"]}]}]}", 6),
    (Signal.METRICS, b'{"resourceMetrics":[', b"]}", 2),
    (Signal.GATEWAY, b"[", b"]", 1),
]
BOMB_LIMIT = 1000


Bomb = tuple[Signal, Encoding, bytes, int, bool]
"""(signal, encoding, body, elements at least, whether exactly)."""
EXACT = frozenset({b"", b"\x0a\x00", b"{}"})
"""Elements that hold nothing counted (field 1 is never a repeated level below the top)."""


def _protobuf_bomb(path: int, count: int, element: bytes) -> Bomb:
    signal, outer, repeated, counted = PATHS[path]
    body = field(repeated, element) * count
    for number in reversed(outer):
        body = field(number, body)
    return signal, Encoding.PROTOBUF, body, counted + count, element in EXACT


def _json_bomb(kind: int, count: int, element: bytes) -> Bomb:
    signal, head, tail, counted = JSON_BOMBS[kind]
    body = head + b",".join([element] * count) + tail
    return signal, Encoding.JSON, body, counted + count, element in EXACT


BOMBS = st.one_of(
    st.builds(_protobuf_bomb, st.integers(0, len(PATHS) - 1), st.integers(900, 1100),
              st.sampled_from([b"", b"\x0a\x00", b"\x12\x00\x12\x00"])),
    st.builds(_json_bomb, st.integers(0, len(JSON_BOMBS) - 1), st.integers(900, 1100),
              st.sampled_from([b"{}", b"[]"])),
)  # fmt: skip
"""Structure bombs just under and over ``BOMB_LIMIT`` elements, at every repeated level."""


async def _structure_bomb(ingest: Ingest, data: Bomb) -> Any:
    """A bomb over the limit must be refused as too large, and one under it must not be;
    elements that hold elements themselves make the count only a lower bound, so only a
    bomb of empty elements is held to "must not"."""
    signal, encoding, body, elements, exact = data
    try:
        result = await ingest.export(signal, encoding, body)
    except PermanentError as error:
        if error.kind is Kind.TOO_LARGE and elements <= BOMB_LIMIT and exact:
            raise AssertionError(f"{elements} elements refused as too large") from None
        if elements > BOMB_LIMIT and error.kind is not Kind.TOO_LARGE:
            raise AssertionError(f"{elements} elements refused as {error.kind}") from None
        raise
    if elements > BOMB_LIMIT:
        raise AssertionError(f"{elements} elements over {BOMB_LIMIT} were decoded")
    return result


TARGETS: dict[str, tuple[Target, Callable[[], st.SearchStrategy[Any]]]] = {
    "grpc/protobuf traces": (_grpc_traces, lambda: _protobuf_bytes("traces")),
    "grpc/protobuf metrics": (_grpc_metrics, lambda: _protobuf_bytes("metrics")),
    "http/json traces": (_json_traces, _json_bytes),
    "http/json metrics": (_json_metrics, _json_bytes),
    "http/json gateway": (_gateway, _json_bytes),
    "structure bombs": (_structure_bomb, lambda: BOMBS),
}


def run(name: str, examples: int, seconds: float) -> tuple[int, int, int, list[str]]:
    """(inputs tried, refused with a 4xx, crashes, crash descriptions) for one target."""
    target, strategy = TARGETS[name]
    ingest = _ingest()
    loop = asyncio.new_event_loop()
    tried = refused = 0
    crashes: list[str] = []
    deadline = time.monotonic() + seconds

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=strategy())
    def fuzz(data: Any) -> None:
        nonlocal tried, refused
        if time.monotonic() > deadline:
            return
        tried += 1
        try:
            loop.run_until_complete(target(ingest, data))
        except PermanentError:
            refused += 1
        except Exception:
            crashes.append(f"{str(data)[:80]}\n{traceback.format_exc(limit=4)}")

    try:
        fuzz()
    finally:
        loop.close()
    return tried, refused, len(crashes), crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="inputs per target")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per target")
    args = parser.parse_args(argv)
    total_crashes = 0
    for name in TARGETS:
        started = time.monotonic()
        tried, refused, crashed, crashes = run(name, args.examples, args.seconds)
        total_crashes += crashed
        print(f"{name:24s} inputs tried {tried:6d}  refused (4xx) {refused:6d}  "
              f"crashes {crashed}  {time.monotonic() - started:5.1f}s", flush=True)  # fmt: skip
        for crash in crashes[:3]:
            print(crash)
    print(f"crashes: {total_crashes}")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
