"""Span -> usage report.

Only inference spans count. Agent, tool and workflow spans (``invoke_agent``, ``execute_tool``,
OpenInference ``AGENT``/``TOOL``/``CHAIN`` kinds) repeat their children's usage and are skipped.
A span with no token attribute and no partial-stream evidence is not a usage report.
"""

from __future__ import annotations

from collector import conventions as conv
from collector.decode.items import SpanItem
from collector.mapping.fields import FieldMapper
from collector.mapping.values import BadValue, as_text
from collector.model import Source, UsageReport, digest

_TOKEN_FIELDS = frozenset(conv.TOKEN_FIELDS)


def repeats_children(span: SpanItem, mapper: FieldMapper) -> bool:
    """An agent, tool or workflow span (by OpenInference kind or operation name)."""
    kind = span.attrs.get(conv.OPENINFERENCE_SPAN_KIND)
    if isinstance(kind, str) and kind.upper() in mapper.rules.skipped_span_kinds:
        return True
    return mapper.operation(mapper.raw("operation", span.attrs, span.resource)[1])[0]


def span_report(span: SpanItem, mapper: FieldMapper, received_at: int) -> UsageReport | None:
    """The span's report, or None when it is not a usage report (``repeats_children`` tells
    which of the two reasons). Raises ``BadValue``."""
    attrs = span.attrs
    kind = attrs.get(conv.OPENINFERENCE_SPAN_KIND)
    if isinstance(kind, str) and kind.upper() in mapper.rules.skipped_span_kinds:
        return None
    skip, operation = mapper.operation(mapper.raw("operation", attrs, span.resource)[1])
    if skip:
        return None
    fields = mapper.extract(attrs, span.resource)
    has_tokens = not fields.keys().isdisjoint(_TOKEN_FIELDS)
    if not has_tokens and not any(fields.get(name) for name in conv.EVIDENCE_FIELDS):
        return None
    model = fields.pop("model", None)
    if not model:
        raise BadValue("model: missing (gen_ai.request.model or an alias)")
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


def _span_key(span: SpanItem) -> str:
    if span.trace_id.strip("0") and span.span_id.strip("0"):
        return f"{as_text('traceId', span.trace_id, 64)}/{as_text('spanId', span.span_id, 32)}"
    # No ids: the content is the identity, so a resent copy is still recognised.
    return "span:" + digest(span.resource, span.attrs, span.name, span.start_ns, span.end_ns)
