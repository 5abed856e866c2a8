"""OTLP/gRPC receiver: TraceService and MetricsService ``Export`` over the ingest core."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.decode import protobuf as pb
from collector.decode import wire
from collector.errors import BridgeError
from collector.ingest import Ingest
from collector.model import IngestResult
from collector.receivers.auth import Credentials, GrpcAuth
from collector.receivers.status import grpc_code, grpc_trailers

logger = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _detached(error: BridgeError) -> BridgeError:
    """The error without its traceback. grpc's abort path keeps the exception, the handler's
    frames and itself in a reference cycle that only the cyclic collector frees; under
    overload, with many requests refused at once, the request bodies and decoded requests
    those frames hold added ~25 MB to the peak RSS."""
    return error.with_traceback(None)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> NoReturn:
    if isinstance(error, BridgeError):
        await context.abort(grpc_code(error), error.message, grpc_trailers(error))
    raise error


class _Export:
    """An OTLP service's ``Export``: ``ingest`` the raw request bytes, ``respond`` with the
    service's response; a refusal becomes the gRPC status of the error."""

    def __init__(
        self,
        ingest: Callable[[bytes], Awaitable[IngestResult]],
        respond: Callable[[IngestResult], Message],
    ) -> None:
        self._ingest = ingest
        self._respond = respond

    async def export(self, data: bytes, context: Context) -> Message:
        # A method, not __call__: grpc runs a handler as a coroutine only when it is a
        # coroutine function.
        try:
            return self._respond(await self._ingest(data))
        except BridgeError as exc:
            error = _detached(exc)
        del data  # this frame lives on in the abort's traceback: keep no body alive with it
        await _abort(context, error)


def _traces(ingest: Ingest) -> _Export:
    async def spans(data: bytes) -> IngestResult:
        ingest.admit()
        request = wire.parse(tpb.ExportTraceServiceRequest(), data)
        return await ingest.spans(pb.spans(request, ingest.mapper.wanted))

    return _Export(spans, wire.traces_response)


def _metrics(ingest: Ingest) -> _Export:
    async def points(data: bytes) -> IngestResult:
        ingest.admit()
        request = wire.parse(mpb.ExportMetricsServiceRequest(), data)
        return await ingest.points(pb.points(request, ingest.metric_names))

    return _Export(points, wire.metrics_response)


def _service(
    name: str, export: Callable[[bytes, Context], Awaitable[Message]]
) -> grpc.GenericRpcHandler:
    """The service's ``Export`` taking the raw request bytes (no grpc deserializer)."""
    handler = grpc.unary_unary_rpc_method_handler(
        export, response_serializer=lambda message: message.SerializeToString()
    )
    return grpc.method_handlers_generic_handler(name, {"Export": handler})


class GrpcReceiver:
    def __init__(
        self,
        ingest: Ingest,
        host: str,
        port: int,
        max_bytes: int,
        reuse_port: bool = False,
        credentials: Credentials | None = None,
        tls: grpc.ServerCredentials | None = None,
    ) -> None:
        interceptors = [GrpcAuth(credentials)] if credentials and credentials.enabled else []
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                # gRPC checks this after decompression too, and stops inflating a compressed
                # message once past it (RESOURCE_EXHAUSTED "Decompressed message larger than
                # max"): a gzip bomb is refused without being inflated whole.
                ("grpc.max_receive_message_length", max_bytes),
                # gRPC sets SO_REUSEPORT by default: a second bridge on a taken port would
                # share it silently. Only worker processes share on purpose.
                ("grpc.so_reuseport", int(reuse_port)),
            ],
        )
        self._server.add_generic_rpc_handlers((
            _service(tpb.DESCRIPTOR.services_by_name["TraceService"].full_name,
                     _traces(ingest).export),
            _service(mpb.DESCRIPTOR.services_by_name["MetricsService"].full_name,
                     _metrics(ingest).export),
        ))  # fmt: skip
        address = f"{host}:{port}"
        if tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, tls)
        self._address = f"{host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        logger.info("OTLP/gRPC listening on %s", self._address)

    async def shutdown(self, grace: float = 30.0) -> None:
        """Refuse new calls; let calls in flight finish (they wait for their commit)."""
        await self._server.stop(grace)
