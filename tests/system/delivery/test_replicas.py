"""Three bridges on one PostgreSQL under concurrent load with overlapping rollup keys, some
reports sent to two bridges at once: every request succeeds, every token counts once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support import Server
from tests.system.delivery.helpers import scalar, totals
from tests.system.delivery.load import Sender, Tally, gateway_sender, grpc_sender

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPLICAS = 3
REQUESTS = 60


async def test_replicas_on_one_database_count_exactly(
    postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    # Small, frequent transactions: the most chances for two replicas to meet on a row.
    config = {"commit": {"flush_interval": 0.005, "max_batch": 40}}
    servers = [server_factory(postgres_url, tmp_path, config) for _ in range(REPLICAS)]
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
    urls = [s.http for s in servers]
    targets = [s.grpc for s in servers]
    tally, stop = Tally(), asyncio.Event()

    def sender(name: str) -> Sender:
        return Sender(name, tally, stop, size=8, requests=REQUESTS, pause=0)

    await asyncio.wait_for(
        asyncio.gather(
            *(gateway_sender(sender(f"http-{n}"), urls[n:] + urls[:n], duplicate_every=4)
              for n in range(REPLICAS)),
            *(grpc_sender(sender(f"grpc-{n}"), targets[n:] + targets[:n]) for n in range(2)),
        ),
        120,
    )  # fmt: skip
    codes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))

    assert set(tally.answers) == {"http 200", "grpc OK"}, tally.answers
    assert codes == [0] * REPLICAS
    assert len(tally.acked) == (REPLICAS + 2) * REQUESTS * 8
    assert await totals(postgres_url) == tally.expected()
    details = await scalar(postgres_url, "SELECT COUNT(*) FROM model_usage_details")
    assert details == len(tally.acked)
    logs = "".join(s.log() for s in servers)
    assert " ERROR " not in logs
    # Duplicates sent to two bridges were skipped by one of them, not counted twice.
    skipped = [int(line.split(" duplicates skipped")[0].rsplit(" ", 1)[1])
               for line in logs.splitlines() if "duplicates skipped" in line]  # fmt: skip
    assert sum(skipped) == REPLICAS * (REQUESTS // 4) * 8
