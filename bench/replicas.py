"""Replica workload: several writers on one PostgreSQL, overlapping rollup keys, some reports
delivered twice (a gateway retry reaching another replica). Tokens lost or double counted by a
seed-style writer and by tokenbridge, side by side.

    python bench/replicas.py [--writers 3] [--requests 300] [--size 10] [--duplicate-every 10]

Seed-style writer (GPUStack's flush): each writer buffers reports, and every ``--flush`` requests
aggregates the buffer by rollup key and, in one transaction, for each key SELECTs the row, adds
in Python and UPDATEs it (or INSERTs it when absent); no unique constraint, no idempotency key.
tokenbridge: ``--writers`` replicas of ``tokenbridge serve`` on the same database, the same
requests pushed as gateway JSON to the same replica each writer would be.

Columns: ``unique`` = tokens of distinct reports sent; ``applied`` = tokens the writer added
(each delivery for the seed writer; each inserted audit row for tokenbridge); ``stored`` = sum of
the rollup rows; ``lost`` = applied - stored (additions overwritten by a concurrent writer);
``double`` = applied - unique (deliveries counted more than once); ``error`` = stored - unique.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bridge import Bridge  # noqa: E402  (the repository root goes on the path first)

PG_URL = os.environ.get("TOKENBRIDGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MODELS = ("qwen3-8b", "llama-3.1-70b", "deepseek-v3")
USERS = ("7", "8")
IN_FLIGHT = 8
"""Gateway pushes in flight at once per replica."""
SEED_TABLE = """
CREATE TABLE seed_model_usages (
    id BIGSERIAL PRIMARY KEY, model_name VARCHAR(255) NOT NULL, user_id VARCHAR(255),
    date DATE NOT NULL, prompt_token_count BIGINT NOT NULL,
    completion_token_count BIGINT NOT NULL, request_count BIGINT NOT NULL
)"""


@dataclass(frozen=True)
class Report:
    request_id: str
    model: str
    user: str
    input: int
    output: int

    @property
    def tokens(self) -> int:
        return self.input + self.output


Plan = list[list[list[Report]]]
"""Per writer, its requests; a request is a list of reports."""


def workload(writers: int, requests: int, size: int, duplicate_every: int) -> Plan:
    """Per writer, its requests (lists of reports). Request r of the whole run goes to writer
    r % writers; every ``duplicate_every``-th one is delivered to the next writer as well."""
    out: Plan = [[] for _ in range(writers)]
    for r in range(requests):
        batch = []
        for i in range(size):
            h = hashlib.blake2b(f"{r}-{i}".encode(), digest_size=8).digest()
            batch.append(Report(f"bench-{r}-{i}", MODELS[h[0] % 3], USERS[h[1] % 2],
                                1 + int.from_bytes(h[2:4]) % 4000,
                                int.from_bytes(h[4:6]) % 1500))  # fmt: skip
        out[r % writers].append(batch)
        if duplicate_every and r % duplicate_every == 0 and writers > 1:
            out[(r + 1) % writers].append(batch)
    return out


@dataclass
class Row:
    name: str
    requests: int
    unique: int
    applied: int
    stored: int
    seconds: float
    failed: int
    """Transactions that failed (deadlocks) and were run again."""

    def cells(self) -> list[str]:
        lost, double = self.applied - self.stored, self.applied - self.unique
        error = self.stored - self.unique
        return [self.name, str(self.requests), str(self.unique), str(self.applied),
                str(self.stored), str(lost), str(double), f"{error:+d}", str(self.failed),
                f"{self.seconds:.1f}"]  # fmt: skip


async def seed_flush(conn: asyncpg.Connection, buffer: dict[tuple[str, str], list[int]]) -> None:
    """One flush: per rollup key (buffer order, as a dict gives it), read, add, write back."""
    today = date.today()
    async with conn.transaction():
        for (model, user), (p, c, n) in buffer.items():
            row = await conn.fetchrow(
                "SELECT id, prompt_token_count, completion_token_count, request_count "
                "FROM seed_model_usages WHERE model_name=$1 AND user_id=$2 AND date=$3",
                model, user, today,
            )  # fmt: skip
            if row is None:
                await conn.execute(
                    "INSERT INTO seed_model_usages (model_name, user_id, date, "
                    "prompt_token_count, completion_token_count, request_count) "
                    "VALUES ($1, $2, $3, $4, $5, $6)", model, user, today, p, c, n,
                )  # fmt: skip
            else:
                await conn.execute(
                    "UPDATE seed_model_usages SET prompt_token_count=$2, "
                    "completion_token_count=$3, request_count=$4 WHERE id=$1",
                    row["id"], row["prompt_token_count"] + p,
                    row["completion_token_count"] + c, row["request_count"] + n,
                )  # fmt: skip


async def seed_writer(dsn: str, requests: list[list[Report]], flush: int) -> int:
    """Writes ``requests`` flush by flush; a failed flush (a deadlock) is tried again with the
    same buffer, as GPUStack keeps its buffer for the next flush. Returns the failed flushes."""
    conn = await asyncpg.connect(dsn)
    # PostgreSQL waits deadlock_timeout (1 s) before it breaks a deadlock; lowered so the run
    # stays short. It changes how long a deadlock lasts, not whether one happens.
    await conn.execute("SET deadlock_timeout = '50ms'")
    failures = 0
    try:
        for start in range(0, len(requests), flush):
            buffer: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
            for batch in requests[start : start + flush]:
                for report in batch:
                    sums = buffer[(report.model, report.user)]
                    sums[0] += report.input
                    sums[1] += report.output
                    sums[2] += 1
            for _attempt in range(100):
                try:
                    await seed_flush(conn, buffer)
                    break
                except asyncpg.DeadlockDetectedError:
                    failures += 1
    finally:
        await conn.close()
    return failures


async def run_seed(dsn: str, plan: Plan, flush: int, unique: int) -> Row:
    conn = await asyncpg.connect(dsn)
    await conn.execute(SEED_TABLE)
    started = time.perf_counter()
    failures = await asyncio.gather(*(seed_writer(dsn, requests, flush) for requests in plan))
    seconds = time.perf_counter() - started
    stored = await conn.fetchval(
        "SELECT COALESCE(SUM(prompt_token_count + completion_token_count), 0) "
        "FROM seed_model_usages"
    )
    await conn.close()
    applied = sum(r.tokens for requests in plan for batch in requests for r in batch)
    count = sum(len(requests) for requests in plan)
    return Row(f"seed select-then-add, {len(plan)} writers", count, unique, applied,
               int(stored), seconds, sum(failures))  # fmt: skip


async def push(session: aiohttp.ClientSession, url: str, batch: list[Report]) -> None:
    body = [{"model": r.model, "user_id": r.user, "input_token": r.input,
             "output_token": r.output, "total_token": r.tokens, "completed": True,
             "request_id": r.request_id} for r in batch]  # fmt: skip
    for _attempt in range(100):
        async with session.post(f"{url}/v2/usage/gateway-metrics", json=body) as response:
            await response.read()
            if response.status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} kept refusing a request")


async def run_tokenbridge(dsn: str, plan: Plan, unique: int) -> Row:
    servers = [Bridge(dsn) for _ in plan]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def writer(url: str, requests: list[list[Report]]) -> None:
                # A gateway pushes as its requests end: several pushes in flight at once.
                for start in range(0, len(requests), IN_FLIGHT):
                    chunk = requests[start : start + IN_FLIGHT]
                    await asyncio.gather(*(push(session, url, batch) for batch in chunk))

            pairs = zip(servers, plan, strict=True)
            await asyncio.gather(*(writer(server.http, reqs) for server, reqs in pairs))
        seconds = time.perf_counter() - started
    finally:
        for server in servers:
            server.stop()
    conflicts = sum(server.log().count("commit conflict") for server in servers)
    conn = await asyncpg.connect(dsn)
    stored = await conn.fetchval("SELECT COALESCE(SUM(prompt_token_count + "
                                 "completion_token_count), 0) FROM model_usages")  # fmt: skip
    applied = await conn.fetchval(
        "SELECT COALESCE(SUM(prompt_token_count + completion_token_count), 0) "
        "FROM model_usage_details"
    )
    await conn.close()
    count = sum(len(requests) for requests in plan)
    return Row(f"tokenbridge, {len(plan)} replicas", count, unique, int(applied), int(stored),
               seconds, conflicts)  # fmt: skip


async def fresh_database(admin: asyncpg.Connection) -> str:
    name = f"tb_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def main(args: argparse.Namespace) -> None:
    plan = workload(args.writers, args.requests, args.size, args.duplicate_every)
    seen: dict[str, Report] = {r.request_id: r for reqs in plan for b in reqs for r in b}
    unique = sum(r.tokens for r in seen.values())
    admin = await asyncpg.connect(PG_URL)
    databases: list[str] = []
    try:
        rows = []
        for run in ("seed", "tokenbridge"):
            dsn = await fresh_database(admin)
            databases.append(dsn.rsplit("/", 1)[1])
            if run == "seed":
                rows.append(await run_seed(dsn, plan, args.flush, unique))
            else:
                rows.append(await run_tokenbridge(dsn, plan, unique))
    finally:
        for name in databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    header = ["writer", "requests", "unique", "applied", "stored", "lost", "double", "error",
              "deadlocks", "seconds"]  # fmt: skip
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print(f"{args.requests} requests x {args.size} reports, every {args.duplicate_every}th "
          f"delivered twice, {len(MODELS) * len(USERS)} rollup keys; tokens:")  # fmt: skip
    for number, line in enumerate(table):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        print("  ".join(cells))
        if number == 0:
            print("  ".join("-" * w for w in widths))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=3, help="seed writers / bridge replicas")
    parser.add_argument("--requests", type=int, default=300, help="distinct requests")
    parser.add_argument("--size", type=int, default=10, help="reports per request")
    parser.add_argument("--duplicate-every", type=int, default=10,
                        help="every n-th request is delivered to a second writer too")  # fmt: skip
    parser.add_argument("--flush", type=int, default=5, help="seed writer: requests per flush")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
