"""GPUStack gateway push (``POST /v2/usage/gateway-metrics``) -> usage report.

The body is GPUStack's ``ModelUsageMetrics``: one object or a list. Unknown fields are ignored.
Every push is one request, as in GPUStack, zero tokens included (a stream cut before its first
chunk, a call that ended with no usage chunk; estimated by the seed's rules when ``completed``
is false).

The idempotency key is a digest of the canonical object (keys sorted), ``request_id``
included. Not ``request_id`` alone: a gateway's fallback retry sends a zero-token report and
then the real one with the same ``request_id``, and GPUStack counts both requests and the real
one's tokens; their bodies differ, so they get two keys. An identical resend of either (a
retry after a lost answer, a replayed log) has the same body and counts once.
"""

from __future__ import annotations

from typing import Any

from collector import conventions as conv
from collector.mapping.fields import FieldMapper
from collector.mapping.values import BadValue, as_count, as_flag, as_id, as_millis, as_text
from collector.model import Operation, Source, UsageReport, digest

_COUNTS = conv.TOKEN_FIELDS + conv.EVIDENCE_FIELDS
_IDS = ("model_id", "provider_id", "model_route_id", "cluster_id")
_TEXTS = ("provider_name", "provider_type", "user_id", "access_key", "organization_id")


def gateway_report(item: dict[str, Any], mapper: FieldMapper, received_at: int) -> UsageReport:
    """The push's report. Raises ``BadValue``."""
    model = item.get("model")
    if model is None or model == "":
        raise BadValue("model: missing")
    if not isinstance(model, str):
        raise BadValue(f"model: expected a string, got {type(model).__name__}")
    fields: dict[str, Any] = {"model": as_text("model", model)}
    for name in _COUNTS:
        if item.get(name) is not None:
            fields[name] = as_count(name, item[name])
    for name in _IDS:
        if item.get(name) is not None:
            fields[name] = as_id(name, item[name])
    for name in _TEXTS:
        if item.get(name) is not None:
            fields[name] = as_text(name, item[name])
    request_count = as_count("request_count", item.get("request_count", 1))
    request_id = item.get("request_id")
    request_id = None if request_id in (None, "") else as_text("request_id", request_id)
    return UsageReport(
        source=Source.GATEWAY,
        dedup_key="gw:" + digest(item),
        received_at=received_at,
        request_count=request_count,
        completed=as_flag("completed", item.get("completed", False)),
        started_at=as_millis("started_at", item.get("started_at")),
        completed_at=as_millis("completed_at", item.get("completed_at")),
        operation=_operation(item.get("operation"), mapper),
        request_id=request_id,
        **fields,
    )


def _operation(raw: Any, mapper: FieldMapper) -> Operation | None:
    if raw is None or raw == "":
        return None
    _skip, operation = mapper.operation(raw)
    if operation is None:
        raise BadValue(f"operation: unknown value {raw!r:.40}")
    return operation
