"""The MeterProvider of one bridge: a Prometheus scrape endpoint and/or an OTLP push.

The Prometheus reader registers in a registry this object owns (not prometheus_client's
global one), so several bridges can run in one process, each serving its own metrics.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Counter, MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import (
    CardinalityLimits,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, make_wsgi_app, start_http_server
from prometheus_client.exposition import ThreadingWSGIServer

from collector.config import MetricsConfig
from collector.credentials import REFUSED, Credentials
from collector.errors import STATUS, Kind

logger = logging.getLogger(__name__)
SCOPE = "tokenbridge"


def _otlp_exporter(config: MetricsConfig) -> MetricExporter:
    headers = dict(config.otlp_headers)
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        insecure = not (config.otlp_endpoint or "").startswith("https://")
        return OTLPMetricExporter(config.otlp_endpoint, insecure=insecure, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    return HttpExporter(config.otlp_endpoint, headers=headers)


class MetricsExport:
    """Owns the readers and the scrape server; ``meter`` is what the recorders use."""

    def __init__(self, config: MetricsConfig, resource: Resource | None = None) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        limits: CardinalityLimits = {Counter: config.max_series,
                                     ObservableCounter: config.max_series}  # fmt: skip
        readers: list[MetricReader] = []
        if config.prometheus:
            readers.append(PrometheusMetricReader(
                scope_info_enabled=False, registry=self.registry, cardinality_limits=limits,
            ))  # fmt: skip
        if config.otlp_endpoint:
            readers.append(PeriodicExportingMetricReader(
                _otlp_exporter(config), export_interval_millis=config.otlp_interval * 1000,
                cardinality_limits=limits,
            ))  # fmt: skip
        self.provider = MeterProvider(
            metric_readers=readers,
            resource=resource or Resource.create({"service.name": "tokenbridge"}),
        )
        self.meter: Meter = self.provider.get_meter(SCOPE)
        self.port: int | None = None
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None
        self._stopped = False

    def start(self) -> None:
        if not self.config.prometheus:
            return
        tokens = [token.get_secret_value() for token in self.config.tokens]
        if tokens:
            self._server, self._thread = _serve_guarded(
                self.config.host, self.config.port, self.registry, Credentials(tokens)
            )
        else:
            self._server, self._thread = start_http_server(
                self.config.port, self.config.host, registry=self.registry
            )
        self.port = int(self._server.server_port)
        logger.info("Prometheus metrics on http://%s:%d/metrics", self.config.host, self.port)

    def shutdown(self) -> None:
        """Stop serving; push what the OTLP reader has not sent yet. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if not self._stopped:
            self._stopped = True
            self.provider.shutdown()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes come every few seconds: not worth a log line each."""


_UNAUTHORIZED = STATUS[Kind.UNAUTHENTICATED].http
REFUSED_STATUS = f"{_UNAUTHORIZED.value} {_UNAUTHORIZED.phrase}"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _serve_guarded(
    host: str, port: int, registry: CollectorRegistry, credentials: Credentials
) -> tuple[WSGIServer, Thread]:
    """prometheus_client's scrape app behind a bearer-token check, served from a thread."""
    metrics: WsgiApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if credentials.bearer_ok(environ.get("HTTP_AUTHORIZATION")):
            return metrics(environ, start_response)
        start_response(REFUSED_STATUS, [("Content-Type", "text/plain; charset=utf-8"),
                                        ("WWW-Authenticate", "Bearer")])  # fmt: skip
        return [REFUSED.encode() + b"\n"]

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("_Server", (ThreadingWSGIServer,), {"address_family": family})
    server: WSGIServer = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    thread = Thread(target=server.serve_forever, name="tokenbridge-metrics", daemon=True)
    thread.start()
    return server, thread
