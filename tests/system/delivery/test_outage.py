"""The network to PostgreSQL fails under load: senders are told to retry, the bridge reports
not ready, recovers on its own, and the totals are exact. Two ways: a cut (~10 s; connections
closed, new ones refused) and a partition (connections hang; statement and connect timeouts
must turn it into "unavailable")."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from tests.support import Server
from tests.system.delivery.helpers import scalar, totals
from tests.system.delivery.load import Sender, Tally, gateway_sender, grpc_sender, wait_acks
from tests.system.delivery.proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OUTAGE_SECONDS = {"cut": 10, "partition": 6}


async def _fail(proxy: TcpProxy, outage: str) -> None:
    if outage == "cut":
        await proxy.cut()
    else:
        proxy.freeze()


async def _heal(proxy: TcpProxy, outage: str) -> None:
    if outage == "cut":
        await proxy.restore()
    else:
        proxy.thaw()


async def _push(session: aiohttp.ClientSession, server: Server) -> tuple[int, object]:
    body = {"model": "m", "input_token": 1, "request_id": "during-the-outage"}
    async with session.post(f"{server.http}/v2/usage/gateway-metrics", json=body) as response:
        return response.status, await response.json()


async def _readyz(session: aiohttp.ClientSession, server: Server) -> int:
    async with session.get(f"{server.http}/readyz") as response:
        return response.status


@pytest.mark.parametrize("outage", ["cut", "partition"])
async def test_database_outage_answers_retryable_and_loses_nothing(
    outage: str, postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    target = make_url(postgres_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    through_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    config = {
        "commit": {"flush_interval": 0.02, "retry_after": 1.0},
        "database": {"connect_timeout": 2.0, "command_timeout": 2.0},
    }
    server = server_factory(through_proxy, tmp_path, config)
    try:
        # Blocking calls run in threads: the proxy lives on this event loop.
        await asyncio.to_thread(server.start)
        tally, stop = Tally(), asyncio.Event()
        senders = [
            asyncio.create_task(gateway_sender(Sender("http-1", tally, stop), [server.http])),
            asyncio.create_task(gateway_sender(Sender("http-2", tally, stop), [server.http])),
            asyncio.create_task(grpc_sender(Sender("grpc-1", tally, stop), [server.grpc])),
            asyncio.create_task(grpc_sender(Sender("grpc-2", tally, stop), [server.grpc])),
        ]
        await wait_acks(tally, 100, 30)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await _fail(proxy, outage)
            acked_at_cut = len(tally.acked)
            ready_during: list[int] = []
            for _ in range(OUTAGE_SECONDS[outage]):
                await asyncio.sleep(1)
                ready_during.append(await _readyz(session, server))
            acked_during = len(tally.acked) - acked_at_cut
            refused = await _push(session, server)
            await _heal(proxy, outage)
            deadline = time.monotonic() + 30
            while await _readyz(session, server) != 200:
                assert time.monotonic() < deadline, "the bridge did not become ready again"
                await asyncio.sleep(0.2)
            await wait_acks(tally, len(tally.acked) + 100, 30)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*senders), 60)
    finally:
        await proxy.close()

    # At most the requests already committing when the cut came were acknowledged after it.
    assert acked_during <= 4 * 5, acked_during
    assert set(ready_during[1:]) == {503}, ready_during
    assert tally.answers["http 503"] > 0 and tally.answers["grpc UNAVAILABLE"] > 0, tally.answers
    assert tally.retry_hints["http Retry-After"] == tally.answers["http 503"]
    assert tally.retry_hints["grpc RetryInfo"] == tally.answers["grpc UNAVAILABLE"]
    assert await totals(postgres_url) == tally.expected()
    details = await scalar(postgres_url, "SELECT COUNT(*) FROM model_usage_details")
    assert details == len(tally.acked)
    assert await asyncio.to_thread(server.stop) == 0
    # Senders learn to retry, not where the database lives.
    assert refused == (503, {"code": 14, "message": "database unavailable"})
    # The operator reads one line when the outage starts and one when it ends.
    log = server.log()
    assert log.count("WARNING collector.commit: database unavailable (") == 1, log
    assert "answering retryable (HTTP 503 with Retry-After, gRPC UNAVAILABLE)" in log
    [ended] = re.findall(r"database available again after ([\d.]+)s; (\d+) retryable answers", log)
    # From its detection (a partition shows after the 2 s statement timeout) to the first
    # probe that answers (every retry_after, 1 s).
    assert OUTAGE_SECONDS[outage] - 3 <= float(ended[0]) <= OUTAGE_SECONDS[outage] + 30
    # Every retryable answer of the outage, ours included, counted in that line.
    answered = tally.answers["http 503"] + tally.answers["grpc UNAVAILABLE"] + 1
    assert int(ended[1]) == answered, (ended, tally.answers)
