"""Rows as a terminal table, CSV or JSON: what ``tokenbridge report`` and the demo print."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def render(names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """``rows`` under the column ``names`` as ``table``, ``csv`` or ``json``."""
    if fmt == "json":
        return json.dumps([dict(zip(names, row, strict=True)) for row in rows], indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
        return out.getvalue()
    cells = [list(names), *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n"
