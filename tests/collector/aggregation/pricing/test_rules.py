"""The cost rules on worked examples (README "Cost"): exact pico-unit integers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from collector.aggregation.pricing.rates import PICO, as_decimal
from collector.aggregation.pricing.table import PRICED, UNPRICED, ZERO_PRICED, Priced, PriceTable

JAN = 1767225600000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000


def table(tmp_path: Path, text: str, builtin: bool = False) -> PriceTable:
    from collector.aggregation.pricing.watch import build

    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return build(str(path), "USD", builtin)


ROW = """
prices:
  - model: gpt-4o
    from: "2026-01-01T00:00:00Z"
    per_million: {input: 2.50, cached_input: 1.25, cache_write: 3.125, output: 10.0,
                  reasoning: 10.0}
    per_request: 0.001
    tiers:
      - above_input_tokens: 200000
        per_million: {input: 5.0, cached_input: 2.5, output: 15.0}
"""


def money(priced: Priced) -> Decimal | None:
    return None if priced[0] is None else as_decimal(priced[0])


def test_docstring_example_cache_and_reasoning(tmp_path: Path) -> None:
    t = table(tmp_path, ROW)
    # 1000 input (400 cached, 100 cache write), 300 output (120 reasoning), one request.
    priced = t.price("gpt-4o", None, None, JAN + HOUR, *(1000, 300, 400, 100, 120, 1))
    assert money(priced) == Decimal("0.0060625")
    assert priced == (6_062_500_000, PRICED, "file:gpt-4o@2026-01-01T00:00:00Z")


def test_uncached_input_clamps_at_zero(tmp_path: Path) -> None:
    t = table(tmp_path, ROW)
    # cached 800 + write 400 > input 1000: uncached 0, not -200; no output; per_request.
    priced = t.price("gpt-4o", None, None, JAN, *(1000, 0, 800, 400, 0, 1))
    assert money(priced) == Decimal("0.00100") + Decimal("0.00125") + Decimal("0.001")


def test_missing_rates_fall_back(tmp_path: Path) -> None:
    t = table(tmp_path, "prices: [{model: m, per_million: {input: 2, output: 8}}]")
    # cached and cache write at input (2), reasoning at output (8): 1000 x 2 + 100 x 8 per 1e6.
    priced = t.price("m", None, None, JAN, *(1000, 100, 300, 200, 40, 1))
    assert money(priced) == Decimal("0.0028")
    # A row without input or output rates prices those tokens at 0 (it said so).
    only_requests = table(tmp_path, "prices: [{model: m, per_request: 0.04}]")
    assert money(only_requests.price("m", None, None, JAN, *(5000, 500, 0, 0, 0, 3))) == \
        Decimal("0.12")


def test_reasoning_is_a_subset_of_output(tmp_path: Path) -> None:
    t = table(tmp_path, "prices: [{model: m, per_million: {output: 10, reasoning: 60}}]")
    # 100 output of which 30 reasoning: 70 x 10 + 30 x 60, never 100 x 10 + 30 x 60.
    assert money(t.price("m", None, None, JAN, *(0, 100, 0, 0, 30, 1))) == Decimal("0.0025")


def test_tier_cliff_exactly_at_and_one_above_the_threshold(tmp_path: Path) -> None:
    t = table(tmp_path, ROW)
    # Exactly 200,000 input tokens: base rates (2.50 in, 10 out) + per_request.
    at = t.price("gpt-4o", None, None, JAN, *(200_000, 1000, 0, 0, 0, 1))
    assert money(at) == Decimal("0.5") + Decimal("0.01") + Decimal("0.001")
    # 200,001, 1000 of them cached: the tier for every token of the request: 199,001 x 5,
    # 1000 cached x 2.5, 1000 output x 15; cache_write and reasoning fall back in the tier.
    above = t.price("gpt-4o", None, None, JAN, *(200_001, 1000, 1000, 0, 0, 1))
    assert money(above) == Decimal("0.995005") + Decimal("0.0025") + Decimal("0.015") + \
        Decimal("0.001")


def test_tier_of_a_report_of_several_requests_is_judged_per_request(tmp_path: Path) -> None:
    t = table(tmp_path, ROW)
    # A metric delta of 3 requests with 450,000 input: 150,000 each, base rates.
    priced = t.price("gpt-4o", None, None, JAN, *(450_000, 0, 0, 0, 0, 3))
    assert money(priced) == Decimal("1.125") + Decimal("0.003")


def test_price_version_by_instant(tmp_path: Path) -> None:
    t = table(tmp_path, """
prices:
  - {model: m, from: "2026-01-01T00:00:00Z", per_million: {input: 1}}
  - {model: m, from: "2026-01-01T16:00:00Z", per_million: {input: 3}}
""")
    before = t.price("m", None, None, JAN + 16 * HOUR - 1, *(1_000_000, 0, 0, 0, 0, 1))
    after = t.price("m", None, None, JAN + 16 * HOUR, *(1_000_000, 0, 0, 0, 0, 1))
    assert (money(before), money(after)) == (Decimal(1), Decimal(3))
    assert after[2] == "file:m@2026-01-01T16:00:00Z"
    # Before the first version the model has no price here.
    assert t.price("m", None, None, JAN - 1, *(1, 0, 0, 0, 0, 1)) == (None, UNPRICED, None)


def test_unpriced_and_zero_priced_are_kept_apart(tmp_path: Path) -> None:
    t = table(tmp_path, "prices: [{model: free, per_million: {input: 0, output: 0}}]")
    assert t.price("unknown", None, None, JAN, *(10, 10, 0, 0, 0, 1)) == \
        (None, UNPRICED, None)
    free = t.price("free", None, None, JAN, *(10, 10, 0, 0, 0, 1))
    assert free == (0, ZERO_PRICED, "file:free@always")


def test_match_order_and_provider(tmp_path: Path) -> None:
    t = table(tmp_path, """
prices:
  - {match: {regex: "gpt-.*"}, per_million: {input: 9}}
  - {match: {prefix: "gpt-4o-"}, per_million: {input: 4}}
  - {match: {prefix: "gpt-4o-mini"}, per_million: {input: 1}}
  - {model: gpt-4o-mini, provider: azure, per_million: {input: 2}}
""")
    def rate(model: str, provider: str | None = None) -> Decimal | None:
        return money(t.price(model, provider, None, JAN, *(1_000_000, 0, 0, 0, 0, 1)))
    assert rate("gpt-4o-mini") == 1  # longest prefix
    assert rate("gpt-4o-mini", "azure") == 2  # exact name with its provider
    assert rate("gpt-4o-2024") == 4
    assert rate("gpt-3.5") == 9  # the regex matches the whole name
    assert rate("xgpt-3.5") is None


@pytest.mark.parametrize(("text", "named"), [
    ("prices: [{model: m, per_million: {input: -1}}]", "prices[0].per_million.input"),
    ("prices: [{model: m, per_million: {input: .nan}}]", "prices[0].per_million.input"),
    ("prices: [{model: m, per_million: {input: .inf}}]", "prices[0].per_million.input"),
    ("prices: [{model: m, per_million: {inptu: 1}}]", "prices[0].per_million.inptu"),
    ("prices: [{model: m, colour: red}]", "prices[0].colour"),
    ("prices: [{model: m, per_million: {input: 0.0000001}}]", "prices[0].per_million.input"),
    ("prices: [{model: m}, {model: n}, {model: m, from: '2026-01-01T00:00:00Z'},"
     " {model: m, from: '2026-01-01T00:00:00Z'}]", "prices[3].from"),
    ("prices: [{match: {regex: '('}}]", "prices[0].match"),
    ("prices: [{model: m, tiers: [{above_input_tokens: 5, per_million: {}},"
     " {above_input_tokens: 2, per_million: {}}]}]", "prices[0].tiers"),
    ("currency: EUR\nprices: []", "currency EUR"),
])
def test_bad_rows_are_refused_with_row_and_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        table(tmp_path, text)


def test_builtin_prices_a_model_the_file_does_not_name(tmp_path: Path) -> None:
    t = table(tmp_path, "prices: [{model: gpt-4o, per_million: {input: 100}}]", builtin=True)
    # The file wins for its model; genai-prices prices the others (gpt-4o-mini: 0.15 in,
    # 0.075 cached, 0.60 out per million).
    assert money(t.price("gpt-4o", "openai", None, JAN, *(1_000_000, 0, 0, 0, 0, 1))) == 100
    mini = t.price("gpt-4o-mini", "openai", None, JAN, *(1_000_000, 1_000_000, 500_000, 0, 0, 1))
    assert money(mini) == Decimal("0.075") + Decimal("0.0375") + Decimal("0.6")
    assert mini[2] is not None and mini[2].startswith("genai-prices ")
    assert t.price("no-such-model-xyz", None, None, JAN, *(1, 1, 0, 0, 0, 1))[1] == UNPRICED


def test_builtin_respects_its_time_versions(tmp_path: Path) -> None:
    from collector.aggregation.pricing.builtin import Builtin

    # genai-prices dates some prices (StartDateConstraint): each day prices by its version.
    builtin = Builtin()
    changed = []
    for model, provider in _dated_models():
        versions = builtin.versions(model, provider)
        if versions is None or len(versions.starts) < 2:
            continue
        early = versions.at(versions.starts[1] - 1)
        late = versions.at(versions.starts[1])
        assert early is not None and late is not None
        assert early.version.endswith("@always") and "@20" in late.version
        if early.rates != late.rates:
            changed.append((model, early.rates.input * 1_000_000 // PICO, late.version))
    assert changed, "genai-prices has prices that changed on a date"


def _dated_models() -> list[tuple[str, str]]:
    from genai_prices import data_snapshot
    from genai_prices.types import StartDateConstraint

    out = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            if isinstance(model.prices, list) and any(
                isinstance(c.constraint, StartDateConstraint) for c in model.prices
            ):
                out.append((model.id, provider.id))
    return out
