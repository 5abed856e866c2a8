"""OTLP/gRPC receiver: TraceService, MetricsService and LogsService ``Export``, bytes to the
ingest core (log records are answered and counted as ignored).

Transport only: the handler takes the raw request bytes (no grpc deserializer), hands them to
``Ingest.export`` and returns its protobuf answer as is (no serializer); a refusal becomes the
gRPC status of the error's kind, with a ``RetryInfo`` trailer when it is retryable.

``Export`` is unary in OTLP, but it is served as a client-streaming method: on the wire the two
are the same (a unary call is a stream of one message), and a streaming handler starts when the
call's headers arrive, so it can bound how long the message takes (``receivers.body_timeout``).
gRPC has no read timeout of its own: a unary handler is called only once the whole message is
in, so a call stalled mid-message would hold its connection and buffers until the connection
is recycled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.credentials import Credentials
from collector.errors import BridgeError, Kind, PermanentError, RetryableError
from collector.ingest import Ingest
from collector.model import Encoding, Signal
from collector.receivers.auth import GrpcAuth
from collector.receivers.status import Retryable, grpc_code, grpc_trailers, uncounted

logger = logging.getLogger(__name__)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
MAX_CONNECTION_AGE = 300


def _detached(error: BridgeError) -> BridgeError:
    """The error without its traceback. grpc's abort path keeps the exception, the handler's
    frames and itself in a reference cycle that only the cyclic collector frees; under
    overload, with many requests refused at once, the request bodies and decoded requests
    those frames hold added ~25 MB to the peak RSS."""
    return error.with_traceback(None)


class _Export:
    """One OTLP service's ``Export``."""

    def __init__(
        self, ingest: Ingest, signal: Signal, retryable: Retryable, body_timeout: float
    ) -> None:
        self._ingest = ingest
        self._signal = signal
        self._retryable = retryable
        self._body_timeout = body_timeout

    async def export(self, _messages: AsyncIterator[bytes], context: Context) -> bytes:
        # A method, not __call__: grpc runs a handler as a coroutine only when it is a
        # coroutine function. The message is read through the context, within the timeout.
        data = b""
        try:
            data = await self._message(context)
            with self._ingest.inflight.request() as held:
                held.take(len(data))
                return await self._ingest.export(self._signal, Encoding.PROTOBUF, data, held)
        except BridgeError as exc:
            error = _detached(exc)
        del data  # this frame lives on in the abort's traceback: keep no body alive with it
        if isinstance(error, RetryableError):
            self._retryable("grpc")
        try:
            await context.abort(grpc_code(error), error.message, grpc_trailers(error))
        except grpc.aio.AbortError:
            raise  # the answer went out
        except Exception:  # grpc's ExecuteBatchError, not public
            # The call ended before its answer could be sent: the sender cancelled it (its
            # deadline passed) while its message was awaited. Nothing to tell; grpc logs a
            # cancelled call at DEBUG, any other exception with a traceback.
            logger.debug("gRPC call over before its answer (%s)", error.message)
            raise asyncio.CancelledError from None
        raise error  # abort raises; this only tells the type checker

    async def _message(self, context: Context) -> bytes:
        """The call's one message, once it is whole, within the body timeout."""
        try:
            message = await asyncio.wait_for(context.read(), self._body_timeout)
        except TimeoutError:
            raise PermanentError(
                f"request message not received within {self._body_timeout:g} s "
                "(receivers.body_timeout)", Kind.TIMEOUT) from None  # fmt: skip
        if not isinstance(message, bytes):  # grpc.aio.EOF: no message, or the call is over
            if context.cancelled():
                raise asyncio.CancelledError
            raise PermanentError("no request message: Export takes exactly one", Kind.INVALID)
        return message


def _service(
    name: str, export: Callable[[AsyncIterator[bytes], Context], Awaitable[bytes]]
) -> grpc.GenericRpcHandler:
    """The service's ``Export`` on raw bytes both ways (no grpc (de)serializer)."""
    handler = grpc.stream_unary_rpc_method_handler(export)
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
        retryable: Retryable = uncounted,
        timeouts: tuple[float, float] = (10.0, 60.0),
    ) -> None:
        """``retryable`` counts every retryable answer (self-telemetry). ``timeouts``: (header,
        body) seconds: the header timeout bounds the connection handshake; a call's message
        must be whole within the body timeout of the call's start (DEADLINE_EXCEEDED), and a
        connection is recycled every ``MAX_CONNECTION_AGE`` seconds (GOAWAY; calls in flight
        get the body timeout to finish)."""
        header_timeout, body_timeout = timeouts
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
                ("grpc.server_handshake_timeout_ms", int(header_timeout * 1000)),
                ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE * 1000),
                ("grpc.max_connection_age_grace_ms", int(body_timeout * 1000)),
            ],
        )
        self._server.add_generic_rpc_handlers((
            _service(tpb.DESCRIPTOR.services_by_name["TraceService"].full_name,
                     _Export(ingest, Signal.TRACES, retryable, body_timeout).export),
            _service(mpb.DESCRIPTOR.services_by_name["MetricsService"].full_name,
                     _Export(ingest, Signal.METRICS, retryable, body_timeout).export),
            _service(lpb.DESCRIPTOR.services_by_name["LogsService"].full_name,
                     _Export(ingest, Signal.LOGS, retryable, body_timeout).export),
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
