"""GPUStack 2.3's own collector beside tokenbridge on GPUStack's schema, same reports, same run.

    python bench/gpustack.py [--reports 20000] [--users 100] [--routes 20]

Needs GPUStack's test environment (``make gpustack-env``; else it says so and exits 0). Each
writer gets a fresh database migrated by GPUStack's own alembic head and the same catalog made
through GPUStack's models, then the same gateway reports (``users x routes`` rollup keys):
- GPUStack 2.3: ``accumulate_gateway_metrics`` + ``flush_gateway_metrics`` (one flush, as
  after its 10 s interval), run from its environment;
- tokenbridge, ``database.layout: gpustack``: ``GpustackSink.write`` in transactions of 2,000
  reports (what the group commit hands it), audit rows and merge-key rollups in GPUStack's
  tables, idempotency keys in ``tokenbridge_dedup_keys``;
- tokenbridge's own layout (``SqlSink``, GPUStack 2.3's key: ``extra_dimensions:
  [model_route_id, organization_id]``) on a fresh database, the reference of the layout's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import drop_all, fresh_postgres, scalar
from bench.gpustack_env import DEFAULT_VENV, ENV, GpuStack
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.gateway import gateway_report
from collector.mapping.gpustack_catalog import GpustackCatalog
from collector.model import (
    UsageReport,
    Work,
)
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.gpustack import catalog_source
from exporters.sql.gpustack import migrate as gpustack_migrate
from exporters.sql.gpustack.sink import GpustackSink
from exporters.sql.sink import SqlSink

BATCH = 2000


def spec(users: int, routes: int) -> dict[str, Any]:
    return {
        "principals": [{"ref": "admin", "name": "admin", "is_admin": True},
                       *({"ref": f"u{n}", "name": f"user-{n}"} for n in range(users))],
        "clusters": [{"ref": "gpu", "name": "gpu-a"}],
        "models": [{"ref": "qwen3", "name": "qwen3", "cluster": "gpu"}],
        "routes": [{"ref": f"r{n}", "name": f"route-{n}", "model": "qwen3"}
                   for n in range(routes)],
    }  # fmt: skip


def reports(ids: dict[str, int], count: int, users: int, routes: int) -> list[dict[str, Any]]:
    at = int(time.time() * 1000) - 3_600_000
    return [
        {"model": "qwen3", "model_id": ids["qwen3"], "user_id": ids[f"u{n % users}"],
         "model_route_id": ids[f"r{n // users % routes}"], "input_token": 100 + n % 50,
         "output_token": 20 + n % 7, "total_token": 120 + n % 50 + n % 7,
         "input_cached_token": 0, "request_count": 1, "completed": True,
         "output_chunk_count": 0, "request_content_bytes": 0, "started_at": at + n - 500,
         "completed_at": at + n, "request_id": f"bench-{n}"}
        for n in range(count)
    ]  # fmt: skip


async def tokenbridge(url: str, bodies: list[dict[str, Any]], layout: str) -> tuple[float, int]:
    engine = create_engine(url)
    try:
        mapper = FieldMapper(MappingRules())
        now = int(time.time() * 1000)
        items: list[UsageReport] = []
        sink: GpustackSink | SqlSink
        if layout == "gpustack":
            await gpustack_migrate.upgrade(engine)
            catalog = GpustackCatalog.from_tables(await catalog_source.load(engine))
            items = [catalog.apply(gateway_report(b, mapper, now)) for b in bodies]
            sink = GpustackSink(engine)
        else:
            await migrate.upgrade(engine)
            items = [gateway_report(b, mapper, now) for b in bodies]
            sink = SqlSink(engine, extra_dimensions=("model_route_id", "organization_id"))
        started = time.perf_counter()
        for start in range(0, len(items), BATCH):
            await sink.write(Work(reports=items[start : start + BATCH]))
        return time.perf_counter() - started, await scalar(url, "SELECT count(*) FROM model_usages")
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace, python: str) -> None:
    gs = GpuStack(python)
    catalog = spec(args.users, args.routes)
    urls = [await fresh_postgres() for _ in range(3)]
    try:
        ids = {}
        for url in urls[:2]:
            await asyncio.to_thread(gs.run, "migrate", url)
            ids = await asyncio.to_thread(gs.run, "seed", url, catalog)
        bodies = reports(ids, args.reports, args.users, args.routes)
        theirs = await asyncio.to_thread(gs.run, "bench", urls[0], bodies, 1800)
        ours, our_rows = await tokenbridge(urls[1], bodies, "gpustack")
        own, own_rows = await tokenbridge(urls[2], bodies, "tokenbridge")
    finally:
        await drop_all()
    n = args.reports
    print(f"\nGPUStack layout, {n:,} gateway reports, {args.users * args.routes:,} rollup keys "
          f"(PostgreSQL, same run)")  # fmt: skip
    print(f"{'writer':58} {'seconds':>8} {'reports/s':>10} {'rollup rows':>12}")
    lines = [
        ("GPUStack 2.3 accumulate + flush (its schema)", theirs["seconds"], theirs["rollup_rows"]),
        (f"tokenbridge, layout gpustack ({BATCH}-report transactions)", ours, our_rows),
        (f"tokenbridge, layout tokenbridge ({BATCH}-report transactions)", own, own_rows),
    ]  # fmt: skip
    for name, seconds, rows in lines:
        print(f"{name:58} {seconds:8.2f} {n / seconds:10,.0f} {rows:12,}")
    if theirs["left_in_buffers"]:
        print(f"GPUStack's flush failed: {theirs['left_in_buffers']} entries left in its buffers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--routes", type=int, default=20)
    args = parser.parse_args()
    python = os.environ.get(ENV) or str(DEFAULT_VENV / "bin" / "python")
    if not Path(python).is_file():
        print(f"GPUStack bench skipped: no GPUStack 2.3 environment at {python} "
              f"(run `make gpustack-env`)")  # fmt: skip
        return
    asyncio.run(run(args, python))


if __name__ == "__main__":
    main()
