"""The builtin table against genai-prices' own ``calc``: every model it prices with our
units, each usage below, the same cost, tiers and cache writes included. The only
differences allowed are the documented rounding of rates with float residue (such as
0.0416666666666667 per million) to whole pico-units per token."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import Usage, data_snapshot

from collector.aggregation.pricing.builtin import Builtin
from collector.aggregation.pricing.rates import PICO, as_decimal, cost

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
USAGES = [  # input (cached and cache writes included), cache read, cache write, output
    (1000, 0, 0, 100), (250_000, 50_000, 10_000, 2000), (200_000, 0, 0, 1), (200_001, 1, 0, 1),
]


def test_builtin_costs_equal_genai_prices_own_calculation() -> None:
    snapshot = data_snapshot.get_snapshot()
    builtin = Builtin()
    ms = int(AT.timestamp() * 1000)
    equal = rounded = 0
    for provider in snapshot.providers:
        for model in provider.models:
            versions = builtin.versions(model.id, provider.id)
            price = versions.at(ms) if versions is not None else None
            if price is None:
                continue
            for inp, read, write, out in USAGES:
                usage = Usage(input_tokens=inp, cache_read_tokens=read, cache_write_tokens=write,
                              output_tokens=out)  # fmt: skip
                try:
                    theirs = snapshot.calc(usage, model.id, provider.id, None, AT).total_price
                except (LookupError, ValueError):
                    continue  # priced by units a token report cannot carry
                ours = as_decimal(cost(price, inp, out, read, write, 0, 1))
                if ours == theirs:
                    equal += 1
                    continue
                # Half a pico-unit per token at most, and only for a rate with float residue.
                assert abs(ours - theirs) <= Decimal(inp + out) / 2 / PICO, (model.id, usage)
                assert any(len(str(r).split(".")[-1]) > 6 for r in _rates(model.get_prices(AT)))
                rounded += 1
    assert equal > 5000 and rounded < equal // 100, (equal, rounded)


def _rates(prices: object) -> list[Decimal]:
    out = []
    for key in ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok"):
        value = getattr(prices, key, None)
        if isinstance(value, Decimal):
            out.append(value)
        elif value is not None:
            out += [value.base, *(t.price for t in value.tiers)]
    return out
