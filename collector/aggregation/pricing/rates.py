"""A price version and the cost rule: pure, exact, no I/O and no clock.

Money is counted in integer *pico-units* (10^-12 of the deployment's currency). A rate of R
per million tokens is R * 10^6 pico-units per token, an integer for every rate with at most
six decimal places (the price file refuses more; see ``pricing.file``), so the cost of a
request is an exact integer sum of products: no rounding and no binary floats anywhere
between the price file and the stored money.

The rule for one report (``cost``), with the stored counts (prompt tokens include cached ones,
cache writes and reasoning tokens are subsets):

- tier: the last tier whose ``above_input_tokens`` the request's input tokens (cached
  included) *exceed* applies to every token of the request (the provider's cliff, not
  slices). A report that stands for several requests (a metric delta with
  ``request_count`` n > 1) is judged on its input per request: ``prompt > threshold * n``;
- uncached input = input - cached - cache_write, clamped at 0; each of the three at its rate;
- non-reasoning output = output - reasoning, clamped at 0, at ``output``; reasoning at
  ``reasoning``;
- ``per_request`` once per request (``request_count`` times).

Worked example, per million: input 2.50, cached_input 1.25, cache_write 3.125, output 10,
reasoning 10, per_request 0.001; a request with 1,000 input tokens of which 400 cached and
100 written to the cache, 300 output tokens of which 120 reasoning::

    uncached  500 x 2.50 / 1e6 = 0.00125
    cached    400 x 1.25 / 1e6 = 0.0005
    write     100 x 3.125 / 1e6 = 0.0003125
    output    180 x 10 / 1e6   = 0.0018
    reasoning 120 x 10 / 1e6   = 0.0012
    request                      0.001
    cost                         0.0060625  (6,062,500,000 pico-units)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

PICO = 10**12
"""Pico-units per currency unit."""
PER_TOKEN_SCALE = 10**6
"""A rate per million tokens times this is pico-units per token."""


class Rates(NamedTuple):
    """Resolved rates in pico-units per token (fallbacks already applied)."""

    input: int
    cached_input: int
    cache_write: int
    output: int
    reasoning: int


@dataclass(frozen=True, slots=True)
class Tier:
    above_input_tokens: int
    rates: Rates


@dataclass(frozen=True, slots=True)
class Price:
    """One price version: what a report is charged from ``version``'s ``from`` on."""

    version: str
    """What the audit row records: where the price came from and since when."""
    rates: Rates
    per_request: int
    """Pico-units per request."""
    tiers: tuple[Tier, ...] = ()
    """Ascending by threshold."""


def per_token(rate_per_million: Decimal) -> int:
    """Pico-units per token of a rate per million tokens; ``ValueError`` if not exact
    (more than six decimal places)."""
    scaled = rate_per_million * PER_TOKEN_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError("at most 6 decimal places per million tokens")
    return int(scaled)


def per_request_pico(amount: Decimal) -> int:
    scaled = amount * PICO
    if scaled != scaled.to_integral_value():
        raise ValueError("at most 12 decimal places")
    return int(scaled)


def resolve(
    given: dict[str, int], base: Rates | None = None
) -> Rates:
    """Rates with the fallbacks: a missing ``cached_input`` or ``cache_write`` is ``input``,
    a missing ``reasoning`` is ``output``. In a tier (``base`` given) a missing ``input`` or
    ``output`` is the base row's, and the fallbacks then use the tier's own input and output.

    Example: base {input 2.5, output 10} and tier {input 5} -> tier input 5, cached_input 5,
    cache_write 5, output 10, reasoning 10 (per million)."""
    default_input = base.input if base is not None else 0
    default_output = base.output if base is not None else 0
    input_rate = given.get("input", default_input)
    output_rate = given.get("output", default_output)
    return Rates(
        input_rate,
        given.get("cached_input", input_rate),
        given.get("cache_write", input_rate),
        output_rate,
        given.get("reasoning", output_rate),
    )


def rates_for(price: Price, prompt: int, requests: int) -> Rates:
    """The rates of the tier the request falls in. Thresholds are exceeded, not reached:
    with a tier above 200,000, a request of exactly 200,000 input tokens pays the base rates
    and one of 200,001 pays the tier's for every token."""
    rates = price.rates
    scale = requests if requests > 1 else 1
    for tier in price.tiers:
        if prompt > tier.above_input_tokens * scale:
            rates = tier.rates
        else:
            break
    return rates


def cost(
    price: Price,
    prompt: int,
    completion: int,
    cached: int,
    cache_write: int,
    reasoning: int,
    requests: int,
) -> int:
    """The cost in pico-units of a report with these stored counts (see the module's rule)."""
    r = rates_for(price, prompt, requests) if price.tiers else price.rates
    uncached = prompt - cached - cache_write
    plain_output = completion - reasoning
    return (
        (uncached if uncached > 0 else 0) * r.input
        + cached * r.cached_input
        + cache_write * r.cache_write
        + (plain_output if plain_output > 0 else 0) * r.output
        + reasoning * r.reasoning
        + requests * price.per_request
    )


def as_decimal(pico: int) -> Decimal:
    """Pico-units as an exact decimal amount of the currency (``6062500000`` -> ``0.0060625``)."""
    return Decimal(pico).scaleb(-12).normalize() if pico else Decimal(0)
