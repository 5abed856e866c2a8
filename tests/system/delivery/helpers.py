"""Shared pieces of the delivery tests: client processes, SQL totals, log reading."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tests.support import ROOT, query

TOTALS_SQL = (
    "SELECT model_name, COALESCE(SUM(prompt_token_count), 0), "
    "COALESCE(SUM(completion_token_count), 0), COALESCE(SUM(request_count), 0) "
    "FROM model_usages GROUP BY model_name ORDER BY model_name"
)


async def client(*args: str) -> asyncio.subprocess.Process:
    """``python -m tests.system.delivery.clients ARGS`` with stdout piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.system.delivery.clients", *args,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


async def last_json(process: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    """Wait for the client to exit (bounded) and return its final JSON line."""
    assert process.stdout is not None
    out = await asyncio.wait_for(process.stdout.read(), timeout)
    code = await asyncio.wait_for(process.wait(), timeout)
    assert code == 0, f"client exited {code}: {out.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def totals(url: str) -> dict[str, tuple[int, int, int]]:
    """model -> (prompt tokens, completion tokens, requests) in the rollups."""
    rows = await query(url, TOTALS_SQL)
    return {model: (int(p), int(c), int(r)) for model, p, c, r in rows}


async def scalar(url: str, sql: str) -> int:
    rows = await query(url, sql)
    return int(rows[0][0] or 0)
