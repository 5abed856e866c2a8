"""What the HTTP server logs about requests it could not parse: one line each, rate limited,
never the request's bytes.

aiohttp logs a malformed request (a bad line break in the headers, a bad Content-Length) at
ERROR with a traceback whose message quotes the offending raw header line, so a request
carrying ``Authorization: Bearer <token>`` put the token in the log, and anyone on the network
could flood the log with multi-line tracebacks without a credential. Its server logger is
replaced by one whose filter rewrites such records to a single WARNING line naming the
client and the parser's reason (the text before the quoted bytes), and lets at most
``BURST`` lines through per ``WINDOW`` seconds; the next line let through says how many were
left out. Bearer tokens are masked in whatever else that logger writes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

BURST = 10
WINDOW = 60.0
_BEARER = re.compile(r"(?i)(bearer\s+|x-gpustack-auth-token:\s*)\S+")


def mask(text: str) -> str:
    """``text`` with bearer tokens and gateway signatures replaced by ``***``."""
    return _BEARER.sub(r"\1***", text)


def reason(exc: BaseException) -> str:
    """The parser's reason without the bytes it quotes: aiohttp's ``BadHttpMessage`` message
    is the reason, a colon, then the raw line."""
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) else type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return mask(first.rstrip(":").strip()[:200])


class MalformedRequests(logging.Filter):
    """Rewrites aiohttp's "Error handling request" records; drops those over the rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._window_start = -WINDOW
        self._in_window = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed HTTP request from %s: %s"
            record.args = (client, reason(exc))
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        else:
            record.msg = mask(str(record.msg))
        if not self._admit():
            return False
        if self._suppressed:
            record.msg = f"{record.msg} ({self._suppressed} similar lines left out)"
            self._suppressed = 0
        return True

    def _admit(self) -> bool:
        now = self._clock()
        if now - self._window_start >= WINDOW:
            self._window_start, self._in_window = now, 0
        if self._in_window >= BURST:
            self._suppressed += 1
            return False
        self._in_window += 1
        return True


def server_logger(name: str = "collector.receivers.http.requests") -> logging.Logger:
    """A logger for aiohttp's request handler (its ``logger`` argument) that writes one
    masked, rate-limited line per malformed request."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger
