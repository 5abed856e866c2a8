"""OTLP/HTTP receiver (protobuf and JSON, gzip), the GPUStack gateway push, and health.

Transport only: each route checks the media type, reads the body within the size cap
(``receivers.body``), hands the bytes to ``Ingest.export`` and writes back its answer, or the
refusal of the error's kind (``receivers.status``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from collector.credentials import Credentials
from collector.errors import BridgeError, Kind, PermanentError, RetryableError
from collector.ingest import Ingest
from collector.model import Encoding, Signal
from collector.receivers.auth import http_middleware
from collector.receivers.body import read_body
from collector.receivers.status import (
    PROTOBUF_TYPES,
    Retryable,
    error_response,
    kind_status,
    uncounted,
)

logger = logging.getLogger(__name__)
Readiness = Callable[[], Awaitable[bool]]
GATEWAY_TYPES = frozenset({Encoding.JSON, "application/octet-stream", ""})


def _otlp_encoding(request: web.Request) -> Encoding:
    kind = request.content_type
    if kind in PROTOBUF_TYPES:
        return Encoding.PROTOBUF
    if kind == Encoding.JSON:
        return Encoding.JSON
    raise PermanentError(
        f"unsupported content type {kind!r}; use {Encoding.PROTOBUF} or {Encoding.JSON}",
        Kind.UNSUPPORTED_MEDIA,
    )


def _gateway_encoding(request: web.Request) -> Encoding:
    kind = request.content_type
    if kind not in GATEWAY_TYPES:
        raise PermanentError(f"unsupported content type {kind!r}", Kind.UNSUPPORTED_MEDIA)
    return Encoding.JSON


class HttpRoutes:
    def __init__(
        self,
        ingest: Ingest,
        ready: Readiness,
        max_body_bytes: int,
        retryable: Retryable = uncounted,
    ) -> None:
        self._ingest = ingest
        self._ready = ready
        self._max_bytes = max_body_bytes
        self._retryable = retryable

    async def traces(self, request: web.Request) -> web.Response:
        return await self._export(request, Signal.TRACES, _otlp_encoding)

    async def metrics(self, request: web.Request) -> web.Response:
        return await self._export(request, Signal.METRICS, _otlp_encoding)

    async def logs(self, request: web.Request) -> web.Response:
        """OTLP logs: answered as OTLP expects, every record counted as ignored."""
        return await self._export(request, Signal.LOGS, _otlp_encoding)

    async def gateway(self, request: web.Request) -> web.Response:
        """GPUStack's ``POST /v2/usage/gateway-metrics``: one object or a list."""
        return await self._export(request, Signal.GATEWAY, _gateway_encoding)

    async def _export(
        self, request: web.Request, signal: Signal, encoding_of: Callable[[web.Request], Encoding]
    ) -> web.Response:
        encoding = Encoding.JSON
        try:
            encoding = encoding_of(request)
            body = await read_body(request, self._max_bytes)
            answer = await self._ingest.export(signal, encoding, body)
        except BridgeError as error:
            if isinstance(error, RetryableError):
                self._retryable("http")
            return error_response(encoding, error)
        if encoding is Encoding.PROTOBUF:
            return web.Response(body=answer, content_type=encoding)
        return web.Response(body=answer, content_type=encoding, charset="utf-8")

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        if await self._ready():
            return web.json_response({"status": "ready"})
        status, _code = kind_status(Kind.UNAVAILABLE)
        return web.json_response({"status": "not ready"}, status=status)


def build_app(
    ingest: Ingest,
    ready: Readiness,
    max_body_bytes: int,
    credentials: Credentials | None = None,
    retryable: Retryable = uncounted,
) -> web.Application:
    """The routes; ``retryable`` counts every retryable answer (self-telemetry)."""
    routes = HttpRoutes(ingest, ready, max_body_bytes, retryable)
    middlewares = [http_middleware(credentials)] if credentials and credentials.enabled else []
    # client_max_size bounds the body as sent; read_body bounds it again once inflated.
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    app.router.add_post("/v1/traces", routes.traces)
    app.router.add_post("/v1/metrics", routes.metrics)
    app.router.add_post("/v1/logs", routes.logs)
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
