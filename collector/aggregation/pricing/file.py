"""The price file (``pricing.path``): YAML rows of time-versioned prices, checked whole.

```yaml
prices:
  - model: gpt-4o                  # exact name; or match: {prefix: "gpt-4o-"} / {regex: "..."}
    provider: openai               # optional: only reports with that provider
    from: "2026-01-01T00:00:00Z"   # optional (since ever); a later row of the model supersedes
    per_million: {input: 2.50, cached_input: 1.25, cache_write: 3.125, output: 10.0,
                  reasoning: 10.0}
    per_request: 0.0
    tiers: [{above_input_tokens: 200000, per_million: {input: 5.0, output: 15.0}}]
```

A bad row refuses the whole file with the row and the key named (``prices[3].per_million.
input: ...``): unknown keys, negative or non-finite rates, rates not exact in pico-units, two
rows for the same model, provider and ``from``, a bad regex, unordered tiers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from collector.aggregation.pricing.rates import Price, Tier, per_request_pico, per_token, resolve


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _amount(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite() or value < 0:
        raise ValueError("must be a finite number >= 0")
    return value


class PerMillion(_Strict):
    input: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None
    reasoning: Decimal | None = None

    @field_validator("*")
    @classmethod
    def _rate(cls, value: Decimal | None) -> Decimal | None:
        checked = _amount(value)
        if checked is not None:
            per_token(checked)
        return checked

    def given(self) -> dict[str, int]:
        return {k: per_token(v) for k, v in self.model_dump().items() if v is not None}


class TierRow(_Strict):
    above_input_tokens: int
    per_million: PerMillion

    @field_validator("above_input_tokens")
    @classmethod
    def _threshold(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be >= 0")
        return value


class Match(_Strict):
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Match:
        if (self.prefix is None) == (self.regex is None):
            raise ValueError("give exactly one of prefix, regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"bad regex: {exc}") from None
        return self


class PriceRow(_Strict):
    model: str | None = None
    match: Match | None = None
    provider: str | None = None
    from_: datetime | None = None
    per_million: PerMillion = PerMillion()
    per_request: Decimal = Decimal(0)
    tiers: list[TierRow] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _from_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "from" in data:
            data = {**data, "from_": data["from"]}
            del data["from"]
        return data

    @field_validator("per_request")
    @classmethod
    def _per_request(cls, value: Decimal) -> Decimal:
        checked = _amount(value)
        assert checked is not None
        per_request_pico(checked)
        return checked

    @field_validator("from_")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-01-01T00:00:00Z")
        return value

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, value: list[TierRow]) -> list[TierRow]:
        thresholds = [t.above_input_tokens for t in value]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("thresholds must be distinct and ascending")
        return value

    @model_validator(mode="after")
    def _selector(self) -> PriceRow:
        if (self.model is None) == (self.match is None):
            raise ValueError("give exactly one of model, match")
        return self

    def selector(self) -> str:
        if self.model is not None:
            return self.model
        assert self.match is not None
        if self.match.prefix is not None:
            return f"prefix:{self.match.prefix}"
        return f"regex:{self.match.regex}"

    def since_ms(self) -> int:
        return -(2**62) if self.from_ is None else int(self.from_.timestamp() * 1000)

    def price(self) -> Price:
        base = resolve(self.per_million.given())
        tiers = tuple(Tier(t.above_input_tokens, resolve(t.per_million.given(), base))
                      for t in self.tiers)  # fmt: skip
        since = "always" if self.from_ is None else _iso(self.from_)
        where = f"[{self.provider}]" if self.provider else ""
        version = f"file:{self.selector()}{where}@{since}"[:255]
        return Price(version, base, per_request_pico(self.per_request), tiers)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PriceFile(_Strict):
    currency: str | None = None
    """Optional; when given it must be the deployment's ``pricing.currency``."""
    prices: list[PriceRow] = []

    @model_validator(mode="after")
    def _distinct_versions(self) -> PriceFile:
        seen: dict[tuple[str, str | None, int], int] = {}
        for index, row in enumerate(self.prices):
            key = (row.selector(), row.provider, row.since_ms())
            if key in seen:
                raise ValueError(f"prices[{index}].from: same model, provider and from as "
                                 f"prices[{seen[key]}]")  # fmt: skip
            seen[key] = index
        return self


def load(path: str | Path, currency: str) -> list[PriceRow]:
    """The rows of a price file in ``currency``; ``ValueError`` naming the file, row and key."""
    try:
        raw: Any = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"price file {path}: {exc}") from None
    try:
        parsed = PriceFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"price file {path}: {_describe(exc)}") from None
    if parsed.currency is not None and parsed.currency != currency:
        raise ValueError(f"price file {path}: currency {parsed.currency}, but this deployment "
                         f"counts in {currency} (pricing.currency)")  # fmt: skip
    return parsed.prices


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = [("from" if p == "from_" else p) for p in item["loc"]]
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)
