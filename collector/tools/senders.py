"""The load generator's transports: send one pre-encoded body, classify the answer.

Bodies are sent as they are (gRPC with no serializer), so the sender costs little beside the
bridge it measures.
"""

from __future__ import annotations

import enum
import socket
from typing import Protocol

import aiohttp
import grpc

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_GRPC_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})
DEFAULT_RETRY_AFTER = 0.5


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    FAILED = "failed"


class Sender(Protocol):
    async def send(self, body: bytes) -> tuple[Outcome, float, str]:
        """(outcome, seconds to wait before a retry, the cause of a retry or failure: e.g.
        ``connection refused``, ``HTTP 503``, ``gRPC INVALID_ARGUMENT: ...``)."""

    async def close(self) -> None: ...


class GrpcSender:
    """Round-robin over ``connections`` channels: with ``serve --workers N`` the kernel spreads
    connections, not calls, over the workers."""

    def __init__(self, target: str, timeout: float, connections: int = 1) -> None:
        options = [("grpc.max_send_message_length", -1),
                   ("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
        self._channels = [grpc.aio.insecure_channel(target, options=options)
                          for _ in range(max(1, connections))]  # fmt: skip
        self._exports = [c.unary_unary(TRACE_EXPORT) for c in self._channels]
        self._next = 0
        self._timeout = timeout

    async def send(self, body: bytes) -> tuple[Outcome, float, str]:
        self._next = (self._next + 1) % len(self._exports)
        try:
            await self._exports[self._next](body, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            cause = _grpc_cause(error)
            if error.code() in _GRPC_RETRYABLE:
                return Outcome.RETRY, DEFAULT_RETRY_AFTER, cause
            return Outcome.FAILED, 0.0, cause
        return Outcome.OK, 0.0, ""

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


class HttpSender:
    def __init__(self, url: str, content_type: str, timeout: float) -> None:
        self._url = url
        self._headers = {"Content-Type": content_type}
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def send(self, body: bytes) -> tuple[Outcome, float, str]:
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as answer:
                text = (await answer.read())[:200].decode(errors="replace")
                if answer.status == 200:
                    return Outcome.OK, 0.0, ""
                if answer.status in _HTTP_RETRYABLE:
                    retry = _retry_after(answer.headers.get("Retry-After"))
                    return Outcome.RETRY, retry, f"HTTP {answer.status}"
                return Outcome.FAILED, 0.0, f"HTTP {answer.status}: {text}"
        except aiohttp.ClientConnectorError as error:
            # A refused connection (bridge restarting) is retried, as exporters do.
            return Outcome.RETRY, DEFAULT_RETRY_AFTER, _connect_cause(error.os_error)
        except aiohttp.ClientConnectionError as error:
            return Outcome.RETRY, DEFAULT_RETRY_AFTER, f"connection lost ({error})"
        except TimeoutError:
            return Outcome.RETRY, DEFAULT_RETRY_AFTER, "timed out"

    async def close(self) -> None:
        await self._session.close()


def _connect_cause(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect ({error.strerror or error})"


def _grpc_cause(error: grpc.aio.AioRpcError) -> str:
    details = error.details() or ""
    if "Connection refused" in details:
        return "connection refused"
    return f"gRPC {error.code().name}: {details[:160]}".rstrip(": ")


def nothing_listens(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Why a TCP connection to ``host:port`` fails (e.g. ``connection refused``), or None."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return _connect_cause(error) if not isinstance(error, TimeoutError) else "timed out"
    return None


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


async def open_sender(
    protocol: str, host: str, grpc_port: int, http_port: int, timeout: float,
    connections: int = 1,
) -> Sender:  # fmt: skip
    """The sender for ``protocol``: grpc, http (protobuf), json, or gateway."""
    base = f"http://{host}:{http_port}"
    if protocol == "grpc":
        return GrpcSender(f"{host}:{grpc_port}", timeout, connections)
    if protocol == "http":
        return HttpSender(f"{base}/v1/traces", "application/x-protobuf", timeout)
    if protocol == "json":
        return HttpSender(f"{base}/v1/traces", "application/json", timeout)
    if protocol == "gateway":
        return HttpSender(f"{base}/v2/usage/gateway-metrics", "application/json", timeout)
    raise ValueError(f"unknown protocol {protocol!r}")
