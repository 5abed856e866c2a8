"""SIGKILL the bridge twice under load from the OTel SDK exporter: totals stay exact."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import Server
from tests.system.delivery.helpers import client, scalar, totals

pytestmark = pytest.mark.slow

BATCHES = 60
SIZE = 50
KILL_AFTER = (20, 40)
"""Acknowledged batches after which the bridge is killed; the next batch is then in flight."""


async def test_bridge_killed_twice_counts_every_span_once(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(database_url, tmp_path, {"commit": {"flush_interval": 0.02}})
    await asyncio.to_thread(server.start)
    process = await client("spans", "--endpoint", server.grpc, "--batches", str(BATCHES),
                           "--size", str(SIZE), "--seed", "7")  # fmt: skip
    assert process.stdout is not None
    sent: dict[str, Any] = {}
    kills = 0
    while line := await asyncio.wait_for(process.stdout.readline(), 120):
        if line.startswith(b"{"):
            sent = json.loads(line)
        elif int(line.split()[1]) in KILL_AFTER:
            server.kill()
            kills += 1
            await asyncio.to_thread(server.start)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert kills == 2
    assert sent["spans"] == BATCHES * SIZE

    by_model = await totals(database_url)
    assert sum(p for p, _c, _r in by_model.values()) == sent["input"]
    assert sum(c for _p, c, _r in by_model.values()) == sent["output"]
    assert sum(r for _p, _c, r in by_model.values()) == sent["spans"]
    assert await scalar(database_url, "SELECT COUNT(*) FROM model_usage_details") == sent["spans"]
