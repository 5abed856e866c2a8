"""The price table: which price a report pays, found once per model and provider.

Candidates for a report, most specific first: file rows naming the model exactly, then
``match.prefix`` rows (longest prefix first), then ``match.regex`` rows (file order; the regex
must match the whole name); within each, rows restricted to the report's provider before rows
for any provider; last the builtin table (``genai-prices``), for models the file does not
price. The first candidate with a version valid at the report's instant prices it: the version
whose ``from`` <= instant < the next version's ``from``. A model with no candidate, or whose
candidates all start after the instant, is unpriced.

The report's provider is its ``provider_name`` or its ``provider_type`` (a row's ``provider``
matches either). Candidate lists are memoised per (model, provider name, provider type), so
the hot path pays a dict lookup, a bisect over the versions and the integer cost rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from collector.aggregation.pricing.builtin import NEVER, Builtin, Versions
from collector.aggregation.pricing.file import PriceRow
from collector.aggregation.pricing.rates import cost

PRICED = "priced"
UNPRICED = "unpriced"
ZERO_PRICED = "zero_priced"
MEMO_ENTRIES = 1 << 16


Priced = tuple[int | None, str, str | None]
"""A report's cost in pico-units (None when unpriced), its status and price version (a plain
tuple: built once per report on the hot path)."""
UNPRICED_RESULT: Priced = (None, UNPRICED, None)


class _Selector(NamedTuple):
    provider: str | None
    versions: Versions


def _group(rows: Sequence[PriceRow]) -> dict[tuple[str, str | None], list[PriceRow]]:
    groups: dict[tuple[str, str | None], list[PriceRow]] = {}
    for row in rows:
        groups.setdefault((row.selector(), row.provider), []).append(row)
    return groups


def _versions(rows: list[PriceRow]) -> Versions:
    ordered = sorted(rows, key=PriceRow.since_ms)
    return Versions([r.since_ms() for r in ordered], [r.price() for r in ordered])


class PriceTable:
    def __init__(self, rows: Sequence[PriceRow] = (), builtin: Builtin | None = None) -> None:
        self.rows = len(rows)
        self.builtin = builtin
        self._exact: dict[str, list[_Selector]] = {}
        prefixes: list[tuple[str, _Selector]] = []
        self._regex: list[tuple[re.Pattern[str], _Selector]] = []
        for (_name, provider), group in _group(rows).items():
            first = group[0]
            selector = _Selector(provider, _versions(group))
            if first.model is not None:
                self._exact.setdefault(first.model, []).append(selector)
            elif first.match is not None and first.match.prefix is not None:
                prefixes.append((first.match.prefix, selector))
            elif first.match is not None and first.match.regex is not None:
                self._regex.append((re.compile(first.match.regex), selector))
        prefixes.sort(key=lambda item: -len(item[0]))
        self._prefixes = prefixes
        self._memo: dict[tuple[str, str | None, str | None], tuple[Versions, ...]] = {}

    def candidates(self, model: str, name: str | None, kind: str | None) -> tuple[Versions, ...]:
        key = (model, name, kind)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            found = self._memo[key] = self._find(model, name, kind)
        return found

    def _find(self, model: str, name: str | None, kind: str | None) -> tuple[Versions, ...]:
        providers = {p for p in (name, kind) if p}

        def usable(selectors: list[_Selector]) -> list[Versions]:
            # Provider rows before rows for any provider; otherwise the order given.
            kept = [s for s in selectors if s.provider is None or s.provider in providers]
            return [s.versions for s in sorted(kept, key=lambda s: s.provider is None)]

        ordered = usable(self._exact.get(model, []))
        ordered += usable([s for prefix, s in self._prefixes if model.startswith(prefix)])
        ordered += usable([s for pattern, s in self._regex if pattern.fullmatch(model)])
        if self.builtin is not None:
            for provider in (name, kind, None) if providers else (None,):
                found = self.builtin.versions(model, provider)
                if found is not None:
                    ordered.append(found)
                    break
        return tuple(ordered)

    def price(
        self, model: str, name: str | None, kind: str | None, ms: int, prompt: int,
        completion: int, cached: int, cache_write: int, reasoning: int, requests: int,
    ) -> Priced:  # fmt: skip
        """The hot-path call, one per audit row: the price at ``ms`` applied to the counts."""
        found = self._memo.get((model, name, kind))
        if found is None:
            found = self.candidates(model, name, kind)
        for versions in found:
            starts = versions.starts
            # Most reports fall in the newest version: no bisect for them.
            price = versions.prices[-1] if starts and starts[-1] <= ms else versions.at(ms)
            if price is not None:
                amount = cost(price, prompt, completion, cached, cache_write, reasoning, requests)
                return (amount, PRICED if amount else ZERO_PRICED, price.version)
        return UNPRICED_RESULT


__all__ = ["NEVER", "PRICED", "UNPRICED", "ZERO_PRICED", "PriceTable", "Priced"]
