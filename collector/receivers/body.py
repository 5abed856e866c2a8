"""HTTP request bodies: read and inflate within the size cap, and never further.

aiohttp's own decompression is turned off (``auto_decompress=False`` on the runner): how far it
inflates before the size check has changed between its versions, and a gzip bomb (1 MiB that
inflates to 1 GiB) must cost at most the cap. Here the compressed body is read up to the cap
(aiohttp's ``client_max_size``), then inflated in slices of ``CHUNK`` bytes; the request is
refused (413) as soon as the output passes the cap, so a bomb is never inflated whole.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass

from aiohttp import ClientConnectionError, web

from collector.decode.items import Body
from collector.errors import Kind, PermanentError
from collector.inflight import Held, InFlight
from collector.receivers.requestlog import server_logger

requests_log = server_logger()
"""Aborted uploads log there: one masked line each, within the malformed requests' rate."""

CHUNK = 1 << 20
_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_ENCODINGS: dict[str, int | None] = {
    "": None,
    "identity": None,
    "gzip": _GZIP,
    "x-gzip": _GZIP,
    "deflate": _ZLIB,
}


def too_large(limit: int) -> PermanentError:
    return PermanentError(f"request body over {limit} bytes (after decompression)", Kind.TOO_LARGE)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a body may take: ``idle`` seconds at most between two pieces of it, ``total``
    seconds at most for all of it (``receivers.idle_timeout``, ``receivers.body_timeout``)."""

    idle: float = 10.0
    total: float = 60.0


DEFAULT_TIMEOUTS = Timeouts()


async def read_body(
    request: web.Request, limit: int, held: Held | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> Body:
    """The decoded body, at most ``limit`` bytes, each byte read or inflated taken from
    ``held`` (the in-flight budget). Raises ``PermanentError`` (invalid, too large,
    unsupported media, timed out) or ``RetryableError`` (over the in-flight budget)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        raise PermanentError(
            f"unsupported content encoding {encoding[:40]!r}; use gzip, deflate or identity",
            Kind.UNSUPPORTED_MEDIA,
        )
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    held = held if held is not None else Held(InFlight(2**62, 2**62))
    raw = await _read(request, limit, held, timeouts)
    wbits = _ENCODINGS[encoding]
    if wbits is None:
        return raw
    body = await asyncio.to_thread(inflate, raw, wbits, limit)  # zlib lets the loop run
    del raw
    held.take(len(body))
    return body


async def _read(
    request: web.Request, limit: int, held: Held, timeouts: Timeouts
) -> bytearray:
    """The body as sent; a pause longer than ``timeouts.idle`` or a body slower than
    ``timeouts.total`` is refused (408), an upload the client gave up is refused with one
    WARNING line, and what was read of either is dropped at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeouts.total
    buffer = bytearray()
    try:
        async with asyncio.timeout(timeouts.idle) as timer:
            while chunk := await request.content.readany():
                held.take(len(chunk))
                buffer += chunk
                if len(buffer) > limit:
                    raise too_large(limit)
                timer.reschedule(min(loop.time() + timeouts.idle, deadline))
    except TimeoutError:
        got = len(buffer)
        del buffer
        raise PermanentError(f"request body not received in time ({got} bytes in; at most "
                             f"{timeouts.idle:g} s between pieces, {timeouts.total:g} s in "
                             "all)", Kind.TIMEOUT) from None  # fmt: skip
    except (ConnectionError, ClientConnectionError):
        got = len(buffer)
        del buffer
        requests_log.warning("upload from %s aborted by the client after %d bytes",
                             request.remote, got)  # fmt: skip
        raise PermanentError("upload aborted by the client") from None
    return buffer  # bytes-like; not bytes(buffer): a copy would double the peak


def inflate(data: Body, wbits: int, limit: int) -> bytearray:
    """Inflate gzip (members one after another, as gzip allows) or zlib data, refusing output
    past ``limit`` once at most ``limit + CHUNK`` bytes were produced."""
    out = bytearray()
    pending = data
    try:
        while pending:
            pending = _member(zlib.decompressobj(wbits), pending, out, limit)
            if wbits != _GZIP:
                break
    except zlib.error as exc:
        raise PermanentError(f"malformed compressed body: {exc}") from None
    return out  # not bytes(out): a copy would double the peak of a 64 MiB body


def _member(inflater: zlib._Decompress, data: Body, out: bytearray, limit: int) -> bytes:
    """Inflate one stream into ``out``; return the bytes after it."""
    pending = data
    while not inflater.eof:
        piece = inflater.decompress(pending, CHUNK)
        out += piece
        if len(out) > limit:
            raise too_large(limit)
        if not piece and len(inflater.unconsumed_tail) == len(pending):
            break  # no progress: the input ended before the stream did
        pending = inflater.unconsumed_tail
    if not inflater.eof:
        raise PermanentError("malformed compressed body: truncated")
    return inflater.unused_data
