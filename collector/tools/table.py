"""Rows as a terminal table, CSV or JSON: what ``tokenbridge report`` and the demo print."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def render(
    names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, raw: bool = False
) -> str:
    """Rows as a table, CSV or JSON. Names come from senders, so unless ``raw``: a CSV cell
    a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd|...``, ``@SUM(...)``) is
    neutralised with a leading ``'`` (OWASP's rule), and the table shows control characters
    escaped (``\\x1b[2J`` would clear the terminal, a CR would forge a line)."""
    if fmt == "json":
        return json.dumps([dict(zip(names, row, strict=True)) for row in rows], indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        # CRLF rows (RFC 4180): the writer then quotes every cell holding a CR or LF, which
        # with a bare "\n" terminator it leaves unquoted, so a CR in a name forged a row.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(names)
        writer.writerows(rows if raw else ([_cell(v) for v in row] for row in rows))
        return out.getvalue()
    shown = str if raw else _printable
    cells = [list(names), *[["" if v is None else shown(str(v)) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n"


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs: text starting like a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _printable(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1) shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
