"""The builtin price table: the ``genai-prices`` package's data, as price versions.

``genai-prices`` (pydantic, PyPI) keeps per-provider model prices in USD per million tokens,
with its own time versions (``ConditionalPrice`` with a ``StartDateConstraint``: from a UTC
day on; ``TimeOfDateConstraint``: daily off-peak windows) and long-context tiers
(``TieredPrices``: the whole request at the tier's rate once its input exceeds the tier's
start, the same cliff as ours). Its model and provider matching is used as is
(``DataSnapshot.find_provider_model``); a provider it does not know is retried without one.

Mapped price keys: ``input_mtok``, ``cache_read_mtok`` (cached input), ``cache_write_mtok``,
``output_mtok``, ``output_reasoning_mtok`` and ``requests_kcount`` (per thousand requests).
A model priced only by other units (audio, images, searches) has no price here: its reports
are unpriced, never priced at 0. Some of the package's rates carry float residue
(``0.0416666666666667`` per million); they are rounded half-even to whole pico-units per
token, the only rounding anywhere in pricing.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.metadata import version as package_version

from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
)

from collector.aggregation.pricing.rates import PER_TOKEN_SCALE, PICO, Price, Tier, resolve

KEYS = {
    "input_mtok": "input",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "output_mtok": "output",
    "output_reasoning_mtok": "reasoning",
}
EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)
NEVER = -(2**62)


def _round(value: Decimal, scale: int) -> int:
    return int((value * scale).to_integral_value(ROUND_HALF_EVEN))


class Versions:
    """Price versions of one model: ``at(ms)`` is the price valid at that instant."""

    def __init__(self, starts: list[int], prices: list[Price]) -> None:
        self.starts = starts
        self.prices = prices

    def at(self, ms: int) -> Price | None:
        index = bisect_right(self.starts, ms) - 1
        return self.prices[index] if index >= 0 else None


class _Daily(Versions):
    """Versions that change within a day (off-peak windows): asked of the package each time."""

    def __init__(self, info: ModelInfo, label: str) -> None:
        super().__init__([], [])
        self._info = info
        self._label = label
        self._made: dict[int, Price | None] = {}

    def at(self, ms: int) -> Price | None:
        at = datetime.fromtimestamp(ms / 1000, UTC)
        prices = self._info.get_prices(at)
        key = id(prices)
        if key not in self._made:
            self._made[key] = convert(prices, f"{self._label}#{_index(self._info, prices)}")
        return self._made[key]


def _index(info: ModelInfo, prices: ModelPrice) -> int:
    if isinstance(info.prices, list):
        for n, conditional in enumerate(info.prices):
            if conditional.prices is prices:
                return n
    return 0


def _given(prices: ModelPrice, threshold: int | None) -> dict[str, int]:
    given: dict[str, int] = {}
    for key, name in KEYS.items():
        value = getattr(prices, key, None)
        if isinstance(value, TieredPrices):
            rate = value.base
            for tier in value.tiers:
                if threshold is not None and tier.start <= threshold:
                    rate = tier.price
            given[name] = _round(rate, PER_TOKEN_SCALE)
        elif isinstance(value, Decimal):
            given[name] = _round(value, PER_TOKEN_SCALE)
    return given


def _thresholds(prices: ModelPrice) -> list[int]:
    found: set[int] = set()
    for key in KEYS:
        value = getattr(prices, key, None)
        if isinstance(value, TieredPrices):
            found.update(tier.start for tier in value.tiers)
    return sorted(found)


def convert(prices: ModelPrice, version: str) -> Price | None:
    """A ``genai_prices`` model price as our price, or None when it prices none of our
    units."""
    base_given = _given(prices, None)
    requests = getattr(prices, "requests_kcount", None)
    if not base_given and not isinstance(requests, Decimal):
        return None
    base = resolve(base_given)
    tiers = tuple(Tier(t, resolve(_given(prices, t), base)) for t in _thresholds(prices))
    per_request = _round(requests, PICO // 1000) if isinstance(requests, Decimal) else 0
    return Price(version[:255], base, per_request, tiers)


class Builtin:
    """Lookups in the package's bundled snapshot."""

    def __init__(self) -> None:
        from genai_prices import data_snapshot

        self._snapshot = data_snapshot.get_snapshot()
        self.label = f"genai-prices {package_version('genai-prices')}"

    def versions(self, model: str, provider: str | None) -> Versions | None:
        found = self._find(model, provider)
        if found is None:
            return None
        provider_info, info = found
        label = f"{self.label}:{provider_info.id}/{info.id}"
        return _versions(info, label)

    def _find(self, model: str, provider: str | None) -> tuple[Provider, ModelInfo] | None:
        attempts = [provider, None] if provider else [None]
        for provider_id in attempts:
            try:
                provider_info, info = self._snapshot.find_provider_model(
                    model, None, provider_id, None
                )
                return provider_info, info
            except LookupError:
                continue
        return None


def _versions(info: ModelInfo, label: str) -> Versions | None:
    prices = info.prices
    if isinstance(prices, ModelPrice):
        price = convert(prices, label)
        return None if price is None else Versions([NEVER], [price])
    constraints = [c.constraint for c in prices]
    if any(c is not None and not isinstance(c, StartDateConstraint) for c in constraints):
        return _Daily(info, label)
    days = sorted({c.start_date for c in constraints if isinstance(c, StartDateConstraint)})
    starts: list[int] = []
    made: list[Price] = []
    for start in [None, *days]:
        at = EPOCH_START if start is None else _midnight(start)
        chosen = info.get_prices(at)
        since = "always" if start is None else start.isoformat()
        price = convert(chosen, f"{label}@{since}")
        if price is None:
            continue
        starts.append(NEVER if start is None else int(at.timestamp() * 1000))
        made.append(price)
    return Versions(starts, made) if made else None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)
