"""Attributes -> report: conventions, aliases, skipping and per-item rejection."""

from __future__ import annotations

from typing import Any

import pytest

from collector.decode import json as otlp_json
from collector.decode.items import SpanItem
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.gateway import gateway_report
from collector.mapping.spans import span_report
from collector.mapping.values import BadValue
from collector.model import Operation

MAPPER = FieldMapper(MappingRules())
NOW = 1_700_000_000_000


def span(attrs: dict[str, Any], resource: dict[str, Any] | None = None) -> SpanItem:
    return SpanItem(resource or {}, attrs, "0af7651916cd43dd8448eb211c80319c",
                    "b7ad6b7169203331", 1_700_000_000_000_000_000, 1_700_000_001_500_000_000,
                    "chat")  # fmt: skip


def test_semconv_span_maps_every_usage_field() -> None:
    out = span_report(span({
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.usage.cache_creation.input_tokens": 20,
        "gen_ai.usage.reasoning.output_tokens": 12, "gen_ai.request.stream": True,
        "user.id": "alice", "tokenbridge.api_key.access_key": "ak-1",
        "tokenbridge.model.id": 7, "tokenbridge.provider.id": "3",
    }), MAPPER, NOW)  # fmt: skip
    assert out is not None
    assert (out.model, out.provider_name, out.operation, out.user_id, out.access_key) == (
        "gpt-4o", "openai", Operation.CHAT_COMPLETION, "alice", "ak-1",
    )  # fmt: skip
    assert (out.input_token, out.output_token, out.total_token, out.input_cached_token) == (
        120, 30, 150, 100,
    )  # fmt: skip
    assert (out.cache_write_input_token, out.reasoning_output_token) == (20, 12)
    assert (out.model_id, out.provider_id, out.stream, out.completed) == (7, 3, True, True)
    assert out.dedup_key == "0af7651916cd43dd8448eb211c80319c/b7ad6b7169203331"
    assert (out.started_at, out.completed_at) == (1_700_000_000_000, 1_700_000_001_500)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"gen_ai.system": "openai", "gen_ai.request.model": "m",
          "gen_ai.usage.prompt_tokens": 9, "gen_ai.usage.completion_tokens": 4},
         ("m", "openai", 9, 4, 13)),
        ({"llm.model_name": "m", "llm.token_count.prompt": 5, "llm.token_count.completion": 6,
          "llm.token_count.total": 11}, ("m", None, 5, 6, 11)),
        ({"gen_ai.request.model": "m", "llm.usage.total_tokens": 30,
          "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 15},
         ("m", None, 10, 15, 30)),
    ],
    ids=["legacy-semconv", "openinference", "openllmetry-total"],
)
def test_legacy_and_vendor_conventions(attrs: dict[str, Any], expected: tuple[Any, ...]) -> None:
    out = span_report(span(attrs), MAPPER, NOW)
    assert out is not None
    assert (out.model, out.provider_name, out.input_token, out.output_token,
            out.total_token) == expected  # fmt: skip


def test_span_attributes_win_over_resource_attributes() -> None:
    out = span_report(
        span({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1, "user.id": "span"},
             {"user.id": "resource", "tokenbridge.organization.id": "org-1"}),
        MAPPER, NOW,
    )  # fmt: skip
    assert out is not None and (out.user_id, out.organization_id) == ("span", "org-1")


@pytest.mark.parametrize(
    "attrs",
    [
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 5,
         "gen_ai.request.model": "m"},
        {"gen_ai.operation.name": "execute_tool", "gen_ai.usage.input_tokens": 5,
         "gen_ai.request.model": "m"},
        {"openinference.span.kind": "AGENT", "llm.token_count.prompt": 5, "llm.model_name": "m"},
        {"gen_ai.request.model": "m", "http.method": "POST"},
    ],
    ids=["invoke_agent", "execute_tool", "openinference-agent", "no-usage"],
)
def test_spans_that_are_not_usage_reports(attrs: dict[str, Any]) -> None:
    assert span_report(span(attrs), MAPPER, NOW) is None


def test_partial_stream_evidence_alone_makes_an_incomplete_report() -> None:
    out = span_report(span({"gen_ai.request.model": "m",
                            "tokenbridge.usage.request_content_bytes": 400,
                            "tokenbridge.usage.output_chunk_count": 10}), MAPPER, NOW)  # fmt: skip
    assert out is not None and (out.completed, out.request_content_bytes) == (False, 400)


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": -3}, "negative count -3"),
        ({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": "many"}, "expected a count"),
        ({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 2.5}, "whole count"),
        ({"gen_ai.request.model": "m" * 256, "gen_ai.usage.input_tokens": 1}, "longer than 255"),
        ({"gen_ai.usage.input_tokens": 1}, "model: missing"),
        ({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1,
          "tokenbridge.model.id": "seven"}, "integer id"),
    ],
)
def test_bad_values_reject_the_item_with_a_reason(attrs: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadValue, match=reason):
        span_report(span(attrs), MAPPER, NOW)


def test_configured_alias_table_replaces_a_field_list() -> None:
    rules = MappingRules(field_keys={**MappingRules().field_keys, "user_id": ("app.customer",)})
    out = span_report(span({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1,
                            "user.id": "ignored", "app.customer": "c-9"}),
                      FieldMapper(rules), NOW)  # fmt: skip
    assert out is not None and out.user_id == "c-9"


def test_otlp_json_walk_reads_hex_ids_string_ints_and_skips_bad_attributes() -> None:
    doc = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "gw"}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
            "name": "chat", "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": 1700000002000000000, "kind": 3, "unknownField": {"a": 1},
            "attributes": [
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"doubleValue": 8.0}},
                {"not": "an attribute"}, 17,
            ]}]}]}]}  # fmt: skip
    (item,) = list(otlp_json.spans(doc, MAPPER.wanted))
    assert item.trace_id == "5b8efff798038103d269b633813fc60c"
    assert item.span_id == "eee19b7ec3c1b174"
    assert (item.start_ns, item.end_ns) == (1_700_000_000_000_000_000, 1_700_000_002_000_000_000)
    out = span_report(item, MAPPER, NOW)
    assert out is not None and (out.input_token, out.output_token) == (42, 8)


def test_otlp_json_structural_errors_are_malformed() -> None:
    with pytest.raises(otlp_json.Malformed):
        list(otlp_json.spans({"resourceSpans": {"not": "a list"}}, MAPPER.wanted))
    with pytest.raises(otlp_json.Malformed):
        list(otlp_json.spans({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"startTimeUnixNano": "soon"}]}]}]}, MAPPER.wanted))  # fmt: skip


def test_gateway_report_follows_gpustack_fields() -> None:
    out = gateway_report({"model": "qwen", "input_token": 10, "output_token": 2,
                          "total_token": 12, "input_cached_token": 4, "user_id": 5,
                          "model_id": 3, "provider_id": 2, "access_key": "ak",
                          "organization_id": 8, "model_route_id": 9, "completed": True,
                          "started_at": 0, "completed_at": 1_700_000_000_000,
                          "request_id": "r-1", "ttft_ms": 12, "unknown": "ignored"},
                         MAPPER, NOW)  # fmt: skip
    assert (out.user_id, out.model_id, out.provider_id, out.organization_id) == ("5", 3, 2, "8")
    assert (out.started_at, out.completed_at, out.request_id) == (None, 1_700_000_000_000, "r-1")
    assert (out.input_cached_token, out.request_count, out.operation) == (4, 1, None)


def test_gateway_zero_report_is_a_request_and_typo_operation_reads() -> None:
    zero = gateway_report({"model": "q", "input_token": 0, "output_token": 0,
                           "request_id": "r"}, MAPPER, NOW)  # fmt: skip
    assert (zero.request_count, zero.input_token, zero.output_token) == (1, 0, 0)
    out = gateway_report({"model": "q", "input_token": 1, "operation": "audit_transcription"},
                         MAPPER, NOW)  # fmt: skip
    assert out.operation == Operation.AUDIO_TRANSCRIPTION
    first = gateway_report({"model": "q", "input_token": 1}, MAPPER, NOW)
    again = gateway_report({"input_token": 1, "model": "q"}, MAPPER, NOW + 5)
    assert first.dedup_key == again.dedup_key


def test_gateway_fallback_pair_gets_two_keys_and_a_resend_one() -> None:
    """The zero report and the real one share a request_id; an identical resend of either
    (keys in another order) has the key of its original."""
    zero = {"model": "q", "input_token": 0, "output_token": 0, "request_id": "r-9"}
    real = {"model": "q", "input_token": 7, "output_token": 3, "request_id": "r-9"}
    keys = [gateway_report(body, MAPPER, NOW).dedup_key for body in (zero, real)]
    resent = [gateway_report(dict(reversed(b.items())), MAPPER, NOW + 1).dedup_key
              for b in (zero, real)]  # fmt: skip
    assert keys[0] != keys[1] and resent == keys


def test_gateway_model_must_be_a_string() -> None:
    with pytest.raises(BadValue, match="model: expected a string, got int"):
        gateway_report({"model": 5}, MAPPER, NOW)
