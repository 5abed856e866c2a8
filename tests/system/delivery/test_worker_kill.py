"""``serve --workers 2``: SIGKILL one worker twice under load from the OTel SDK exporter. The
supervisor restarts it, the exporter resends what was not acknowledged, totals stay exact."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import Server
from tests.system.delivery.helpers import client, scalar, totals

pytestmark = pytest.mark.slow

BATCHES = 60
SIZE = 50
KILL_AFTER = (20, 40)


def _workers(pid: int) -> list[int]:
    """Worker processes of the supervisor ``pid`` (its spawned children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                found.append(int(child))
    return sorted(found)


def _serving(workers: list[int], port: int) -> list[int]:
    """The workers holding an established TCP connection on local ``port``."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                established.add(f"socket:[{fields[9]}]")
    serving = []
    for pid in workers:
        links = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                links.add(os.readlink(fd))
            except OSError:
                continue
        if links & established:
            serving.append(pid)
    return serving


async def test_a_killed_worker_is_restarted_and_every_span_counts_once(
    postgres_url: str, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(postgres_url, tmp_path, {"commit": {"flush_interval": 0.02}},
                            extra_args=["--workers", "2"])  # fmt: skip
    await asyncio.to_thread(server.start)
    assert server.process is not None
    supervisor = server.process.pid
    assert len(_workers(supervisor)) == 2
    process = await client("spans", "--endpoint", server.grpc, "--batches", str(BATCHES),
                           "--size", str(SIZE), "--seed", "11")  # fmt: skip
    assert process.stdout is not None
    sent: dict[str, Any] = {}
    killed: list[int] = []
    while line := await asyncio.wait_for(process.stdout.readline(), 120):
        if line.startswith(b"{"):
            sent = json.loads(line)
        elif int(line.split()[1]) in KILL_AFTER:
            # The worker holding the exporter's connection, so the kill hits its requests.
            [victim] = _serving(_workers(supervisor), server.grpc_port)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
    assert await asyncio.wait_for(process.wait(), 60) == 0
    assert len(killed) == 2 and sent["spans"] == BATCHES * SIZE
    for _ in range(100):  # the supervisor notices within a second and spawns a new one
        if len(alive := _workers(supervisor)) == 2 and not set(alive) & set(killed):
            break
        await asyncio.sleep(0.1)
    assert len(alive) == 2 and not set(alive) & set(killed)
    assert server.stop() == 0
    assert server.log().count("restarting it") == 2

    by_model = await totals(postgres_url)
    assert sum(p for p, _c, _r in by_model.values()) == sent["input"]
    assert sum(c for _p, c, _r in by_model.values()) == sent["output"]
    assert sum(r for _p, _c, r in by_model.values()) == sent["spans"]
    assert await scalar(postgres_url, "SELECT COUNT(*) FROM model_usage_details") == sent["spans"]
