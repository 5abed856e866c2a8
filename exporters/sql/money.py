"""Money between the pricing rule (integer pico-units) and the ``cost`` columns.

PostgreSQL stores the amount as NUMERIC(38, 12), exactly the pico-units scaled by 10^-12.
SQLite has no decimal type, so it stores the pico-units themselves as INTEGER: lossless, and
SQLite's integer ``sum()`` is exact (past 2^63 pico-units, about 9.2 million of the currency
in one sum, it raises "integer overflow" instead of rounding; deployments that large belong
on PostgreSQL). Why not decimal text on SQLite: every ``SUM`` in the commit, the report and
the correction would then need a Python aggregate.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from collector.aggregation.pricing.rates import as_decimal


def _pg(pico: int | None) -> Decimal | None:
    return None if pico is None else Decimal(pico).scaleb(-12)


def _same(pico: int | None) -> int | None:
    return pico


def to_column(dialect: str) -> Callable[[int | None], Any]:
    """Pico-units -> the value the dialect's ``cost`` column holds."""
    return _pg if dialect == "postgresql" else _same


def to_pico(dialect: str, value: Any) -> int | None:
    """A ``cost`` column value (or a SUM of them) -> pico-units."""
    if value is None:
        return None
    if dialect == "postgresql":
        return int(Decimal(value).scaleb(12))
    return int(value)


def to_amount(dialect: str, value: Any) -> Decimal | None:
    """A ``cost`` column value -> the exact amount of the currency."""
    pico = to_pico(dialect, value)
    return None if pico is None else as_decimal(pico)


def text(amount: Decimal | None) -> str | None:
    """An amount in plain notation without trailing zeros (``0.0060625``, ``12``)."""
    if amount is None:
        return None
    plain = format(amount, "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain
