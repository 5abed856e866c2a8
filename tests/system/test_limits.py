"""Size limits and malformed input on both transports: body cap after decompression, gzip
bombs, items and attributes per request, malformed protobuf and JSON, unsupported types."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

from tests.support import Server, query

MAX_BODY = 1 << 20
CONFIG = {
    "receivers": {"max_body_bytes": MAX_BODY},
    "limits": {"max_items": 50, "max_attributes": 16, "max_value_length": 300},
    "commit": {"flush_interval": 0.01},
}
TRACE = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("limits")
    server = Server(f"sqlite:///{workdir / 'tb.db'}", workdir, CONFIG).start()
    yield server
    server.stop()


def _bomb(inflated: int) -> bytes:
    """A gzip member of ``inflated`` zero bytes (about 1/1000 of that on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block) for _ in range(inflated // len(block))]
    return b"".join([*parts, packer.flush()])


def _peak_rss_kib(server: Server) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


def _span(model: str, span_id: int, **attrs: Any) -> dict[str, Any]:
    values = {"gen_ai.request.model": model, "gen_ai.usage.input_tokens": 5, **attrs}
    return {
        "traceId": hashlib.md5(model.encode()).hexdigest(), "spanId": f"{span_id + 1:016x}",
        "name": "chat", "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": k, "value": {"stringValue": v} if isinstance(v, str)
                        else {"intValue": str(v)}} for k, v in values.items()],
    }  # fmt: skip


def _traces(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}


async def _post(server: Server, path: str, body: bytes, **headers: str) -> tuple[int, Any]:
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    headers.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession() as session:
        data = io.BytesIO(body)  # aiohttp warns about large raw bytes bodies
        async with session.post(server.http + path, data=data, headers=headers) as response:
            raw = await response.read()
            kind = response.content_type
            return response.status, json.loads(raw) if kind == "application/json" else raw


async def _models(server: Server, prefix: str) -> list[tuple[Any, ...]]:
    return await query(
        server.database_url,
        "SELECT model_name, prompt_token_count, request_count FROM model_usages "
        "WHERE model_name LIKE :p ORDER BY model_name",
        p=prefix + "%",
    )


async def test_http_gzip_bomb_is_refused_without_inflating_it(server: Server) -> None:
    bomb = _bomb(256 << 20)
    assert len(bomb) < MAX_BODY
    before = _peak_rss_kib(server)
    for path in ("/v1/traces", "/v1/metrics", "/v2/usage/gateway-metrics"):
        for encoding in ("gzip", "x-gzip"):
            status, body = await _post(server, path, bomb, Content_Encoding=encoding)
            assert status == 413
            message = f"request body over {MAX_BODY} bytes (after decompression)"
            assert body == {"code": 8, "message": message}
    # 256 MiB inflated whole would raise the peak by as much; the slices keep it near the cap.
    assert _peak_rss_kib(server) - before < 64 << 10


async def test_http_body_cap_applies_before_and_after_decompression(server: Server) -> None:
    filler = "x" * 200
    spans = [_span("cap-big", i, pad=filler) for i in range(MAX_BODY // 300)]
    raw = json.dumps(_traces(*spans)).encode()
    assert len(raw) > MAX_BODY > len(gzip.compress(raw))
    assert (await _post(server, "/v1/traces", raw))[0] == 413
    packed = gzip.compress(raw)
    assert (await _post(server, "/v1/traces", packed, Content_Encoding="gzip"))[0] == 413
    small = json.dumps(_traces(_span("cap-small", 1))).encode()
    status, _ = await _post(server, "/v1/traces", zlib.compress(small), Content_Encoding="deflate")
    assert status == 200
    assert await _models(server, "cap-") == [("cap-small", 5, 1)]


async def test_malformed_bodies_are_400_with_a_reason(server: Server) -> None:
    proto = {"Content_Type": "application/x-protobuf"}
    cases: list[tuple[str, bytes, dict[str, str], str]] = [
        ("/v1/traces", b"\xff\xff\xff", proto, "malformed protobuf"),
        ("/v1/metrics", b"\x0a\x05abc", proto, "malformed protobuf"),
        ("/v1/traces", b"{not json", {}, "malformed JSON"),
        ("/v1/traces", b'{"resourceSpans": {}}', {}, "malformed OTLP/JSON"),
        ("/v1/metrics", b'{"resourceMetrics": [1]}', {}, "malformed OTLP/JSON"),
        ("/v2/usage/gateway-metrics", b"[" * 5000, {}, "malformed JSON"),
        ("/v1/traces", gzip.compress(b"{}")[:-4], {"Content_Encoding": "gzip"},
         "malformed compressed body"),
        ("/v1/traces", b"not gzip", {"Content_Encoding": "gzip"}, "malformed compressed body"),
    ]  # fmt: skip
    for path, body, headers, reason in cases:
        status, answer = await _post(server, path, body, **headers)
        assert status == 400, (path, body[:20])
        message = (
            answer["message"] if isinstance(answer, dict) else _status_message(answer)
        )
        assert message.startswith(reason), message


def _status_message(raw: bytes) -> str:
    from google.rpc import status_pb2

    status = status_pb2.Status()
    status.ParseFromString(raw)
    assert status.code == 3
    return status.message


async def test_unsupported_content_type_and_encoding_are_415(server: Server) -> None:
    body = json.dumps(_traces(_span("type-refused", 1))).encode()
    for path in ("/v1/traces", "/v1/metrics", "/v2/usage/gateway-metrics"):
        assert (await _post(server, path, body, Content_Type="text/plain"))[0] == 415
        status, answer = await _post(server, path, body, Content_Encoding="br")
        assert status == 415
        assert "unsupported content encoding 'br'" in answer["message"]
    assert await _models(server, "type-") == []


async def test_too_many_items_refuse_the_request_on_both_transports(server: Server) -> None:
    body = json.dumps(_traces(*[_span("items-over", i) for i in range(51)])).encode()
    status, answer = await _post(server, "/v1/traces", body)
    # The HTTP body's google.rpc code is the gRPC status below: RESOURCE_EXHAUSTED (8).
    assert (status, answer) == (413, {"code": 8, "message": "more than 50 items in one request"})
    gateway = [{"model": "items-over", "input_token": 1, "request_id": str(i)} for i in range(51)]
    status, _ = await _post(server, "/v2/usage/gateway-metrics", json.dumps(gateway).encode())
    assert status == 413
    request = tpb.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(51):
        span = scope.spans.add(trace_id=b"\1" * 16, span_id=i.to_bytes(8, "big"), name="chat")
        span.attributes.add(key="gen_ai.request.model").value.string_value = "items-over"
        span.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 1
    async with grpc.aio.insecure_channel(server.grpc) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await tgrpc.TraceServiceStub(channel).Export(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    body = json.dumps(_traces(*[_span("items-fifty", i) for i in range(50)])).encode()
    assert (await _post(server, "/v1/traces", body))[0] == 200
    assert await _models(server, "items-") == [("items-fifty", 250, 50)]


async def test_attribute_bounds_reject_the_item_not_the_request(server: Server) -> None:
    many = {f"tokenbridge.x{i}": i for i in range(20)}
    spans = [
        _span("attr-ok", 1, **{"tokenbridge.user.id": "u" * 255}),
        _span("attr-long", 2, **{"tokenbridge.request.id": "r" * 301}),
        _span("attr-long-user", 3, **{"tokenbridge.user.id": "u" * 256}),
        _span("attr-many", 4, **many),
    ]
    status, answer = await _post(server, "/v1/traces", json.dumps(_traces(*spans)).encode())
    assert status == 200
    assert answer["partialSuccess"]["rejectedSpans"] == "2"
    assert "tokenbridge.request.id: value longer than 300" in answer["partialSuccess"][
        "errorMessage"]  # fmt: skip
    assert "tokenbridge.user.id: longer than 255 characters (256)" in answer["partialSuccess"][
        "errorMessage"]  # fmt: skip
    # unread attributes are never decoded, so they cannot exceed anything
    assert await _models(server, "attr-") == [("attr-many", 5, 1), ("attr-ok", 5, 1)]


async def test_grpc_size_cap_applies_after_decompression_without_retry_info(
    server: Server,
) -> None:
    request = tpb.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = "x" * (64 << 20)
    options = [("grpc.max_send_message_length", -1)]
    before = _peak_rss_kib(server)
    async with grpc.aio.insecure_channel(server.grpc, options=options) as channel:
        export = tgrpc.TraceServiceStub(channel).Export
        for compression in (grpc.Compression.Gzip, grpc.Compression.NoCompression):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await export(request, compression=compression, timeout=60)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = error.value.trailing_metadata() or ()
            assert not {"grpc-status-details-bin", "google.rpc.retryinfo-bin"} & set(
                dict(trailers))  # no RetryInfo: not a retryable refusal
    assert _peak_rss_kib(server) - before < 32 << 10


async def test_grpc_malformed_protobuf_is_invalid_argument(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.grpc) as channel:
        for method in (TRACE, METRICS):
            call = channel.unary_unary(method)
            for body in (b"\xff\xff\xff", b"\x0a\x05abc"):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await call(body, timeout=10)
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert (error.value.details() or "").startswith("malformed protobuf")
            assert await call(b"", timeout=10) == b""
    assert "Traceback" not in server.log()
