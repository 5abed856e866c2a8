"""``tokenbridge reprice`` after a price-file edit, while two replicas commit a load into the
same rollups on PostgreSQL: final costs equal a from-scratch computation, counts unchanged."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support import ROOT, Server, query
from tests.system.delivery.helpers import totals
from tests.system.delivery.load import Sender, Tally, gateway_sender, wait_acks

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OLD = """
prices:
  - {model: model-a, per_million: {input: 1, output: 2}}
  - {match: {prefix: "model-"}, per_million: {input: 3, output: 4}}
"""
NEW = """
prices:
  - {model: model-a, per_million: {input: 1.5, output: 2.25}}
  - {model: model-b, per_million: {input: 0.7, output: 0.9}, per_request: 0.0001}
"""
# From scratch, by hand: (input rate, output rate, per request) per million; model-c has
# no price any more.
EXPECTED = {"model-a": (Decimal("1.5"), Decimal("2.25"), Decimal(0)),
            "model-b": (Decimal("0.7"), Decimal("0.9"), Decimal("0.0001"))}  # fmt: skip
M = Decimal(1_000_000)


def _cost(model: str, prompt: int, completion: int) -> Decimal | None:
    if model not in EXPECTED:
        return None
    inp, out, request = EXPECTED[model]
    return prompt * inp / M + completion * out / M + request


async def _wait_log(servers: list[Server], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(text in s.log() for s in servers):
        assert time.monotonic() < deadline, f"not every replica logged {text!r}"
        await asyncio.sleep(0.05)


async def test_reprice_during_load_on_two_replicas_equals_a_fresh_computation(
    postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(OLD)
    config = {"commit": {"flush_interval": 0.005, "max_batch": 40},
              "pricing": {"path": str(prices), "builtin": False, "reload_interval": 0.1}}
    servers = [server_factory(postgres_url, tmp_path, config) for _ in range(2)]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
    urls = [s.http for s in servers]
    tally, stop = Tally(), asyncio.Event()
    load = asyncio.gather(*(
        gateway_sender(Sender(f"http-{n}", tally, stop, size=8, requests=100_000, pause=0.002),
                       urls[n:] + urls[:n], duplicate_every=4)
        for n in range(2)))  # fmt: skip
    try:
        await wait_acks(tally, 800, 60)
        prices.write_text(NEW)
        await _wait_log(servers, "prices reloaded", 10)
        await asyncio.sleep(1.0)  # commits priced before the reload are in
        before = len(tally.acked)
        today = datetime.now(UTC).date()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "reprice", "--config", str(servers[0].config_path),
            "--database-url", postgres_url, "--from", str(today - timedelta(days=1)),
            "--to", str(today + timedelta(days=1)), "--format", "csv", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        during = len(tally.acked) - before
        await wait_acks(tally, len(tally.acked) + 400, 60)  # the load goes on after it
    finally:
        stop.set()
        await asyncio.wait_for(load, 60)
    codes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))
    assert codes == [0, 0]
    assert during > 0, "the load was committing while reprice ran"
    lines = out.decode().splitlines()
    assert lines[0] == ("model_name,rows,rows_changed,old_cost_USD,new_cost_USD,"
                        "old_unpriced_requests,new_unpriced_requests")  # fmt: skip
    assert [line.split(",")[0] for line in lines[1:]] == ["model-a", "model-b", "model-c"]
    assert "rollups rebuilt" in err.decode()

    # Counts unchanged: every acknowledged report once.
    assert await totals(postgres_url) == tally.expected()
    rows = await query(postgres_url, "SELECT dedup_key, model_name, user_id, prompt_token_count, "
                       "completion_token_count, cost, cost_status FROM model_usage_details")
    assert len(rows) == len(tally.acked)
    wrong = [r for r in rows if r[5] != _cost(r[1], r[3], r[4])]
    assert wrong == []
    assert {r[6] for r in rows if r[1] == "model-c"} == {"unpriced"}
    expected: dict[tuple[str, str], tuple[Decimal | None, int]] = {}
    for _key, model, user, prompt, completion, _c, _s in rows:
        cost, unpriced = expected.get((model, user), (None, 0))
        row_cost = _cost(model, prompt, completion)
        if row_cost is not None:
            cost = row_cost if cost is None else cost + row_cost
        expected[(model, user)] = (cost, unpriced + (row_cost is None))
    rollups = await query(postgres_url, "SELECT model_name, user_id, sum(cost), "
                          "sum(unpriced_request_count) FROM model_usages GROUP BY 1, 2")
    assert {(m, u): (c, int(n)) for m, u, c, n in rollups} == expected
    logs = "".join(s.log() for s in servers)
    assert " ERROR " not in logs
