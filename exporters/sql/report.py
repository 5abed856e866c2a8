"""Usage over a date range, grouped by any key columns of ``model_usages``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from exporters.sql import schema
from exporters.sql.money import text, to_amount
from exporters.sql.rows import IDENTITY_COLUMNS

GROUPABLE = IDENTITY_COLUMNS
"""Every identity column of ``model_usages`` (the rollup key's and the catalog's names)."""
SUMS = {
    "prompt_tokens": "prompt_token_count",
    "completion_tokens": "completion_token_count",
    "cached_tokens": "prompt_cached_token_count",
    "cache_write_tokens": "prompt_cache_write_token_count",
    "reasoning_tokens": "completion_reasoning_token_count",
    "requests": "request_count",
    "estimated_requests": "estimated_request_count",
    "unpriced_requests": "unpriced_request_count",
}


def usage_query(
    start: date | None, end: date | None, by: Sequence[str], t: Table = schema.model_usages,
) -> Select[Any]:
    """The report's statement: sums of the rollup table ``t`` per group of ``by`` over the
    days ``start``..``end`` (a ``date`` range: the index on ``date`` serves it). ``t``: the
    layout's rollup table (GPUStack's ``model_usages`` has fewer columns, and no cost)."""
    groupable = [c for c in (*GROUPABLE, "consumer_principal_id") if c in t.c]
    unknown = [column for column in by if column not in groupable]
    if unknown:
        raise ValueError(f"--by: cannot group by {', '.join(unknown)}; choose from "
                         f"{', '.join(groupable)}")
    keys = [t.c[column] for column in by]
    sums = [func.sum(t.c[column]).label(name) for name, column in SUMS.items() if column in t.c]
    total = (func.sum(t.c.prompt_token_count) + func.sum(t.c.completion_token_count)).label(
        "total_tokens"
    )
    cost = [func.sum(t.c.cost).label("cost")] if "cost" in t.c else []
    query = select(*keys, *sums[:2], total, *sums[2:], *cost).group_by(*keys).order_by(*keys)
    if start is not None:
        query = query.where(t.c.date >= start)
    if end is not None:
        query = query.where(t.c.date <= end)
    return query


async def usage(
    engine: AsyncEngine, start: date | None, end: date | None, by: Sequence[str],
    t: Table = schema.model_usages,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows): sums per group, ``total_tokens`` = prompt + completion, ``cost``
    the exact sum of the priced requests' cost as decimal text (empty when none was priced)
    beside ``unpriced_requests``."""
    query = usage_query(start, end, by, t)
    priced = "cost" in t.c
    dialect = engine.dialect.name
    async with engine.connect() as conn:
        result = await conn.execute(query)
        if priced:
            rows = [(*(_plain(v) for v in row[:-1]), text(to_amount(dialect, row[-1])))
                    for row in result]  # fmt: skip
        else:
            rows = [tuple(_plain(v) for v in row) for row in result]
    present = [name for name, column in SUMS.items() if column in t.c]
    names = [*by, "prompt_tokens", "completion_tokens", "total_tokens", *present[2:],
             *(["cost"] if priced else [])]  # fmt: skip
    return names, [row for row in rows if any(v is not None for v in row[len(by):])]

def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if value is not None and not isinstance(value, str | int | float | bool):
        return int(value)
    return value
