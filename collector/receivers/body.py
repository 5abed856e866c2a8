"""HTTP request bodies: read and inflate within the size cap, and never further.

aiohttp's own decompression is turned off (``auto_decompress=False`` on the runner): how far it
inflates before the size check has changed between its versions, and a gzip bomb (1 MiB that
inflates to 1 GiB) must cost at most the cap. Here the compressed body is read up to the cap
(aiohttp's ``client_max_size``), then inflated in slices of ``CHUNK`` bytes; the request is
refused (413) as soon as the output passes the cap, so a bomb is never inflated whole.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from collector.errors import Kind, PermanentError

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


async def read_body(request: web.Request, limit: int) -> bytes:
    """The decoded body, at most ``limit`` bytes. Raises ``PermanentError`` (invalid, too
    large, unsupported media)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        raise PermanentError(
            f"unsupported content encoding {encoding[:40]!r}; use gzip, deflate or identity",
            Kind.UNSUPPORTED_MEDIA,
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    wbits = _ENCODINGS[encoding]
    return raw if wbits is None else inflate(raw, wbits, limit)


def inflate(data: bytes, wbits: int, limit: int) -> bytes:
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
    return bytes(out)


def _member(inflater: zlib._Decompress, data: bytes, out: bytearray, limit: int) -> bytes:
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
