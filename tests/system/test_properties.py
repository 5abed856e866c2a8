"""Property-based: generated OTLP requests (JSON and protobuf, over HTTP and gRPC) and gateway
pushes with hostile attribute values, through the real server. Never a 500; invalid items are
never counted; the committed totals equal a reference computed here, from the documented
rules, independently of the product's code."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support import Server

MAX_COUNT = 10**12  # limits.max_count
MAX_TEXT = 255
ABSENT = object()
IDS = itertools.count(1)
SETTINGS = settings(
    max_examples=100, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("properties")
    config = {"commit": {"flush_interval": 0.002}}
    server = Server(f"sqlite:///{workdir / 'tb.db'}", workdir, config).start()
    yield server
    server.stop()


# ---- the reference: the documented rules, written independently --------------------------

_COUNT_TEXT = re.compile(r"([+-]?)([0-9]{1,40})")


def ref_count(value: Any) -> int | None:
    """A count, or None when invalid: non-negative whole numbers, ASCII digit strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and value >= 0 else None
    if isinstance(value, str):
        match = _COUNT_TEXT.fullmatch(value.strip())
        if match is None:
            return None
        number = int(match.group(2))
        return None if match.group(1) == "-" and number else number
    return None


def ref_text_ok(value: Any) -> bool:
    """Names: strings (or integers, rendered) of at most 255 characters, no NUL, valid Unicode."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\0" in value:
        return False
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


@dataclass
class Totals:
    prompt: int = 0
    completion: int = 0
    requests: int = 0
    counted: int = 0
    rejected: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(vars(self).values(), vars(other).values(),
                                              strict=True)))  # fmt: skip


MODEL = "gen_ai.request.model"
INPUT, OUTPUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
TEXT_ATTRS = ("tokenbridge.user.id", "tokenbridge.provider.name", "tokenbridge.api_key.access_key")
SPAN_KEYS = (MODEL, INPUT, OUTPUT, *TEXT_ATTRS)
GATEWAY_KEYS = ("model", "input_token", "output_token", "total_token", "request_count",
                "user_id", "access_key")  # fmt: skip


def ref_span(span: dict[str, Any]) -> Totals:
    """Counted when every mapped value present is valid, a token count is present, the model is
    present, and no count (total = input + output) is over the limit. An empty value (None) is
    absent."""
    attrs = {k: v for k, v in span.items() if v is not None}
    tokens = [attrs[k] for k in (INPUT, OUTPUT) if k in attrs]
    if any(ref_count(v) is None for v in tokens):
        return Totals(rejected=1)
    if any(not ref_text_ok(attrs[k]) for k in (MODEL, *TEXT_ATTRS) if k in attrs):
        return Totals(rejected=1)
    if not tokens:
        return Totals()
    if attrs.get(MODEL, "") == "":
        return Totals(rejected=1)
    prompt, completion = (ref_count(attrs.get(k, 0)) or 0 for k in (INPUT, OUTPUT))
    if max(prompt, completion, prompt + completion) > MAX_COUNT:
        return Totals(rejected=1)
    return Totals(prompt, completion, 1, 1)


def ref_gateway(item: dict[str, Any]) -> Totals:
    """GPUStack's object: a model name (a string) required; counts, request_count (default 1)
    and names valid when present (null is absent); every object is a request, zero tokens
    included; no count over the limit."""
    model = item.get("model")
    if not isinstance(model, str) or model == "" or not ref_text_ok(model):
        return Totals(rejected=1)
    counts = {k: ref_count(item[k]) for k in ("input_token", "output_token", "total_token")
              if item.get(k) is not None}  # fmt: skip
    requests = ref_count(item.get("request_count", 1))
    if None in counts.values() or requests is None:
        return Totals(rejected=1)
    if any(item.get(k) is not None and not ref_text_ok(item[k]) for k in ("user_id", "access_key")):
        return Totals(rejected=1)
    if max([*counts.values(), requests]) > MAX_COUNT:
        return Totals(rejected=1)
    return Totals(counts.get("input_token") or 0, counts.get("output_token") or 0, requests, 1)


# ---- strategies: a valid item, then up to three of its fields replaced by hostile values ----

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
PB_TEXT = st.text(max_size=300)  # protobuf strings are valid UTF-8 by construction
NUMBERS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2 * MAX_COUNT),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2**53, MAX_COUNT, MAX_COUNT + 1, 2**63 - 1, -1, 0.0, 3.0, 2.5]),
)
DIGITS = st.one_of(
    st.integers(min_value=-5, max_value=2 * MAX_COUNT).map(str),
    st.sampled_from([" 7 ", "+3", "-0", "1_0", "١٢", "0x10", "", "1e3", "\t9\n", "m" * 256]),
)
VALID_COUNT = st.integers(min_value=0, max_value=10**6)
VALID_NAME = st.sampled_from(["gpt-4o", "qwen3.5", "llama.3", "名前", "'; DROP TABLE x; --"])


def hostile(text: st.SearchStrategy[str], blobs: bool = True) -> st.SearchStrategy[Any]:
    """Wrong types, out-of-range numbers, odd strings, arrays, bytes (OTLP only), empty (None)
    and missing (ABSENT) values."""
    kinds = [NUMBERS, DIGITS, text, st.booleans()]
    scalar = st.one_of(*kinds, st.binary(max_size=20)) if blobs else st.one_of(*kinds)
    return st.one_of(st.just(ABSENT), st.none(), scalar, st.lists(scalar, max_size=4))


def _corrupt(pair: tuple[dict[str, Any], list[tuple[str, Any]]]) -> dict[str, Any]:
    item, changes = dict(pair[0]), pair[1]
    for key, value in changes:
        if value is ABSENT:
            item.pop(key, None)
        else:
            item[key] = value
    return item


def corrupted(valid: st.SearchStrategy[dict[str, Any]], keys: tuple[str, ...],
              bad: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:  # fmt: skip
    changes = st.lists(st.tuples(st.sampled_from(keys), bad), max_size=3)
    return st.tuples(valid, changes).map(_corrupt)


def spans(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    valid = st.fixed_dictionaries(
        {MODEL: VALID_NAME},
        optional={INPUT: VALID_COUNT, OUTPUT: VALID_COUNT, **dict.fromkeys(TEXT_ATTRS, VALID_NAME)},
    )
    return corrupted(valid, SPAN_KEYS, hostile(text))


GATEWAY_OBJECT = corrupted(
    st.fixed_dictionaries(
        {"model": VALID_NAME, "completed": st.just(True)},
        optional={"input_token": VALID_COUNT, "output_token": VALID_COUNT,
                  "total_token": VALID_COUNT, "request_count": st.integers(0, 5),
                  "user_id": st.one_of(VALID_NAME, st.integers(0, 10**9)),
                  "access_key": VALID_NAME, "ttft_ms": st.floats(),
                  "unknown": st.recursive(st.none() | st.integers() | ANY_TEXT,
                                          lambda inner: st.lists(inner, max_size=3),
                                          max_leaves=6)},
    ),
    GATEWAY_KEYS, hostile(ANY_TEXT, blobs=False),
)  # fmt: skip
NOT_AN_OBJECT = st.one_of(st.integers(), ANY_TEXT, st.lists(st.integers(), max_size=2),
                          st.none(), st.booleans())  # fmt: skip
GATEWAY_ITEM = st.one_of(GATEWAY_OBJECT, NOT_AN_OBJECT)


# ---- encoders -------------------------------------------------------------------------------


def json_any(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value) if value % 2 else value}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return {"arrayValue": {"values": [json_any(v) for v in value]}}
    return {"stringValue": value}


def pb_any(out: AnyValue, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list):
        out.array_value.SetInParent()
        for v in value:
            pb_any(out.array_value.values.add(), v)
    else:
        out.string_value = value


def _attributes(span: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(span.items())


def json_body(batch: list[dict[str, Any]]) -> bytes:
    out = []
    for span in batch:
        n = next(IDS)
        out.append({"traceId": f"{n:032x}", "spanId": f"{n:016x}", "name": "chat",
                    "attributes": [{"key": k, "value": json_any(v)} for k, v in _attributes(span)]})
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": out}]}]}
    return json.dumps(doc).encode()


def pb_request(batch: list[dict[str, Any]]) -> tpb.ExportTraceServiceRequest:
    request = tpb.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span in batch:
        n = next(IDS)
        item = scope.spans.add(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"))
        for key, value in _attributes(span):
            pb_any(item.attributes.add(key=key).value, value)
    return request


# ---- transport and database ------------------------------------------------------------------


def http_post(server: Server, path: str, body: bytes, kind: str) -> tuple[int, bytes]:
    request = urllib.request.Request(server.http + path, data=body,
                                     headers={"Content-Type": kind})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def committed(server: Server) -> Totals:
    path = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as db:
        usage = db.execute("SELECT COALESCE(SUM(prompt_token_count), 0), "
                           "COALESCE(SUM(completion_token_count), 0), "
                           "COALESCE(SUM(request_count), 0) FROM model_usages").fetchone()
        details = db.execute("SELECT COUNT(*) FROM model_usage_details").fetchone()[0]
        rejects = db.execute("SELECT COUNT(*) FROM usage_rejects").fetchone()[0]
    db.close()
    return Totals(*usage, details, rejects)  # fmt: skip


def _rejected_in(answer: bytes, kind: str) -> int:
    if kind == "json":
        partial = json.loads(answer).get("partialSuccess", {})
        return int(partial.get("rejectedSpans", 0))
    response = tpb.ExportTraceServiceResponse()
    response.ParseFromString(answer)
    return response.partial_success.rejected_spans


# ---- properties -----------------------------------------------------------------------------


@SETTINGS
@given(batch=st.lists(spans(ANY_TEXT), max_size=6))
def test_json_spans_commit_exactly_the_valid_ones(server: Server, batch: list[Any]) -> None:
    expected = sum((ref_span(s) for s in batch), Totals())
    before = committed(server)
    status, answer = http_post(server, "/v1/traces", json_body(batch), "application/json")
    assert status == 200, answer
    assert _rejected_in(answer, "json") == expected.rejected
    assert committed(server) == before + expected


@SETTINGS
@given(batch=st.lists(spans(PB_TEXT), max_size=6), over_grpc=st.booleans())
def test_protobuf_spans_commit_exactly_the_valid_ones(
    server: Server, batch: list[Any], over_grpc: bool
) -> None:
    expected = sum((ref_span(s) for s in batch), Totals())
    before = committed(server)
    request = pb_request(batch)
    if over_grpc:
        with grpc.insecure_channel(server.grpc) as channel:
            answer = tgrpc.TraceServiceStub(channel).Export(request, timeout=30)
        assert answer.partial_success.rejected_spans == expected.rejected
    else:
        body = request.SerializeToString()
        status, raw = http_post(server, "/v1/traces", body, "application/x-protobuf")
        assert status == 200, raw
        assert _rejected_in(raw, "protobuf") == expected.rejected
    assert committed(server) == before + expected


@SETTINGS
@given(items=st.lists(GATEWAY_ITEM, min_size=1, max_size=6))
def test_gateway_pushes_commit_exactly_the_valid_ones(server: Server, items: list[Any]) -> None:
    for item in items:
        if isinstance(item, dict):
            item["request_id"] = f"prop-{next(IDS)}"
    before = committed(server)
    status, raw = http_post(server, "/v2/usage/gateway-metrics", json.dumps(items).encode(),
                            "application/json")  # fmt: skip
    if not all(isinstance(item, dict) for item in items):
        # Not an object or a list of objects: a bad request, nothing of it kept.
        assert status == 400, raw
        assert committed(server) == before
        return
    expected = sum((ref_gateway(item) for item in items), Totals())
    assert status == 200, raw
    answer = json.loads(raw)
    assert (answer["accepted"], answer["rejected"], answer["ignored"]) == (
        expected.counted, expected.rejected, 0)  # fmt: skip
    assert committed(server) == before + expected


def test_server_logged_no_traceback(server: Server) -> None:
    assert "Traceback" not in server.log()
