"""Access control at both receivers: the aiohttp middleware and the gRPC interceptor read the
headers, ``collector.credentials.Credentials`` decides, and a refusal is answered with the
status of ``Kind.UNAUTHENTICATED``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from collector.credentials import GATEWAY_HEADER, REFUSED, Credentials
from collector.errors import STATUS, Kind
from collector.receivers.status import (
    encoding_of,
    grpc_status,
    kind_status,
    otlp_error_response,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_middleware(credentials: Credentials) -> Any:
    """aiohttp middleware: 401 before the body is read when the credentials are refused."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        allowed = credentials.allows_http(
            request.path, headers.get("Authorization"), headers.get(GATEWAY_HEADER)
        )
        if allowed:
            return await handler(request)
        status, code = kind_status(Kind.UNAUTHENTICATED)
        response = otlp_error_response(encoding_of(request.content_type), status, code, REFUSED)
        response.headers["WWW-Authenticate"] = 'Bearer realm="tokenbridge"'
        return response

    return authenticate


def _refuse() -> grpc.RpcMethodHandler:
    async def refuse(_messages: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc_status(STATUS[Kind.UNAUTHENTICATED].rpc), REFUSED)

    # Client-streaming, as ``Export`` is served: refused when its headers arrive, its
    # message never read nor parsed.
    return grpc.stream_unary_rpc_method_handler(refuse)


class GrpcAuth:
    """gRPC interceptor: ``authorization: Bearer <token>`` metadata on every call.

    Registered as a virtual subclass of ``grpc.aio.ServerInterceptor`` (an ABC) rather than
    subclassing it: grpc ships no type information, and the server only checks isinstance.
    """

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._refuse = _refuse()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        authorization = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
                break
        if self._credentials.bearer_ok(authorization):
            return await continuation(details)
        return self._refuse


grpc.aio.ServerInterceptor.register(GrpcAuth)
