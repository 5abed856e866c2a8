"""SIGTERM under load: intake stops, everything acknowledged is committed, the process exits
0 and logs one summary line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.support import Server, query
from tests.system.delivery.load import (
    Sender,
    Tally,
    dedup_key,
    gateway_sender,
    grpc_sender,
    wait_acks,
)

pytestmark = pytest.mark.slow

SUMMARY = re.compile(
    r"tokenbridge stopped after .*: (\d+) reports committed, .* (\d+) pending left"
)


async def test_sigterm_under_load_commits_every_acknowledged_request(
    database_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(database_url, tmp_path, {"commit": {"flush_interval": 0.05}})
    await asyncio.to_thread(server.start)
    tally, stop = Tally(), asyncio.Event()
    senders = [Sender(f"http-{n}", tally, stop, pause=0) for n in range(3)]
    senders.append(Sender("grpc-0", tally, stop, pause=0))
    tasks = [asyncio.create_task(gateway_sender(s, [server.http])) for s in senders[:3]]
    tasks.append(asyncio.create_task(grpc_sender(senders[3], [server.grpc])))
    await wait_acks(tally, 300, 60)

    # SIGTERM while the senders keep sending; the wait is bounded by Server.stop's timeout.
    code = await asyncio.to_thread(server.stop, 30)
    for sender in senders:
        sender.give_up.set()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)

    assert code == 0
    rows = await query(database_url, "SELECT dedup_key FROM model_usage_details")
    committed = {key for (key,) in rows}
    missing = {dedup_key(it) for it in tally.acked.values()} - committed
    assert not missing, f"{len(missing)} acknowledged reports not committed"
    summaries = SUMMARY.findall(server.log())
    assert len(summaries) == 1, server.log()[-2000:]
    assert summaries[0] == (str(len(committed)), "0")
