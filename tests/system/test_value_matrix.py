"""One matrix of hostile token values and timestamps, sent through every decoder: OTLP/JSON,
protobuf over HTTP, protobuf over gRPC and the GPUStack gateway push. Each value is sent in
the closest form each encoding allows, and every decoder must give the same outcome: the
same items accepted and rejected, the same tokens stored. No value may turn into 0 tokens."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support import Server, query

TRACE = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NOW_NS = time.time_ns()
HOUR_NS = 3600 * 10**9
Setter = Callable[[AnyValue], None]


def _double(value: float) -> Setter:
    return lambda v: setattr(v, "double_value", value)


def _int(value: int) -> Setter:
    return lambda v: setattr(v, "int_value", value)


def _text(value: str) -> Setter:
    return lambda v: setattr(v, "string_value", value)


def _array(v: AnyValue) -> None:
    v.array_value.values.add().int_value = 5


# case: (OTLP/JSON AnyValue text, protobuf value, gateway JSON value text, end time ns,
#        tokens stored or None when the item is rejected)
CASES: dict[str, tuple[str, Setter, str, int, int | None]] = {
    "integral-float": ('{"intValue": 5.0}', _double(5.0), "5.0", NOW_NS, 5),
    "digit-string": ('{"stringValue": "12"}', _text("12"), '"12"', NOW_NS, 12),
    "fraction": ('{"intValue": 5.5}', _double(5.5), "5.5", NOW_NS, None),
    "nan-text": ('{"intValue": "NaN"}', _text("NaN"), '"NaN"', NOW_NS, None),
    "nan-double": ('{"doubleValue": "NaN"}', _double(float("nan")), "NaN", NOW_NS, None),
    "overflowing": ('{"intValue": 1e400}', _double(float("inf")), "1e400", NOW_NS, None),
    "boolean": ('{"intValue": true}', lambda v: setattr(v, "bool_value", True), "true",
                NOW_NS, None),
    "array": ('{"intValue": [5]}', _array, "[5]", NOW_NS, None),
    "negative": ('{"intValue": "-1"}', _int(-1), "-1", NOW_NS, None),
    "over-max-count": ('{"intValue": "1000000000001"}', _int(10**12 + 1), "1000000000001",
                       NOW_NS, None),
    "end-2554": ('{"intValue": "7"}', _int(7), "7", 2**64 - 1, None),
    "end-1999": ('{"intValue": "7"}', _int(7), "7", 946_684_700 * 10**9, None),
    "end-in-two-days": ('{"intValue": "7"}', _int(7), "7", NOW_NS + 48 * HOUR_NS, None),
    "end-in-an-hour": ('{"intValue": "7"}', _int(7), "7", NOW_NS + HOUR_NS, 7),
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("matrix")
    config = {"commit": {"flush_interval": 0.01}}
    server = Server(f"sqlite:///{workdir / 'tb.db'}", workdir, config).start()
    yield server
    server.stop()


def _ids(model: str) -> tuple[bytes, bytes]:
    digest = hashlib.md5(model.encode()).digest()
    return digest, digest[:8]


def _json_traces(transport: str) -> bytes:
    spans = []
    for case, (value, _pb, _gw, end_ns, _want) in CASES.items():
        trace_id, span_id = _ids(f"{case}/{transport}")
        spans.append(
            f'{{"traceId": "{trace_id.hex()}", "spanId": "{span_id.hex()}", "name": "chat", '
            f'"startTimeUnixNano": "{NOW_NS - HOUR_NS}", "endTimeUnixNano": "{end_ns}", '
            f'"attributes": [{{"key": "gen_ai.request.model", "value": {{"stringValue": '
            f'"{case}/{transport}"}}}}, {{"key": "gen_ai.usage.input_tokens", "value": {value}}}]}}'
        )
    return ('{"resourceSpans": [{"scopeSpans": [{"spans": [' + ", ".join(spans) + "]}]}]}").encode()


def _protobuf_traces(transport: str) -> bytes:
    request = tpb.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for case, (_json, setter, _gw, end_ns, _want) in CASES.items():
        trace_id, span_id = _ids(f"{case}/{transport}")
        span = scope.spans.add(trace_id=trace_id, span_id=span_id, name="chat",
                               start_time_unix_nano=NOW_NS - HOUR_NS, end_time_unix_nano=end_ns)
        span.attributes.add(key="gen_ai.request.model").value.string_value = f"{case}/{transport}"
        setter(span.attributes.add(key="gen_ai.usage.input_tokens").value)  # fmt: skip
    return request.SerializeToString()


def _gateway_pushes() -> bytes:
    items = [
        f'{{"model": "{case}/gateway", "input_token": {value}, "request_id": "{case}", '
        f'"started_at": {(NOW_NS - HOUR_NS) // 10**6}, "completed_at": {end_ns // 10**6}}}'
        for case, (_json, _pb, value, end_ns, _want) in CASES.items()
    ]
    return ("[" + ", ".join(items) + "]").encode()


async def _post(server: Server, path: str, body: bytes, kind: str) -> tuple[int, Any]:
    headers = {"Content-Type": kind}
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.http + path, data=io.BytesIO(body), headers=headers) as response,
    ):
        return response.status, await response.read()


async def _answers(server: Server) -> dict[str, tuple[int, int]]:
    """transport -> (accepted, rejected) as each transport answered."""
    rejected: dict[str, tuple[int, int]] = {}
    status, raw = await _post(server, "/v1/traces", _json_traces("json"), "application/json")
    assert status == 200, raw
    partial = json.loads(raw).get("partialSuccess", {})
    count = int(partial.get("rejectedSpans", 0))
    rejected["json"] = (len(CASES) - count, count)
    status, raw = await _post(server, "/v1/traces", _protobuf_traces("http-protobuf"),
                              "application/x-protobuf")  # fmt: skip
    assert status == 200, raw
    count = tpb.ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans
    rejected["http-protobuf"] = (len(CASES) - count, count)
    async with grpc.aio.insecure_channel(server.grpc) as channel:
        decode = tpb.ExportTraceServiceResponse.FromString
        export = channel.unary_unary(TRACE, response_deserializer=decode)
        answer = await export(_protobuf_traces("grpc"), timeout=10)
    count = answer.partial_success.rejected_spans
    rejected["grpc"] = (len(CASES) - count, count)
    status, raw = await _post(server, "/v2/usage/gateway-metrics", _gateway_pushes(),
                              "application/json")  # fmt: skip
    assert status == 200, raw
    gateway = json.loads(raw)
    rejected["gateway"] = (gateway["accepted"], gateway["rejected"])
    return rejected


async def test_every_decoder_gives_the_same_outcome_for_each_hostile_value(
    server: Server,
) -> None:
    answers = await _answers(server)
    wanted = [case for case, spec in CASES.items() if spec[4] is not None]
    expected_counts = (len(wanted), len(CASES) - len(wanted))
    assert answers == {t: expected_counts for t in ("json", "http-protobuf", "grpc", "gateway")}

    rows = await query(server.database_url, "SELECT model_name, SUM(prompt_token_count) "
                       "FROM model_usages GROUP BY model_name")  # fmt: skip
    stored: dict[str, dict[str, int]] = {}
    for model, tokens in rows:
        case, transport = model.split("/")
        stored.setdefault(transport, {})[case] = int(tokens)
    expected = {case: spec[4] for case, spec in CASES.items() if spec[4] is not None}
    assert stored == {t: expected for t in ("json", "http-protobuf", "grpc", "gateway")}

    reasons = await query(server.database_url, "SELECT source, reason FROM usage_rejects")
    assert len(reasons) == 4 * (len(CASES) - len(wanted))
    # every reject says why, the same on every decoder: 3 stamps outside the window and 8
    # unusable counts per transport
    window = sum("outside the plausible window 2000-01-01T00:00:00Z .. " in r for _s, r in reasons)
    counts = sum(any(word in r for word in ("count", "over the limit")) for _s, r in reasons)
    assert (window, counts) == (4 * 3, 4 * 8)
    assert "Traceback" not in server.log()


async def test_json_values_that_are_not_any_values_reject_their_item(server: Server) -> None:
    spans = []
    for n, value in enumerate(['"NaN"', "5", '{"intValue": "5", "stringValue": "5"}', "[5]"]):
        spans.append(
            f'{{"traceId": "{n + 1:032x}", "spanId": "{n + 1:016x}", "name": "chat", '
            f'"endTimeUnixNano": "{NOW_NS}", "attributes": [{{"key": "gen_ai.request.model", '
            f'"value": {{"stringValue": "bare"}}}}, {{"key": "gen_ai.usage.input_tokens", '
            f'"value": {value}}}]}}'
        )
    body = '{"resourceSpans": [{"scopeSpans": [{"spans": [' + ", ".join(spans) + "]}]}]}"
    status, raw = await _post(server, "/v1/traces", body.encode(), "application/json")
    partial = json.loads(raw)["partialSuccess"]
    assert (status, partial["rejectedSpans"]) == (200, "4")
    assert "gen_ai.usage.input_tokens: not an OTLP AnyValue: 'NaN'" in partial["errorMessage"]
    rows = await query(server.database_url,
                       "SELECT COUNT(*) FROM model_usages WHERE model_name = 'bare'")  # fmt: skip
    assert rows == [(0,)]
