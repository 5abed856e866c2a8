"""Profile the bridge's hot path in one process: decode, map, group commit, SQL.

    python -m bench.profile_ingest [--database postgres|sqlite] [--requests 40] [--cprofile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from bench.common import drop_all, fresh_postgres, fresh_sqlite, scalar
from collector.config import Config
from collector.model import Encoding, Signal
from collector.runtime.service import Service
from collector.tools.synthetic import templates


async def _run(database: str, requests: int, concurrency: int) -> tuple[int, float]:
    url = await fresh_postgres() if database == "postgres" else fresh_sqlite()
    config = Config.model_validate({"database": {"url": url}, "metrics": None,
                                    "receivers": {"grpc_port": 0, "http_port": 0}})
    commits: list[tuple[int, float]] = []
    service = Service(config, [lambda c: commits.append((len(c.reports), c.seconds))])
    await service.start()
    bodies = templates("grpc", 4)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = bodies[n % len(bodies)].render(n)
            await service.ingest.export(Signal.TRACES, Encoding.PROTOBUF, body)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await service.shutdown()
    if commits:
        print(f"{len(commits)} commits, {sum(n for n, _ in commits) / len(commits):.0f} reports "
              f"each, {sum(t for _, t in commits):.2f}s in commits, "
              f"{sum(n for n, _ in commits) / sum(t for _, t in commits):,.0f} reports/s inside")
    rows = await scalar(url, "select count(*) from model_usage_details")
    await drop_all()
    return rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler:
        profiler.enable()
    rows, elapsed = asyncio.run(_run(args.database, args.requests, args.concurrency))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(f"{rows} rows in {elapsed:.2f}s: {rows / elapsed:,.0f} spans/s")


if __name__ == "__main__":
    main()
