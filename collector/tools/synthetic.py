"""Synthetic gateway traffic: pre-built OTLP and gateway request bodies with a realistic key
spread, made unique per send by a cheap byte substitution.

Building 1,000 protobuf spans in Python costs far more than sending them, so a load process
builds a few templates once and, for every request, replaces an 8-byte marker that starts
every trace id with the request's own number (its hex form in JSON bodies). Each sent request
thus carries spans the bridge has never seen, and a retried request carries the same ids, so it
is counted once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector import conventions as conv

PROTOCOLS = ("grpc", "http", "json", "gateway")


@dataclasses.dataclass(frozen=True)
class Spread:
    """How many distinct models, users and API keys the traffic spreads over. Each key
    belongs to one user (key ``k`` to user ``k % users``) and sends 80% of its calls to one
    model (``k % models``), the rest to any model."""

    models: int = 30
    users: int = 300
    keys: int = 3000
    providers: int = 5


@dataclasses.dataclass(frozen=True)
class Template:
    """One pre-built request body and what it carries."""

    body: bytes
    spans: int
    input_tokens: int
    output_tokens: int
    marker: bytes

    def render(self, number: int) -> bytes:
        """The body with every id made unique to request ``number`` (< 2**64)."""
        if len(self.marker) == 8:
            return self.body.replace(self.marker, number.to_bytes(8, "big"))
        return self.body.replace(self.marker, number.to_bytes(8, "big").hex().encode())


@dataclasses.dataclass(frozen=True)
class _Call:
    """One synthetic LLM call."""

    index: int
    model: int
    key: int
    user: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    embedding: bool


def _calls(rng: random.Random, spread: Spread, count: int) -> list[_Call]:
    calls = []
    for index in range(count):
        key = rng.randrange(spread.keys)
        embedding = rng.random() < 0.05
        input_tokens = rng.randint(1, 4000)
        # Most keys serve one application, which mostly calls one model.
        model = key % spread.models if rng.random() < 0.8 else rng.randrange(spread.models)
        calls.append(_Call(
            index, model, key, key % spread.users, input_tokens,
            0 if embedding else rng.randint(1, 1000), rng.randint(0, input_tokens // 2),
            embedding,
        ))  # fmt: skip
    return calls


def _kv(key: str, value: str | int | list[str]) -> KeyValue:
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=v) for v in value)
        return KeyValue(key=key, value=any_value)
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attributes(call: _Call, spread: Spread) -> list[tuple[str, str | int | list[str]]]:
    """Twelve attributes, as a gateway's GenAI span carries them (two the bridge ignores)."""
    return [
        (conv.GEN_AI_OPERATION_NAME, "embeddings" if call.embedding else "chat"),
        (conv.GEN_AI_REQUEST_MODEL, f"model-{call.model:03d}"),
        (conv.GEN_AI_PROVIDER_NAME, f"provider-{call.model % spread.providers}"),
        (conv.GEN_AI_USAGE_INPUT_TOKENS, call.input_tokens),
        (conv.GEN_AI_USAGE_OUTPUT_TOKENS, call.output_tokens),
        (conv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, call.cached_tokens),
        (conv.TB_USER_ID, f"user-{call.user:04d}"),
        (conv.TB_ACCESS_KEY, f"key-{call.key:05d}"),
        (conv.TB_MODEL_ID, call.model + 1),
        (conv.TB_PROVIDER_ID, call.model % spread.providers + 1),
        ("server.address", "gateway.internal"),
        ("gen_ai.response.finish_reasons", ["stop"]),
    ]


def _trace_request(calls: list[_Call], spread: Spread, marker: bytes, now_ns: int) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", "synthetic-gateway"))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tokenbridge.loadgen"
    for call in calls:
        span = scope_spans.spans.add()
        span.trace_id = marker + call.index.to_bytes(8, "big")
        span.span_id = (call.index + 1).to_bytes(8, "big")
        span.name = "chat" if not call.embedding else "embeddings"
        span.kind = Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano = now_ns - 900_000_000
        span.end_time_unix_nano = now_ns
        span.attributes.extend(_kv(k, v) for k, v in _attributes(call, spread))
    return request.SerializeToString()


def _json_value(value: str | int | list[str]) -> dict[str, object]:
    if isinstance(value, list):
        return {"arrayValue": {"values": [{"stringValue": v} for v in value]}}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": value}


def _json_request(calls: list[_Call], spread: Spread, marker: str, now_ns: int) -> bytes:
    spans = [
        {
            "traceId": marker + call.index.to_bytes(8, "big").hex(),
            "spanId": (call.index + 1).to_bytes(8, "big").hex(),
            "name": "chat" if not call.embedding else "embeddings",
            "kind": 3,
            "startTimeUnixNano": str(now_ns - 900_000_000),
            "endTimeUnixNano": str(now_ns),
            "attributes": [
                {"key": k, "value": _json_value(v)} for k, v in _attributes(call, spread)
            ],
        }
        for call in calls
    ]
    resource = {"attributes": [{"key": "service.name",
                                "value": {"stringValue": "synthetic-gateway"}}]}  # fmt: skip
    doc = {"resourceSpans": [{"resource": resource, "scopeSpans": [
        {"scope": {"name": "tokenbridge.loadgen"}, "spans": spans}]}]}  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


def _gateway_request(calls: list[_Call], spread: Spread, marker: str, now_ns: int) -> bytes:
    now_ms = now_ns // 1_000_000
    items = [
        {
            "model": f"model-{call.model:03d}", "model_id": call.model + 1,
            "provider_id": call.model % spread.providers + 1,
            "user_id": f"user-{call.user:04d}", "access_key": f"key-{call.key:05d}",
            "input_token": call.input_tokens, "output_token": call.output_tokens,
            "total_token": call.input_tokens + call.output_tokens,
            "input_cached_token": call.cached_tokens, "request_count": 1, "completed": True,
            "output_chunk_count": 0, "request_content_bytes": 0,
            "started_at": now_ms - 900, "completed_at": now_ms,
            "request_id": f"{marker}-{call.index}",
        }
        for call in calls
    ]  # fmt: skip
    return json.dumps(items, separators=(",", ":")).encode()


_BUILDERS: dict[str, Callable[[list[_Call], Spread, str, int], bytes]] = {
    "json": _json_request,
    "gateway": _gateway_request,
}


def templates(
    protocol: str,
    count: int = 8,
    spans: int = 1000,
    spread: Spread = Spread(),
    seed: int = 1,
    now_ns: int | None = None,
) -> list[Template]:
    """``count`` request bodies of ``spans`` calls each, for ``protocol`` (grpc and http share
    the protobuf body). The same seed gives the same calls."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")
    rng = random.Random(seed)
    now_ns = time.time_ns() if now_ns is None else now_ns
    out = []
    for _ in range(count):
        calls = _calls(rng, spread, spans)
        marker = os.urandom(8)
        if protocol in ("grpc", "http"):
            body = _trace_request(calls, spread, marker, now_ns)
            needle = marker
        else:
            body = _BUILDERS[protocol](calls, spread, marker.hex(), now_ns)
            needle = marker.hex().encode()
        if body.count(needle) != spans:
            raise RuntimeError("marker collided with body content; rebuild")  # ~2**-56
        out.append(Template(
            body, spans, sum(c.input_tokens for c in calls),
            sum(c.output_tokens for c in calls), needle,
        ))  # fmt: skip
    return out
