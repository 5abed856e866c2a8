"""Span -> usage report.

Only inference spans count. Agent, tool and workflow spans (``invoke_agent``, ``execute_tool``,
OpenInference ``AGENT``/``TOOL``/``CHAIN`` kinds) repeat their children's usage and are skipped.
A span with no token attribute and no partial-stream evidence is not a usage report. The
span's instrumentation scope selects a producer rule (``producers.py``) when its library
departs from the OTel token rules: the report then carries what the call really used.
"""

from __future__ import annotations

from typing import Any

from collector import conventions as conv
from collector.decode.items import SpanItem
from collector.mapping.fields import FieldMapper
from collector.mapping.producers import ScopeRule, usage_counts
from collector.mapping.values import BadValue, as_text
from collector.model import Ignored, Source, UsageReport, digest

_TOKEN_FIELDS = frozenset(conv.TOKEN_FIELDS)

NOT_USAGE = Ignored.NOT_USAGE_SPAN
REPEATS_CHILDREN = Ignored.REPEATS_CHILDREN
REPEATED_BY_LIBRARY = Ignored.REPEATED_BY_LIBRARY


def span_report(span: SpanItem, mapper: FieldMapper, received_at: int) -> UsageReport | None:
    """The span's report, or None when it is not a usage report. Raises ``BadValue``."""
    outcome = span_outcome(span, mapper, received_at)
    return outcome if isinstance(outcome, UsageReport) else None


def span_outcome(span: SpanItem, mapper: FieldMapper, received_at: int) -> UsageReport | Ignored:
    """The span's report, or why it is ignored: ``NOT_USAGE``, ``REPEATS_CHILDREN``, or
    ``REPEATED_BY_LIBRARY`` when a producer rule says its scope's spans repeat another
    library's (the rule's ``ignore`` text says which). Raises ``BadValue``."""
    attrs = span.attrs
    kind = attrs.get(conv.OPENINFERENCE_SPAN_KIND)
    if isinstance(kind, str) and kind.upper() in mapper.rules.skipped_span_kinds:
        return REPEATS_CHILDREN
    rule = mapper.producers.for_scope(span.scope)
    if rule is not None and rule.ignore is not None:
        return REPEATED_BY_LIBRARY
    raw_operation = mapper.raw("operation", attrs, span.resource)[1]
    if rule is not None and rule.operations and isinstance(raw_operation, str):
        own = rule.operations.get(raw_operation.strip().lower())
        skip, operation = (False, own) if own is not None else mapper.operation(raw_operation)
    else:
        skip, operation = mapper.operation(raw_operation)
    if skip:
        return REPEATS_CHILDREN
    fields = mapper.extract(attrs, span.resource)
    has_tokens = not fields.keys().isdisjoint(_TOKEN_FIELDS)
    if not has_tokens and not any(fields.get(name) for name in conv.EVIDENCE_FIELDS):
        return NOT_USAGE
    model = fields.pop("model", None)
    if not model:
        raise BadValue("model: missing (gen_ai.request.model or an alias)")
    if rule is not None:
        _correct(fields, rule, attrs)
    fields.setdefault("completed", has_tokens)
    if "total_token" not in fields:
        fields["total_token"] = fields.get("input_token", 0) + fields.get("output_token", 0)
    return UsageReport(
        model=model,
        source=Source.SPAN,
        dedup_key=_span_key(span),
        received_at=received_at,
        started_at=span.start_ns // 1_000_000 or None,
        completed_at=span.end_ns // 1_000_000 or None,
        operation=operation,
        **fields,
    )


def _correct(fields: dict[str, Any], rule: ScopeRule, attrs: dict[str, Any]) -> None:
    """Apply a producer rule to the extracted fields (see ``producers.py`` for examples)."""
    if rule.usage_object is not None:
        for name, value in usage_counts(attrs.get(rule.usage_object)).items():
            fields.setdefault(name, value)
    if rule.input_excludes_cache and "input_token" in fields:
        cache = fields.get("input_cached_token", 0) + fields.get("cache_write_input_token", 0)
        fields["input_token"] += cache
        if "total_token" in fields:
            fields["total_token"] += cache


def _span_key(span: SpanItem) -> str:
    if span.trace_id.strip("0") and span.span_id.strip("0"):
        return f"{as_text('traceId', span.trace_id, 64)}/{as_text('spanId', span.span_id, 32)}"
    # No ids: the content is the identity, so a resent copy is still recognised.
    return "span:" + digest(span.resource, span.attrs, span.name, span.start_ns, span.end_ns)
