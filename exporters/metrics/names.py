"""Metric names: the stable, documented contract with dashboards and alerts, in one module.

OpenTelemetry names (dotted) and the names Prometheus shows for them (the exporter replaces
dots with underscores, appends ``_seconds`` for the unit ``s`` and ``_total`` for counters).
Dashboards may only use names listed in ``PROMETHEUS_SERIES``; a test holds them to it.
"""

from __future__ import annotations

from collector.telemetry import (
    COMMIT_DURATION,
    COMMIT_PENDING,
    DATABASE_ERRORS,
    REPORTS_ACCEPTED,
    REPORTS_COMMITTED,
    REPORTS_DEDUPLICATED,
    REPORTS_REJECTED,
    RETRYABLE_ANSWERS,
)

# Usage, fed only by committed reports (agrees with the SQL rollups).
INPUT_TOKENS = "tokenbridge.usage.input_tokens"
OUTPUT_TOKENS = "tokenbridge.usage.output_tokens"
CACHED_INPUT_TOKENS = "tokenbridge.usage.cached_input_tokens"
REQUESTS = "tokenbridge.usage.requests"
COST = "tokenbridge.usage.cost"
UNPRICED_REQUESTS = "tokenbridge.usage.unpriced_requests"

PROMETHEUS_SERIES: dict[str, str] = {
    "tokenbridge_usage_input_tokens_total": INPUT_TOKENS,
    "tokenbridge_usage_output_tokens_total": OUTPUT_TOKENS,
    "tokenbridge_usage_cached_input_tokens_total": CACHED_INPUT_TOKENS,
    "tokenbridge_usage_requests_total": REQUESTS,
    "tokenbridge_usage_cost_total": COST,
    "tokenbridge_usage_unpriced_requests_total": UNPRICED_REQUESTS,
    "tokenbridge_reports_accepted_total": REPORTS_ACCEPTED,
    "tokenbridge_reports_rejected_total": REPORTS_REJECTED,
    "tokenbridge_reports_deduplicated_total": REPORTS_DEDUPLICATED,
    "tokenbridge_reports_committed_total": REPORTS_COMMITTED,
    "tokenbridge_commit_duration_seconds_bucket": COMMIT_DURATION,
    "tokenbridge_commit_duration_seconds_count": COMMIT_DURATION,
    "tokenbridge_commit_duration_seconds_sum": COMMIT_DURATION,
    "tokenbridge_commit_pending": COMMIT_PENDING,
    "tokenbridge_database_errors_total": DATABASE_ERRORS,
    "tokenbridge_retryable_answers_total": RETRYABLE_ANSWERS,
}
"""Every series name Prometheus shows -> the OpenTelemetry instrument it comes from."""
