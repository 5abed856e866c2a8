"""Two producer processes export cumulative histograms and counters through the OTel SDK
(its default temporality); one restarts mid-way (a new start time), one replays two raw
exports. Totals equal what was recorded: first exports included, replays ignored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support import Server
from tests.system.delivery.clients import COUNTERS
from tests.system.delivery.helpers import client, last_json, totals

pytestmark = pytest.mark.slow


def _expected(model: str, runs: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    def total(key: str) -> int:
        return sum(int(run[key]) for run in runs)

    return {
        model: (total("input"), total("output"), total("requests")),
        f"{model}-counter": (total("counter_input"), total("counter_output"), 0),
    }


async def test_cumulative_producers_restarted_and_replayed_count_exactly(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    config = {"sources": {"genai_metrics": True}, "mapping": {"counters": COUNTERS}}
    server = server_factory(database_url, tmp_path, config)
    await asyncio.to_thread(server.start)

    def producer(model: str, seed: int, *extra: str) -> Any:
        return client("metrics", "--endpoint", server.grpc, "--model", model,
                      "--instance", model, "--seed", str(seed), *extra)  # fmt: skip

    alpha = await producer("alpha", 1, "--steps", "10", "--replay", f"{server.http}/v1/metrics")
    beta_first = await producer("beta", 2, "--steps", "5")
    beta_runs = [await last_json(beta_first, 60)]
    # The same producer started again: same resource, new start time, counters from zero.
    beta_runs.append(await last_json(await producer("beta", 3, "--steps", "5"), 60))
    alpha_run = await last_json(alpha, 60)
    assert await asyncio.to_thread(server.stop) == 0

    expected = {**_expected("alpha", [alpha_run]), **_expected("beta", beta_runs)}
    assert await totals(database_url) == {k: v for k, v in expected.items() if any(v)}
    assert alpha_run["exports"] >= 10
