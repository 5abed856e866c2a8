"""Usage over a date range, grouped by any key columns of ``model_usages``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from exporters.sql import schema

GROUPABLE = (
    "date",
    "model_id",
    "model_name",
    "provider_id",
    "provider_name",
    "provider_type",
    "user_id",
    "user_name",
    "access_key",
    "operation",
    "model_route_id",
    "organization_id",
)
SUMS = {
    "prompt_tokens": "prompt_token_count",
    "completion_tokens": "completion_token_count",
    "cached_tokens": "prompt_cached_token_count",
    "cache_write_tokens": "prompt_cache_write_token_count",
    "reasoning_tokens": "completion_reasoning_token_count",
    "requests": "request_count",
    "estimated_requests": "estimated_request_count",
}


def usage_query(start: date | None, end: date | None, by: Sequence[str]) -> Select[Any]:
    """The report's statement: sums of ``model_usages`` per group of ``by`` over the days
    ``start``..``end`` (a ``date`` range: the index on ``date`` serves it)."""
    unknown = [column for column in by if column not in GROUPABLE]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {', '.join(GROUPABLE)}")
    t = schema.model_usages
    keys = [t.c[column] for column in by]
    sums = [func.sum(t.c[column]).label(name) for name, column in SUMS.items()]
    total = (func.sum(t.c.prompt_token_count) + func.sum(t.c.completion_token_count)).label(
        "total_tokens"
    )
    query = select(*keys, *sums[:2], total, *sums[2:]).group_by(*keys).order_by(*keys)
    if start is not None:
        query = query.where(t.c.date >= start)
    if end is not None:
        query = query.where(t.c.date <= end)
    return query


async def usage(
    engine: AsyncEngine, start: date | None, end: date | None, by: Sequence[str]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows): sums per group, ``total_tokens`` = prompt + completion."""
    query = usage_query(start, end, by)
    async with engine.connect() as conn:
        result = await conn.execute(query)
        rows = [tuple(_plain(v) for v in row) for row in result]
    names = [*by, "prompt_tokens", "completion_tokens", "total_tokens", *list(SUMS)[2:]]
    return names, [row for row in rows if any(v is not None for v in row[len(by):])]


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if value is not None and not isinstance(value, str | int | float | bool):
        return int(value)
    return value
