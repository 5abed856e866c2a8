"""Writes the Grafana dashboards (the committed JSON is the artefact users import).

    python dashboards/build.py        # rewrites dashboards/*.json

Every panel's datasource is the dashboard's ``datasource`` template variable, so the JSON
imports into any Grafana (and provisions from ``provisioning/``) without datasource uids.
Metric names come from ``exporters/metrics/names.py``; tests run every query against a real
Prometheus and PostgreSQL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 42
PROMETHEUS = "prometheus"
POSTGRES = "grafana-postgresql-datasource"

INPUT = "tokenbridge_usage_input_tokens_total"
OUTPUT = "tokenbridge_usage_output_tokens_total"
CACHED = "tokenbridge_usage_cached_input_tokens_total"
REQUESTS = "tokenbridge_usage_requests_total"
COST = "tokenbridge_usage_cost_total"
UNPRICED = "tokenbridge_usage_unpriced_requests_total"
USAGE_SEL = 'model=~"$model", provider=~"$provider", operation=~"$operation", user=~"$user"'
HEALTH_SEL = 'instance=~"$instance"'
ESTIMATED = ', estimated="true"'

Panel = dict[str, Any]


def _ds(kind: str) -> dict[str, str]:
    return {"type": kind, "uid": "${datasource}"}


def datasource_var(kind: str) -> dict[str, Any]:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": kind,
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}


def label_var(name: str, metric: str, label: str | None = None) -> dict[str, Any]:
    label = label or name
    query = f"label_values({metric}, {label})"
    return {"name": name, "label": label, "type": "query", "datasource": _ds(PROMETHEUS),
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery",
                      "qryType": 1},
            "definition": query, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1,
            "options": [], "regex": "", "hide": 0}  # fmt: skip


def custom_var(name: str, values: list[str], default: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "custom", "query": ",".join(values),
            "current": {"text": default, "value": default}, "hide": 0, "multi": False,
            "includeAll": False,
            "options": [{"text": v, "value": v, "selected": v == default} for v in values]}


class Layout:
    """Places panels left to right on Grafana's 24-column grid, numbering them."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    def add(self, panel: Panel, w: int, h: int) -> None:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": w, "h": h}
        self._x += w
        self._row_h = max(self._row_h, h)
        self.panels.append(panel)


def prom(expr: str, legend: str = "__auto", instant: bool = False, ref: str = "A") -> Panel:
    return {"datasource": _ds(PROMETHEUS), "refId": ref, "expr": expr, "legendFormat": legend,
            "range": not instant, "instant": instant, "editorMode": "code"}


def sql(raw: str, fmt: str = "table", ref: str = "A") -> Panel:
    return {"datasource": _ds(POSTGRES), "refId": ref, "rawSql": raw, "format": fmt,
            "rawQuery": True, "editorMode": "code"}


def panel(kind: str, title: str, targets: list[Panel], ds: str, unit: str = "short",
          description: str = "", options: dict[str, Any] | None = None) -> Panel:
    return {"type": kind, "title": title, "description": description, "datasource": _ds(ds),
            "targets": targets, "options": options or {},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}}


def stat(title: str, target: Panel, ds: str, unit: str = "short") -> Panel:
    return panel("stat", title, [target], ds, unit, options={
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "none", "graphMode": "none", "textMode": "value"})


def dashboard(uid: str, title: str, layout: Layout, variables: list[dict[str, Any]],
              time_from: str, description: str) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["tokenbridge"],
        "editable": True, "graphTooltip": 1, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": time_from, "to": "now"}, "timezone": "utc", "refresh": "",
        "timepicker": {}, "links": [], "annotations": {"list": []},
        "templating": {"list": variables}, "panels": layout.panels,
    }  # fmt: skip


def _rate(metric: str, extra: str = "") -> str:
    return f"rate({metric}{{{USAGE_SEL}{extra}}}[$__rate_interval])"


def _increase(metric: str, extra: str = "") -> str:
    return f"increase({metric}{{{USAGE_SEL}{extra}}}[$__range])"


def usage() -> dict[str, Any]:
    layout = Layout()
    tiles = [("Input tokens", f"sum({_increase(INPUT)})", "short"),
             ("Output tokens", f"sum({_increase(OUTPUT)})", "short"),
             ("Requests", f"sum({_increase(REQUESTS)})", "short"),
             ("Cached input share", f"sum({_increase(CACHED)}) / sum({_increase(INPUT)})",
              "percentunit"),
             ("Estimated request share",
              f'sum({_increase(REQUESTS, ESTIMATED)}) / sum({_increase(REQUESTS)})',
              "percentunit"),
             ("Cost", f"sum({_increase(COST)})", "short")]  # fmt: skip
    for title, expr, unit in tiles:
        layout.add(stat(title + " (range)", prom(expr, instant=True), PROMETHEUS, unit), 24 // 6, 4)
    for by in ("model", "provider", "operation", "user"):
        layout.add(panel("timeseries", f"Tokens/s by {by}", [
            prom(f"sum by ({by}) ({_rate(INPUT)})", f"{{{{{by}}}}} input", ref="A"),
            prom(f"sum by ({by}) ({_rate(OUTPUT)})", f"{{{{{by}}}}} output", ref="B"),
        ], PROMETHEUS, "short"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Requests/s by model",
                     [prom(f"sum by (model) ({_rate(REQUESTS)})", "{{model}}")],
                     PROMETHEUS, "reqps"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Cached and estimated shares", [
        prom(f"sum({_rate(CACHED)}) / sum({_rate(INPUT)})", "cached input share", ref="A"),
        prom(f'sum({_rate(REQUESTS, ESTIMATED)}) / sum({_rate(REQUESTS)})',
             "estimated request share", ref="B"),
    ], PROMETHEUS, "percentunit"), 12, 8)  # fmt: skip
    for by, title in (("user", "users"), ("api_key", "API keys")):
        expr = (f"topk($topn, sum by ({by}) ({_increase(INPUT)}) "
                f"+ sum by ({by}) ({_increase(OUTPUT)}))")  # fmt: skip
        layout.add(_top(f"Top $topn {title} by tokens (range)", expr, by), 12, 8)
    cost_help = ("Cost of the priced requests in the deployment's currency (label currency); "
                 "requests with no price are counted apart, never as 0.")
    for by in ("model", "user", "api_key"):
        layout.add(panel("timeseries", f"Cost per hour by {by}",
                         [prom(f"sum by (currency, {by}) ({_rate(COST)}) * 3600",
                               f"{{{{{by}}}}} {{{{currency}}}}")],
                         PROMETHEUS, "short", cost_help), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Unpriced request share by model", [
        prom(f"sum by (model) ({_rate(UNPRICED)}) / sum by (model) ({_rate(REQUESTS)})",
             "{{model}}")], PROMETHEUS, "percentunit",
        "Requests whose model has no price (no price file row, not in genai-prices)."),
        12, 8)  # fmt: skip
    for by, title in (("user", "users"), ("api_key", "API keys")):
        expr = f"topk($topn, sum by ({by}) ({_increase(COST)}))"
        layout.add(_top(f"Top $topn {title} by cost (range)", expr, by), 12, 8)
    variables = [datasource_var(PROMETHEUS), *(label_var(n, REQUESTS) for n in
                 ("model", "provider", "operation", "user")),
                 custom_var("topn", ["5", "10", "20", "50"], "10")]  # fmt: skip
    return dashboard("tokenbridge-usage", "tokenbridge / usage", layout, variables, "now-6h",
                     "Committed token usage from tokenbridge's Prometheus endpoint.")


def _top(title: str, expr: str, by: str) -> Panel:
    return panel("bargauge", title, [prom(expr, f"{{{{{by}}}}}", instant=True)], PROMETHEUS,
                 "short", options={"orientation": "horizontal", "displayMode": "basic",
                                   "reduceOptions": {"calcs": ["lastNotNull"]}})  # fmt: skip


def health() -> dict[str, Any]:
    layout = Layout()

    def rate(metric: str) -> str:
        return f"rate({metric}{{{HEALTH_SEL}}}[$__rate_interval])"

    def increase(metric: str) -> str:
        return f"sum(increase({metric}{{{HEALTH_SEL}}}[$__range]))"

    tiles = [("Accepted", "tokenbridge_reports_accepted_total"),
             ("Rejected", "tokenbridge_reports_rejected_total"),
             ("Deduplicated", "tokenbridge_reports_deduplicated_total"),
             ("Retryable answers", "tokenbridge_retryable_answers_total"),
             ("Database errors", "tokenbridge_database_errors_total")]  # fmt: skip
    for title, metric in tiles:
        layout.add(stat(f"{title} (range)", prom(increase(metric), instant=True), PROMETHEUS),
                   24 // 5, 4)
    layout.add(panel("timeseries", "Ingest rate (reports/s)", [
        prom(f"sum({rate('tokenbridge_reports_accepted_total')})", "accepted", ref="A"),
        prom(f"sum({rate('tokenbridge_reports_committed_total')})", "committed", ref="B"),
    ], PROMETHEUS, "short"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Rejects and dedups (reports/s)", [
        prom(f"sum({rate('tokenbridge_reports_rejected_total')})", "rejected", ref="A"),
        prom(f"sum({rate('tokenbridge_reports_deduplicated_total')})", "deduplicated", ref="B"),
    ], PROMETHEUS, "short"), 12, 8)  # fmt: skip
    bucket = rate("tokenbridge_commit_duration_seconds_bucket")
    layout.add(panel("timeseries", "Commit latency", [
        prom(f"histogram_quantile(0.5, sum by (le) ({bucket}))", "p50", ref="A"),
        prom(f"histogram_quantile(0.99, sum by (le) ({bucket}))", "p99", ref="B"),
    ], PROMETHEUS, "s"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Commits/s",
                     [prom(f"sum({rate('tokenbridge_commit_duration_seconds_count')})",
                           "transactions")], PROMETHEUS, "short"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Pending reports", [
        prom(f"sum by (instance) (tokenbridge_commit_pending{{{HEALTH_SEL}}})", "{{instance}}"),
    ], PROMETHEUS, "short"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Retryable answers and database errors (per s)", [
        prom(f"sum by (transport) ({rate('tokenbridge_retryable_answers_total')})",
             "retryable {{transport}}", ref="A"),
        prom(f"sum({rate('tokenbridge_database_errors_total')})", "database errors", ref="B"),
    ], PROMETHEUS, "short"), 12, 8)  # fmt: skip
    layout.add(panel("timeseries", "Ignored items by reason (per s)", [
        prom(f"sum by (reason) ({rate('tokenbridge_reports_ignored_total')})", "{{reason}}"),
    ], PROMETHEUS, "short"), 24, 8)  # fmt: skip
    variables = [datasource_var(PROMETHEUS),
                 label_var("instance", "tokenbridge_reports_accepted_total")]
    return dashboard("tokenbridge-health", "tokenbridge / health", layout, variables, "now-1h",
                     "tokenbridge self-telemetry: intake, commits, backpressure.")


RANGE = "$__timeFilter(date)"
TOKENS = "prompt_token_count + completion_token_count"
USER = "coalesce(nullif(user_name, ''), user_id, '')"
KEY = "coalesce(nullif(api_key_name, ''), access_key, '')"


def _daily(by: str, value: str = f"sum({TOKENS}) AS tokens") -> str:
    return (f'SELECT date::timestamp AS "time", {by} AS metric, {value}\n'
            f"FROM model_usages WHERE {RANGE}\nGROUP BY 1, 2 ORDER BY 1, 2")  # fmt: skip


def billing() -> dict[str, Any]:
    layout = Layout()
    tiles = [("Tokens", f"sum({TOKENS})"), ("Input tokens", "sum(prompt_token_count)"),
             ("Output tokens", "sum(completion_token_count)"),
             ("Cached input tokens", "sum(prompt_cached_token_count)"),
             ("Requests", "sum(request_count)"), ("Cost", "sum(cost)"),
             ("Unpriced requests", "sum(unpriced_request_count)")]  # fmt: skip
    for title, agg in tiles:
        raw = f"SELECT coalesce({agg}, 0) AS value FROM model_usages WHERE {RANGE}"
        layout.add(stat(title, sql(raw), POSTGRES), 3, 4)
    for title, by in (("user", USER), ("model", "model_name"), ("API key", KEY)):
        layout.add(panel("timeseries", f"Daily tokens per {title}",
                         [sql(_daily(by), "time_series")], POSTGRES, "short",
                         options={"legend": {"displayMode": "table", "placement": "right",
                                             "calcs": ["sum"]}}),
                   12 if title != "API key" else 24, 8)  # fmt: skip
    cost_help = ("Sum of the priced requests' cost (model_usages.cost, exact NUMERIC); "
                 "days with only unpriced requests show no cost.")
    for title, by in (("user", USER), ("model", "model_name"), ("API key", KEY)):
        layout.add(panel("timeseries", f"Daily cost per {title}",
                         [sql(_daily(by, "sum(cost) AS cost"), "time_series")], POSTGRES,
                         "short", cost_help,
                         options={"legend": {"displayMode": "table", "placement": "right",
                                             "calcs": ["sum"]}}), 12, 8)  # fmt: skip
    share = ('SELECT date::timestamp AS "time", model_name AS metric,\n'
             "  sum(unpriced_request_count)::float / nullif(sum(request_count), 0) AS share\n"
             f"FROM model_usages WHERE {RANGE}\nGROUP BY 1, 2 ORDER BY 1, 2")  # fmt: skip
    layout.add(panel("timeseries", "Daily unpriced request share per model",
                     [sql(share, "time_series")], POSTGRES, "percentunit",
                     "Requests whose model had no price, over all requests."), 12, 8)
    csv = ("SELECT date, user_id, user_name, model_name, provider_name, access_key, "
           "api_key_name, operation,\n"
           "  sum(prompt_token_count) AS input_tokens,\n"
           "  sum(completion_token_count) AS output_tokens,\n"
           "  sum(prompt_cached_token_count) AS cached_input_tokens,\n"
           "  sum(request_count) AS requests, sum(estimated_request_count) AS estimated_requests,\n"
           "  sum(cost) AS cost, sum(unpriced_request_count) AS unpriced_requests\n"
           f"FROM model_usages WHERE {RANGE}\n"
           "GROUP BY date, user_id, user_name, model_name, provider_name, access_key, "
           "api_key_name, operation\n"
           "ORDER BY date, user_id, model_name, access_key, operation")  # fmt: skip
    layout.add(panel("table", "Usage by day, user, model and key (Inspect > Data > Download CSV)",
                     [sql(csv)], POSTGRES,
                     description="One row per day, user, model, provider, key and operation "
                                 "over the chosen range; ready to download as CSV."),
               24, 10)  # fmt: skip
    recent = ("SELECT created_at AS \"time\", model_name, user_id, access_key, operation,\n"
              "  prompt_token_count AS input_tokens, completion_token_count AS output_tokens,\n"
              "  prompt_cached_token_count AS cached_input_tokens, estimated, completed, source,\n"
              "  request_id, cost, cost_status, price_version\n"
              "FROM model_usage_details WHERE $__timeFilter(created_at)\n"
              # date is the partition key (in the rollup zone, within a day of UTC): the
              # range lets PostgreSQL scan only the partitions of the window.
              "  AND date BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1\n"
              "ORDER BY created_at DESC, id DESC LIMIT 100")  # fmt: skip
    layout.add(panel("table", "Recent requests", [sql(recent)], POSTGRES), 24, 10)
    return dashboard("tokenbridge-billing", "tokenbridge / billing", layout,
                     [datasource_var(POSTGRES)], "now-30d",
                     "Billing from the SQL rollups (model_usages) and audit rows "
                     "(model_usage_details); days are the rollup time zone's.")


DASHBOARDS = {"usage.json": usage, "billing.json": billing, "health.json": health}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    for name, text in render().items():
        (HERE / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
