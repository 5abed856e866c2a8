"""At size, the billing dashboard's queries and ``tokenbridge report`` read only what a 7-day
window needs: an index on ``model_usages.date``, and only the audit partitions of the window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql

from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.report import usage_query
from tests.dashboard_queries import grafana_sql, targets
from tests.exporters.sql.retention_support import ensure, execute, partition_names
from tests.support import query

DAYS = 420
TODAY = datetime.now(UTC).date()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(url: str, sql: str) -> list[dict[str, Any]]:
    rows = await query(url, f"EXPLAIN (FORMAT JSON) {sql}")
    raw = rows[0][0]
    document = json.loads(raw) if isinstance(raw, str) else raw
    return list(_nodes(document[0]["Plan"]))


async def _populate(url: str) -> None:
    """Fourteen months of audit rows (month partitions) and 420 days of rollups."""
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    first = TODAY - timedelta(days=DAYS)
    await ensure(url, first, TODAY, "month")
    await execute(url, f"""
        insert into model_usage_details (dedup_key, date, model_name, user_id, access_key,
            prompt_token_count, completion_token_count, request_count, completed, estimated,
            source, created_at, updated_at)
        select 'k' || n, date '{first}' + (n % {DAYS}), 'm' || (n % 5), 'u' || (n % 50),
            'ak' || (n % 80), n % 900, 5, 1, true, false, 'otlp_span',
            timestamp '{first}' + (n % {DAYS}) * interval '1 day' + (n % 86400) * interval '1 s',
            now()
        from generate_series(1, {DAYS * 100}) as n""")
    await execute(url, f"""
        insert into model_usages (rollup_key, date, model_name, user_id, access_key, operation,
            prompt_token_count, completion_token_count, request_count, created_at, updated_at)
        select md5(n::text), date '{first}' + (n % {DAYS}), 'm' || (n % 5), 'u' || (n % 50),
            'ak' || (n % 80), 'chat_completion', n % 900, 5, 1, now(), now()
        from generate_series(1, {DAYS * 200}) as n""")
    await execute(url, "ANALYZE")


async def test_seven_day_queries_read_an_index_and_the_window_s_partitions(
    postgres_url: str,
) -> None:
    await _populate(postgres_url)
    partitions = [p for p in await partition_names(postgres_url) if not p.endswith("default")]
    assert len(partitions) == 15  # 14 months and part of another
    end = datetime.combine(TODAY, time(23, 59, 59))
    start = end - timedelta(days=7)
    checked = 0
    for title, target in targets("billing.json"):
        plan = await _plan(postgres_url, grafana_sql(target["rawSql"], start, end))
        scans = [n for n in plan if "Relation Name" in n]
        assert scans, title
        details = {n["Relation Name"] for n in scans
                   if n["Relation Name"].startswith("model_usage_details")}  # fmt: skip
        rollups = [n["Node Type"] for n in scans if n["Relation Name"] == "model_usages"]
        assert all(kind != "Seq Scan" for kind in rollups), (title, rollups)
        if details:  # the window's month or two (each side one day for the zone), not all
            assert 1 <= len(details) <= 3, (title, sorted(details))
        checked += 1
    assert checked >= 8
    report = usage_query(TODAY - timedelta(days=6), TODAY, ["date", "model_name"])
    sql = str(report.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    kinds = [n["Node Type"] for n in await _plan(postgres_url, sql) if "Relation Name" in n]
    assert kinds and "Seq Scan" not in kinds, kinds



