"""The live price table of a serving process, and its reload when the price file changes.

The file is followed by ``collector.reload.FileWatcher``, as the catalog is: a valid edit
replaces the table at once, an invalid one is logged with the row and key at fault and the
last good table stays. Reports committed before the swap keep
the price they were given; ``tokenbridge reprice`` corrects days after an edit.
"""

from __future__ import annotations

from pathlib import Path

from collector.aggregation.pricing import file
from collector.aggregation.pricing.builtin import Builtin
from collector.aggregation.pricing.table import PriceTable
from collector.reload import FileWatcher


def build(path: str | None, currency: str, builtin: bool) -> PriceTable:
    """The table of ``path`` (if any) over the builtin one (if wanted); ``ValueError``
    naming the file, row and key of a bad row."""
    rows = file.load(path, currency) if path is not None else []
    return PriceTable(rows, Builtin() if builtin else None)


class Pricing:
    """The current table (``table.price`` is the hot-path call, one per audit row), swapped
    whole by a reload."""

    def __init__(self, table: PriceTable, currency: str) -> None:
        self.table = table
        self.currency = currency

    def install(self, table: PriceTable) -> None:
        self.table = table


class PriceWatcher(FileWatcher[PriceTable]):
    """Reloads the price file into ``pricing`` when it changes (``collector.reload``)."""

    def __init__(self, path: str | Path, currency: str, builtin: bool, pricing: Pricing) -> None:
        builtins = pricing.table.builtin if builtin else None
        super().__init__(
            path, lambda p: PriceTable(file.load(p, currency), builtins), pricing.install,
            "prices", lambda table: f"{table.rows} rows",
        )
