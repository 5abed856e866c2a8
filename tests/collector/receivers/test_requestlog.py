"""The HTTP server's request log: one masked line per malformed request, at most 10 a minute,
and the count of those left out on the next line let through."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from collector.receivers.requestlog import MalformedRequests, mask


def _record(
    exc: BaseException | None, msg: str = "Error handling request from %s"
) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, ("10.0.0.9",),
                             exc_info)  # fmt: skip


def test_a_malformed_request_becomes_one_warning_without_its_bytes() -> None:
    now = [0.0]
    log = MalformedRequests(clock=lambda: now[0])
    exc = BadHttpMessage("Missing expected CR after header value:\n\n"
                         "    b'Authorization: Bearer s3cr3t\\nX: a'\n     ^")  # fmt: skip
    record = _record(exc)
    assert log.filter(record)
    assert (record.levelname, record.getMessage(), record.exc_info) == (
        "WARNING", "malformed HTTP request from 10.0.0.9: Missing expected CR after header "
        "value", None)  # fmt: skip


def test_past_ten_lines_a_minute_the_rest_are_counted_not_written() -> None:
    now = [100.0]
    log = MalformedRequests(clock=lambda: now[0])
    let_through = [log.filter(_record(BadHttpMessage("Invalid header token"))) for _ in range(25)]
    assert let_through == [True] * 10 + [False] * 15
    now[0] += 60.0
    record = _record(BadHttpMessage("Invalid header token"))
    assert log.filter(record)
    assert record.getMessage().endswith("Invalid header token (15 similar lines left out)")


def test_other_records_keep_their_traceback_with_tokens_masked() -> None:
    log = MalformedRequests(clock=lambda: 0.0)
    text = "handler failed for Bearer abc.def and X-GPUStack-Auth-Token: 0f1e"
    record = _record(ValueError("a bug"), text)
    record.args = ()
    assert log.filter(record)
    assert record.exc_info is not None and record.levelname == "ERROR"
    assert record.getMessage() == "handler failed for Bearer *** and X-GPUStack-Auth-Token: ***"
    assert mask("authorization: bearer tok") == "authorization: bearer ***"
