"""The log an operator reads: the ready line with what runs where, a periodic summary, JSON
lines for log shippers, and no library chatter at INFO."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp

from exporters.sql.migrate import head
from tests.support import Server

SUMMARY = re.compile(r"last 0\.3s: accepted (\d+), committed (\d+), rejected (\d+), "
                     r"ignored (\d+), deduplicated (\d+), pending (\d+)")  # fmt: skip


async def _push(server: Server, body: object) -> tuple[int, object]:
    url = f"{server.http}/v2/usage/gateway-metrics"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as answer:
        return answer.status, await answer.json()


def _summed(messages: list[str]) -> list[int]:
    sums = [0] * 6
    for message in messages:
        match = SUMMARY.fullmatch(message)
        if match:
            sums = [a + int(b) for a, b in zip(sums, match.groups(), strict=True)]
    return sums


async def test_json_log_with_ready_line_and_summaries(
    sqlite_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"log": {"format": "json", "summary_interval": 0.3}}
    server = server_factory(sqlite_url, tmp_path, config).start()
    good = {"model": "m", "input_token": 5, "output_token": 1, "completed": True,
            "request_id": "log-1"}  # fmt: skip
    ok = {"accepted": 1, "rejected": 0, "ignored": 0, "message": ""}
    assert await _push(server, good) == (200, ok)
    assert await _push(server, good) == (200, ok)
    bad = {"model": "m", "input_token": -1, "request_id": "log-2"}
    assert await _push(server, bad) == (200, {
        "accepted": 0, "rejected": 1, "ignored": 0, "message": "input_token: negative count -1"})
    plain = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "GET /", "traceId":
              "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}]}]}]}
    async with aiohttp.ClientSession() as http, http.post(f"{server.http}/v1/traces",
                                                          json=plain) as answer:
        assert (answer.status, await answer.json()) == (200, {})  # not usage: ignored
    await asyncio.sleep(1.0)
    assert server.stop() == 0

    entries = [json.loads(line) for line in server.log().splitlines()]
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    messages = [e["message"] for e in entries]
    [ready] = [m for m in messages if m.startswith("tokenbridge ready")]
    assert ready == (
        f"tokenbridge ready: version 0.1.0, grpc 127.0.0.1:{server.grpc_port}, http "
        f"127.0.0.1:{server.http_port}, metrics 127.0.0.1:{server.metrics_port}, database "
        f"{sqlite_url} at revision {head()}, config file {server.config_path}, flags "
        "--database-url --grpc-port --http-port"
    )
    assert _summed(messages) == [2, 1, 1, 1, 1, 0]
    assert not [e for e in entries if e["logger"].startswith(("alembic", "aiohttp", "grpc"))]
