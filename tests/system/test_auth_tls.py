"""Access control and TLS with real clients: the OTel SDK exporters (gRPC and HTTP) with
headers and certificates, raw HTTP, raw gRPC, and a GPUStack-style signed gateway push."""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.certs import Certificate, self_signed
from tests.support import Server, query

OLD, NEW = "tok-old-4f1c", "tok-new-9a2e"
SECRET = "gateway-secret"
SIGNATURE = hmac.new(SECRET.encode(), b"gateway-metrics-push", hashlib.sha256).hexdigest()
REFUSED = {"code": 16, "message": "unauthenticated: missing or invalid credentials"}
WRONG_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer nope"},
    {"Authorization": f"Basic {OLD}"},
    {"Authorization": f"Bearer {OLD}x"},
    {"Authorization": f"Bearer {OLD[:-1]}"},
    {"Authorization": "Bearer"},
    {"X-GPUStack-Auth-Token": SIGNATURE[:-1] + "0"},
]
ENDPOINTS = ["/v1/traces", "/v1/metrics", "/v2/usage/gateway-metrics"]


def _stop(server: Server) -> None:
    process = server.process
    server.stop()
    if process is not None and process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, cert: Certificate) -> Iterator[Server]:
    """TLS on both receivers, two bearer tokens (a rotation) and the gateway secret."""
    workdir = tmp_path_factory.mktemp("secured")
    config = {
        "auth": {"tokens": [OLD, NEW], "gateway_secret": SECRET},
        "tls": {"cert_file": str(cert.cert), "key_file": str(cert.key)},
        "commit": {"flush_interval": 0.01},
    }
    server = Server(f"sqlite:///{workdir / 'tb.db'}", workdir, config).start()
    yield server
    _stop(server)


def _spans(model: str, input_tokens: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tests").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", 1)
    provider.shutdown()
    return list(memory.get_finished_spans())


def _grpc_export(server: Server, cert: Certificate, headers: dict[str, str] | None,
                 model: str, tokens: int) -> bool:  # fmt: skip
    exporter = GrpcSpanExporter(
        endpoint=server.grpc, credentials=grpc.ssl_channel_credentials(cert.pem),
        headers=headers, timeout=10,
    )  # fmt: skip
    try:
        return bool(exporter.export(_spans(model, tokens)) == SpanExportResult.SUCCESS)
    finally:
        exporter.shutdown()


def _http_export(server: Server, cert: Certificate, headers: dict[str, str] | None,
                 model: str, tokens: int) -> bool:  # fmt: skip
    # requests lets REQUESTS_CA_BUNDLE (set on this machine kind) override the exporter's
    # certificate_file; a session that ignores the environment keeps the exporter's choice.
    session = requests.Session()
    session.trust_env = False
    exporter = HttpSpanExporter(
        endpoint=f"https://127.0.0.1:{server.http_port}/v1/traces",
        certificate_file=str(cert.cert), headers=headers, timeout=10, session=session,
    )  # fmt: skip
    try:
        return bool(exporter.export(_spans(model, tokens)) == SpanExportResult.SUCCESS)
    finally:
        exporter.shutdown()


async def _rollup(server: Server, model: str) -> list[tuple[Any, ...]]:
    return await query(
        server.database_url,
        "SELECT prompt_token_count, completion_token_count, request_count FROM model_usages "
        "WHERE model_name = :m",
        m=model,
    )


async def test_sdk_exporters_with_either_token_are_counted(
    secured: Server, cert: Certificate
) -> None:
    assert _grpc_export(secured, cert, {"authorization": f"Bearer {OLD}"}, "grpc-ok", 10)
    assert _grpc_export(secured, cert, {"authorization": f"bearer {NEW}"}, "grpc-ok", 20)
    assert _http_export(secured, cert, {"Authorization": f"Bearer {OLD}"}, "http-ok", 30)
    assert _http_export(secured, cert, {"Authorization": f"Bearer {NEW}"}, "http-ok", 40)
    assert await _rollup(secured, "grpc-ok") == [(30, 2, 2)]
    assert await _rollup(secured, "http-ok") == [(70, 2, 2)]


async def test_sdk_exporters_with_wrong_or_no_token_count_nothing(
    secured: Server, cert: Certificate
) -> None:
    for headers in (None, {"authorization": "Bearer nope"}, {"authorization": OLD}):
        assert not _grpc_export(secured, cert, headers, "grpc-refused", 10)
        http_headers = {k.title(): v for k, v in (headers or {}).items()}
        assert not _http_export(secured, cert, http_headers, "http-refused", 10)
    assert await _rollup(secured, "grpc-refused") == []
    assert await _rollup(secured, "http-refused") == []


def _tls_client(cert: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=cert.pem.decode())


async def test_raw_http_refusals_are_uniform_on_every_endpoint(
    secured: Server, cert: Certificate
) -> None:
    base = f"https://127.0.0.1:{secured.http_port}"
    body = {"model": "refused", "input_token": 5, "request_id": "r-1"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_tls_client(cert))) as s:
        for path in ENDPOINTS:
            for headers in WRONG_HEADERS:
                async with s.post(base + path, json=body, headers=headers) as response:
                    assert response.status == 401, (path, headers)
                    assert await response.json() == REFUSED
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
            # protobuf requests get the refusal as a google.rpc.Status protobuf
            async with s.post(base + path, data=b"\x00", headers={
                "Content-Type": "application/x-protobuf"}) as response:  # fmt: skip
                assert response.status == 401
                assert response.content_type == "application/x-protobuf"
        # the gateway secret is no bearer token for OTLP
        async with s.post(base + "/v1/traces", json={}, headers={
                "X-GPUStack-Auth-Token": SIGNATURE}) as response:  # fmt: skip
            assert response.status == 401
        for path in ("/healthz", "/readyz"):  # health stays open by default
            async with s.get(base + path) as response:
                assert response.status == 200
    assert await _rollup(secured, "refused") == []


async def test_gpustack_signed_push_and_bearer_push_are_counted(
    secured: Server, cert: Certificate
) -> None:
    url = f"https://127.0.0.1:{secured.http_port}/v2/usage/gateway-metrics"
    pushes = [
        ({"X-GPUStack-Auth-Token": SIGNATURE}, "g-1", 7),
        ({"X-GPUStack-Auth-Token": SIGNATURE.upper()}, "g-2", 11),
        ({"Authorization": f"Bearer {NEW}"}, "g-3", 13),
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_tls_client(cert))) as s:
        for headers, request_id, tokens in pushes:
            body = {"model": "gw-signed", "input_token": tokens, "output_token": 1,
                    "total_token": tokens + 1, "completed": True, "request_id": request_id}
            async with s.post(url, json=body, headers=headers) as response:
                assert response.status == 200
                answer = await response.json()
                assert answer == {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""}
    assert await _rollup(secured, "gw-signed") == [(31, 3, 3)]


async def test_raw_grpc_refusal_is_unauthenticated_on_both_services(
    secured: Server, cert: Certificate
) -> None:
    credentials = grpc.ssl_channel_credentials(cert.pem)
    async with grpc.aio.secure_channel(secured.grpc, credentials) as channel:
        calls = [
            (tgrpc.TraceServiceStub(channel).Export, tpb.ExportTraceServiceRequest()),
            (mgrpc.MetricsServiceStub(channel).Export, mpb.ExportMetricsServiceRequest()),
        ]
        for export, request in calls:
            for metadata in ((), (("authorization", "Bearer nope"),),
                             (("x-gpustack-auth-token", SIGNATURE),)):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await export(request, metadata=metadata, timeout=10)
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error.value.details() == REFUSED["message"]
            await export(request, metadata=(("authorization", f"Bearer {NEW}"),), timeout=10)


async def test_plaintext_clients_cannot_talk_to_tls_receivers(secured: Server) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{secured.http}/healthz") as response:
                await response.read()
    async with grpc.aio.insecure_channel(secured.grpc) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await tgrpc.TraceServiceStub(channel).Export(
                tpb.ExportTraceServiceRequest(),
                metadata=(("authorization", f"Bearer {OLD}"),), timeout=10,
            )  # fmt: skip
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_protected_health_needs_a_token_and_plain_http_stays_possible(
    tmp_path: Path, server_factory: type[Server]
) -> None:
    config = {"auth": {"tokens": [OLD], "protect_health": True}}
    server = server_factory(f"sqlite:///{tmp_path / 'tb.db'}", tmp_path, config).start()
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(server.http + path) as response:
                assert response.status == 401
                assert await response.json() == REFUSED
            headers = {"Authorization": f"Bearer {OLD}"}
            async with session.get(server.http + path, headers=headers) as response:
                assert response.status == 200
        # no gateway secret configured: the signature opens nothing, the token does
        body = {"model": "plain", "input_token": 3, "request_id": "p-1"}
        url = server.http + "/v2/usage/gateway-metrics"
        async with session.post(url, json=body, headers={
                "X-GPUStack-Auth-Token": SIGNATURE}) as response:  # fmt: skip
            assert response.status == 401
        async with session.post(url, json=body, headers={
                "Authorization": f"Bearer {OLD}"}) as response:  # fmt: skip
            assert response.status == 200
    assert await _rollup(server, "plain") == [(3, 0, 1)]
    server.stop()


def test_invalid_auth_and_tls_configuration_is_refused(tmp_path: Path) -> None:
    from collector.config import ConfigError, load

    with pytest.raises(ConfigError, match=r"auth\.tokens"):
        load(overrides={"auth": {"tokens": ["has space"]}}, environ={})
    with pytest.raises(ConfigError, match="tls"):
        load(overrides={"tls": {"cert_file": str(tmp_path / "missing.pem")}}, environ={})
    config = load(environ={"TOKENBRIDGE_AUTH__TOKENS": "[a1, b2]"})
    assert [t.get_secret_value() for t in config.auth.tokens] == ["a1", "b2"]
    assert "a1" not in repr(config)
