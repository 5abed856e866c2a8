"""A changed price file is reloaded; a bad one is logged and the last good table stays."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from collector.aggregation.pricing.watch import PriceWatcher, Pricing, build

JAN = 1767225600000


def _rate(pricing: Pricing) -> int | None:
    return pricing.table.price("m", None, None, JAN, 1_000_000, 0, 0, 0, 0, 1)[0]


def _touch(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


async def test_reload_takes_a_good_file_and_keeps_the_last_good_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prices.yaml"
    _touch(path, "prices: [{model: m, per_million: {input: 1}}]", 10**18)
    pricing = Pricing(build(str(path), "USD", False), "USD")
    watcher = PriceWatcher(path, "USD", False, pricing)
    assert await watcher.check() is False  # unchanged
    _touch(path, "prices: [{model: m, per_million: {input: 2}}]", 10**18 + 1)
    assert await watcher.check() is True
    assert _rate(pricing) == 2 * 10**12
    with caplog.at_level(logging.ERROR):
        _touch(path, "prices: [{model: m, per_million: {input: -2}}]", 10**18 + 2)
        assert await watcher.check() is False
    assert "prices[0].per_million.input" in caplog.text
    assert _rate(pricing) == 2 * 10**12  # the last good table stays
    _touch(path, "currency: EUR\nprices: []", 10**18 + 3)
    assert await watcher.check() is False
    assert _rate(pricing) == 2 * 10**12
