"""Shared by the benchmark scripts: fresh databases, process memory, table printing."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from exporters.sql.engine import create_engine

PG_URL = os.environ.get("TOKENBRIDGE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_created: list[str] = []


async def fresh_postgres() -> str:
    """A new empty database on the benchmark's PostgreSQL server; dropped by ``drop_all``."""
    admin = await asyncpg.connect(make_url(PG_URL).render_as_string(False), timeout=5)
    name = f"tb_bench_{uuid.uuid4().hex[:10]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    _created.append(name)
    return make_url(PG_URL).set(database=name).render_as_string(False)


async def drop_all() -> None:
    if not _created:
        return
    admin = await asyncpg.connect(make_url(PG_URL).render_as_string(False), timeout=5)
    try:
        while _created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{_created.pop()}" WITH (FORCE)')
    finally:
        await admin.close()


def fresh_sqlite() -> str:
    directory = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    return f"sqlite:///{directory / 'bench.db'}"


async def scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql))).scalar() or 0)
    finally:
        await engine.dispose()


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """Memory of a process and its children from /proc status, in MB: ``VmHWM`` (peak
    resident, the default) or ``VmRSS`` (resident now)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        return out
    return out + [g for c in out for g in _children(c)]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its living children."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")
