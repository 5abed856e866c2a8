"""``Repricer``: audit rows priced again from an edited table, rollups rebuilt, idempotent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from collector.aggregation.pricing.watch import Pricing, build
from collector.model import Source, UsageReport, Work
from exporters.sql import migrate
from exporters.sql.engine import create_engine
from exporters.sql.money import to_amount
from exporters.sql.reprice import Repricer
from exporters.sql.sink import SqlSink
from tests.support import query

T0 = 1_772_409_600_000  # 2026-03-02T00:00:00Z
H = 3_600_000
T0_DAY = date(2026, 3, 2)
OLD = "prices: [{model: m, per_million: {input: 1, output: 2}}]"
NEW = """
prices:
  - {model: m, per_million: {input: 1, output: 2}}
  - {model: m, from: "2026-03-02T12:00:00Z", per_million: {input: 10, output: 20}}
  - {model: n, per_million: {input: 5}}
"""


def _report(key: str, model: str, at: int, user: str) -> UsageReport:
    return UsageReport(model=model, source=Source.GATEWAY, dedup_key=key, received_at=at,
                       input_token=1000, output_token=100, total_token=1100, completed_at=at,
                       user_id=user)  # fmt: skip


async def test_reprice_follows_the_edited_table_and_is_idempotent(
    database_url: str, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(OLD)
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    sink = SqlSink(engine, pricing=Pricing(build(str(prices), "USD", False), "USD"))
    reports = [_report("a", "m", T0 + 9 * H, "u1"), _report("b", "m", T0 + 13 * H, "u1"),
               _report("c", "m", T0 + 14 * H, "u2"), _report("d", "n", T0 + 15 * H, "u1"),
               _report("e", "m", T0 + 25 * H, "u1")]  # fmt: skip
    try:
        await sink.write(Work(reports=reports))
        prices.write_text(NEW)
        repricer = Repricer(engine, build(str(prices), "USD", False))
        first = await repricer.run(T0_DAY, T0_DAY)
        again = await repricer.run(T0_DAY, T0_DAY)
    finally:
        await engine.dispose()
    dialect = engine.dialect.name
    old_m, new_m = Decimal("0.0012"), Decimal("0.012")
    n = Decimal("0.005")
    m = first.models["m"]
    assert (m.rows, m.changed, m.old_unpriced, m.new_unpriced) == (3, 2, 0, 0)
    assert (m.old_cost, m.new_cost) == (3 * 1_200_000_000, 1_200_000_000 + 2 * 12_000_000_000)
    nn = first.models["n"]
    assert (nn.rows, nn.changed, nn.old_unpriced, nn.new_unpriced) == (1, 1, 1, 0)
    assert (first.rollups, first.rollups_changed) == (3, 3)
    assert all(c.changed == 0 for c in again.models.values())
    assert (again.rollups, again.rollups_changed) == (3, 0)

    details = await query(database_url, "SELECT dedup_key, cost, cost_status, price_version "
                          "FROM model_usage_details ORDER BY dedup_key")
    assert [(k, to_amount(dialect, c), s, v) for k, c, s, v in details] == [
        ("a", old_m, "priced", "file:m@always"),
        ("b", new_m, "priced", "file:m@2026-03-02T12:00:00Z"),
        ("c", new_m, "priced", "file:m@2026-03-02T12:00:00Z"),
        ("d", n, "priced", "file:n@always"),
        ("e", old_m, "priced", "file:m@always"),  # another day: not repriced
    ]
    rollups = await query(database_url, "SELECT model_name, user_id, CAST(date AS VARCHAR(10)), "
                          "prompt_token_count, request_count, cost, unpriced_request_count "
                          "FROM model_usages ORDER BY date, model_name, user_id")
    assert [(*r[:5], to_amount(dialect, r[5]), r[6]) for r in rollups] == [
        ("m", "u1", "2026-03-02", 2000, 2, old_m + new_m, 0),
        ("m", "u2", "2026-03-02", 1000, 1, new_m, 0),
        ("n", "u1", "2026-03-02", 1000, 1, n, 0),
        ("m", "u1", "2026-03-03", 1000, 1, old_m, 0),
    ]
