"""Two bridges (one of them two workers) writing GPUStack's tables at once: every push sent to
both, on few merge keys.
``model_usages`` has no unique constraint; the rollup-key table keeps one row per key and
every token counted once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gpustack.support import push
from tests.support import Server, query

pytestmark = [pytest.mark.gpustack, pytest.mark.postgres, pytest.mark.slow]

PUSHES = 240
PER_REQUEST = 4


async def test_two_replicas_on_gpustack_tables_count_exactly(
    gpustack_db: tuple[str, dict[str, int]], server_factory: type[Server], tmp_path: Path
) -> None:
    url, ids = gpustack_db
    config = {"database": {"layout": "gpustack"},
              "commit": {"flush_interval": 0.005, "max_batch": 6}}  # fmt: skip
    # One plain process, and one running two workers (its supervisor migrates once).
    servers = [server_factory(url, tmp_path, config),
               server_factory(url, tmp_path, config, ["--workers", "2"])]  # fmt: skip
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
    at = int(time.time() * 1000)
    routes = [("qwen3", ids["r_qwen"]), ("qwen3:sql-lora", ids["r_lora"])]
    bodies = []
    for n in range(PUSHES):
        model, route = routes[n % 2]
        user = (ids["alice"], ids["bob"])[n // 2 % 2]
        bodies.append(push(model, at + n, (n % 7 + 1, n % 3, n % 7 + 1 + n % 3, 0),
                           user_id=user, model_id=ids["qwen3"], model_route_id=route,
                           request_id=f"rep-{n}"))  # fmt: skip
    answers: list[tuple[int, Any]] = []

    async def send(session: aiohttp.ClientSession, server: Server, body: Any) -> None:
        async with session.post(f"{server.http}/v2/usage/gateway-metrics", json=body) as r:
            answers.append((r.status, await r.json()))

    async with aiohttp.ClientSession() as session:
        for start in range(0, PUSHES, PER_REQUEST):
            chunk = bodies[start : start + PER_REQUEST]
            await asyncio.gather(*(send(session, s, chunk) for s in servers))
    codes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))

    assert codes == [0, 0]
    assert {status for status, _ in answers} == {200}
    assert sum(a["accepted"] for _, a in answers) == 2 * PUSHES
    assert sum(a["rejected"] for _, a in answers) == 0
    expected: dict[tuple[int, int], list[int]] = {}
    for body in bodies:
        sums = expected.setdefault((body["user_id"], body["model_route_id"]), [0, 0, 0])
        sums[0] += body["input_token"]
        sums[1] += body["output_token"]
        sums[2] += 1
    rows = await query(url, """
        SELECT user_id, model_route_id, prompt_token_count, completion_token_count,
               request_count FROM model_usages ORDER BY user_id, model_route_id""")
    assert rows == [(*key, *sums) for key, sums in sorted(expected.items())]
    assert await query(url, "SELECT count(*) FROM model_usage_details") == [(PUSHES,)]
    assert await query(url, "SELECT count(*) FROM tokenbridge_rollup_keys") == [(4,)]
    logs = "".join(s.log() for s in servers)
    assert " ERROR " not in logs
    skipped = [int(line.split(" duplicates skipped")[0].rsplit(" ", 1)[1])
               for line in logs.splitlines() if "duplicates skipped" in line]  # fmt: skip
    assert sum(skipped) == PUSHES
