"""The queries of the committed dashboards, with Grafana's template variables substituted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from tests.support import ROOT

DASHBOARDS = ROOT / "dashboards"
PROMETHEUS_DASHBOARDS = ("usage.json", "health.json")
SQL_DASHBOARDS = ("billing.json",)
# What Grafana would put in: "All" for every label filter, the default top N, windows that
# hold several scrapes of the test's 1 s interval.
PROMQL_VARIABLES = {"$__rate_interval": "15s", "$__range": "5m", "$__interval": "1s",
                    "$topn": "10"}  # fmt: skip


def load(name: str) -> Any:
    return json.loads((DASHBOARDS / name).read_text())


def targets(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every target of every panel of one dashboard."""
    for panel in load(name)["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


def promql(expr: str) -> str:
    for name, value in PROMQL_VARIABLES.items():
        expr = expr.replace(name, value)
    expr = re.sub(r"\$\{?(\w+)\}?", ".*", expr)  # label variables ($model ...) -> All
    assert "$" not in expr, expr
    return expr


def grafana_sql(raw: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros, expanded as Grafana does (UTC RFC 3339 literals)."""
    a = start.strftime("'%Y-%m-%dT%H:%M:%SZ'")
    b = end.strftime("'%Y-%m-%dT%H:%M:%SZ'")
    raw = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {a} AND {b}", raw)
    raw = raw.replace("$__timeFrom()", a).replace("$__timeTo()", b)
    assert "$" not in raw, raw
    return raw


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects."""
    return set(re.findall(r"\btokenbridge_[a-z_]+\b", expr))
