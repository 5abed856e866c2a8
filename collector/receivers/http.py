"""OTLP/HTTP receiver (protobuf and JSON, gzip), the GPUStack gateway push, and health."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.decode import json as otlp_json
from collector.decode import protobuf as pb
from collector.decode import wire
from collector.errors import BridgeError, Kind, PermanentError, RetryableError
from collector.ingest import Ingest
from collector.receivers.auth import Credentials, http_middleware
from collector.receivers.body import read_body
from collector.receivers.status import (
    http_status,
    kind_status,
    otlp_error_response,
    retry_after_header,
)

logger = logging.getLogger(__name__)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
Readiness = Callable[[], Awaitable[bool]]


def _content_type(request: web.Request) -> str:
    kind = request.content_type
    if kind in _PROTOBUF_TYPES:
        return PROTOBUF
    if kind == JSON:
        return JSON
    raise PermanentError(
        f"unsupported content type {kind!r}; use {PROTOBUF} or {JSON}", Kind.UNSUPPORTED_MEDIA
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None


def _encode(kind: str, response: Message) -> web.Response:
    """The response in the request's encoding."""
    if kind == PROTOBUF:
        return web.Response(body=response.SerializeToString(), content_type=PROTOBUF)
    return web.json_response(wire.as_json(response))


def _error(kind: str, error: BridgeError) -> web.Response:
    status = http_status(error)
    response = otlp_error_response(kind, status, error.status.rpc, error.message)
    if isinstance(error, RetryableError):
        response.headers["Retry-After"] = retry_after_header(error)
    return response


class HttpRoutes:
    def __init__(self, ingest: Ingest, ready: Readiness, max_body_bytes: int) -> None:
        self._ingest = ingest
        self._ready = ready
        self._max_bytes = max_body_bytes

    async def traces(self, request: web.Request) -> web.Response:
        kind = JSON
        try:
            kind = _content_type(request)
            body = await read_body(request, self._max_bytes)
            self._ingest.admit()
            if kind == PROTOBUF:
                items = pb.spans(wire.parse(tpb.ExportTraceServiceRequest(), body),
                                 self._ingest.mapper.wanted)  # fmt: skip
            else:
                items = otlp_json.spans(_json(body), self._ingest.mapper.wanted)
            result = await self._ingest.spans(items)
        except BridgeError as error:
            return _error(kind, error)
        return _encode(kind, wire.traces_response(result))

    async def metrics(self, request: web.Request) -> web.Response:
        kind = JSON
        try:
            kind = _content_type(request)
            body = await read_body(request, self._max_bytes)
            self._ingest.admit()
            names = self._ingest.metric_names
            if kind == PROTOBUF:
                points = pb.points(wire.parse(mpb.ExportMetricsServiceRequest(), body), names)
            else:
                points = otlp_json.points(_json(body), names)
            result = await self._ingest.points(points)
        except BridgeError as error:
            return _error(kind, error)
        return _encode(kind, wire.metrics_response(result))

    async def gateway(self, request: web.Request) -> web.Response:
        """GPUStack's ``POST /v2/usage/gateway-metrics``: one object or a list."""
        try:
            kind = request.content_type
            if kind not in (JSON, "application/octet-stream", ""):
                raise PermanentError(f"unsupported content type {kind!r}", Kind.UNSUPPORTED_MEDIA)
            body = await read_body(request, self._max_bytes)
            self._ingest.admit()
            doc = _json(body)
            result = await self._ingest.gateway(doc if isinstance(doc, list) else [doc])
        except BridgeError as error:
            return _error(JSON, error)
        return web.json_response(
            {"accepted": result.accepted, "rejected": result.rejected, "message": result.message}
        )

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        if await self._ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=kind_status(Kind.UNAVAILABLE)[0])


def build_app(
    ingest: Ingest, ready: Readiness, max_body_bytes: int, credentials: Credentials | None = None
) -> web.Application:
    routes = HttpRoutes(ingest, ready, max_body_bytes)
    middlewares = [http_middleware(credentials)] if credentials and credentials.enabled else []
    # client_max_size bounds the body as sent; read_body bounds it again once inflated.
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    app.router.add_post("/v1/traces", routes.traces)
    app.router.add_post("/v1/metrics", routes.metrics)
    app.router.add_post("/v2/usage/gateway-metrics", routes.gateway)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    return app


class HttpReceiver:
    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # auto_decompress off: read_body inflates within the size cap (see receivers.body).
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, auto_decompress=False
        )
        self._ssl = ssl_context
        self._host = host
        self._requested_port = port
        self._reuse_port = reuse_port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port,
                           reuse_port=self._reuse_port or None, shutdown_timeout=30.0,
                           ssl_context=self._ssl)  # fmt: skip
        await site.start()
        self.port = int(self._runner.addresses[-1][1])
        scheme = "https" if self._ssl else "http"
        logger.info("OTLP/HTTP listening on %s://%s:%d", scheme, self._host, self.port)

    async def shutdown(self) -> None:
        """Stop accepting; requests in flight finish (they wait for their commit)."""
        await self._runner.cleanup()
