"""Producer rules and the conventions of OpenInference and LiteLLM, unit by unit."""

from __future__ import annotations

from typing import Any

import pytest

from collector.config import ConfigError, load
from collector.decode import json as otlp_json
from collector.decode.items import SpanItem
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.producers import (
    DEFAULT_PRODUCER_RULES,
    ProducerRule,
    ProducerRules,
    merged,
    usage_counts,
)
from collector.mapping.spans import (
    NOT_USAGE,
    REPEATED_BY_LIBRARY,
    REPEATS_CHILDREN,
    span_outcome,
)
from collector.model import Operation, UsageReport
from collector.runtime.service import mapping_rules

MAPPER = FieldMapper(MappingRules())
NOW = 1_700_000_000_000


def span(attrs: dict[str, Any], scope: tuple[str, str] = ("", "")) -> SpanItem:
    return SpanItem({}, attrs, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331",
                    1_700_000_000_000_000_000, 1_700_000_001_500_000_000, "s", scope)  # fmt: skip


def report(attrs: dict[str, Any], scope: tuple[str, str] = ("", ""),
           mapper: FieldMapper = MAPPER) -> UsageReport:  # fmt: skip
    out = span_outcome(span(attrs, scope), mapper, NOW)
    assert isinstance(out, UsageReport), out
    return out


def test_version_ranges_match_as_pep_440_says() -> None:
    rule = ProducerRule(scope="lib", versions=">=1.2,<2")
    assert [rule.matches("lib", v) for v in ("1.2", "1.9.3", "1.10b1", "2.0", "1.1", "")] == [
        True, True, True, False, False, False]  # fmt: skip
    assert not rule.matches("other", "1.5")
    any_version = ProducerRule(scope="lib")
    assert any_version.matches("lib", "") and any_version.matches("lib", "not a version")
    with pytest.raises(ValueError, match="bad version range"):
        ProducerRule(scope="lib", versions="newest")


def test_lookup_is_remembered_per_scope_and_version() -> None:
    rules = ProducerRules([
        ProducerRule(scope="lib", versions="<2", input_excludes_cache=True),
        ProducerRule(scope="lib", versions=">=2", ignore="repeats"),
    ])  # fmt: skip
    old = rules.for_scope(("lib", "1.0"))
    assert old is not None and old.input_excludes_cache and old.ignore is None
    assert rules.for_scope(("lib", "1.0")) is old
    new = rules.for_scope(("lib", "2.1"))
    assert new is not None and new.ignore == "repeats" and not new.input_excludes_cache
    assert rules.for_scope(("unlisted", "1.0")) is None
    assert rules.for_scope(("lib", "")) is None  # ranged rules need a version


def test_configured_rules_come_first_and_replace_a_default_of_the_same_range() -> None:
    mine = ProducerRule(scope="litellm")
    extra = ProducerRule(scope="my.lib", versions=">1", input_excludes_cache=True)
    rules = merged(DEFAULT_PRODUCER_RULES, [mine, extra])
    assert rules[:2] == [mine, extra]
    assert [r.scope for r in rules[2:]] == [
        r.scope for r in DEFAULT_PRODUCER_RULES if r.scope != "litellm"]  # fmt: skip


def test_openlit_anthropic_input_gets_its_cache_reads_and_writes_back() -> None:
    out = report({"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude",
                  "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 80,
                  "gen_ai.usage.cache_read.input_tokens": 4000,
                  "gen_ai.usage.cache_creation.input_tokens": 300},
                 ("openlit.instrumentation.anthropic", ""))  # fmt: skip
    assert (out.input_token, out.input_cached_token, out.cache_write_input_token) == (
        4312, 4000, 300)  # fmt: skip
    assert (out.output_token, out.total_token) == (80, 4392)
    # The same attributes from a library that follows the OTel rule are stored as sent.
    same = report({"gen_ai.request.model": "claude", "gen_ai.usage.input_tokens": 4312,
                   "gen_ai.usage.cache_read.input_tokens": 4000},
                  ("openinference.instrumentation.anthropic", "3.1.0"))  # fmt: skip
    assert (same.input_token, same.input_cached_token) == (4312, 4000)


def test_a_reported_total_is_corrected_with_the_input() -> None:
    mapper = FieldMapper(MappingRules(producer_rules=(
        ProducerRule(scope="lib", versions="~=1.0", input_excludes_cache=True),)))
    attrs = {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 10,
             "gen_ai.usage.output_tokens": 5, "llm.usage.total_tokens": 15,
             "gen_ai.usage.cache_read.input_tokens": 100}  # fmt: skip
    assert report(attrs, ("lib", "1.4"), mapper)[4:7] == (110, 5, 115)
    assert report(attrs, ("lib", "2.0"), mapper)[4:7] == (10, 5, 15)  # outside the range


@pytest.mark.parametrize(("kind", "model_key", "operation"), [
    ("LLM", "llm.model_name", Operation.CHAT_COMPLETION),
    ("EMBEDDING", "embedding.model_name", Operation.EMBEDDING),
    ("RERANKER", "llm.model_name", Operation.RERANK),
])  # fmt: skip
def test_openinference_span_kinds_name_the_operation(
    kind: str, model_key: str, operation: Operation
) -> None:
    out = report({"openinference.span.kind": kind, model_key: "m-1",
                  "llm.token_count.prompt": 9, "llm.token_count.total": 9})  # fmt: skip
    assert (out.model, out.operation, out.input_token, out.total_token) == (
        "m-1", operation, 9, 9)  # fmt: skip


def test_openinference_request_model_wins_and_cache_details_are_read() -> None:
    out = report({"openinference.span.kind": "LLM", "llm.model_name": "claude-2025",
                  "llm.request.model_name": "claude", "llm.token_count.prompt": 4312,
                  "llm.token_count.prompt_details.cache_read": 4000,
                  "llm.token_count.prompt_details.cache_write": 300,
                  "llm.token_count.completion_details.reasoning": 7})  # fmt: skip
    assert (out.model, out.input_cached_token, out.cache_write_input_token) == (
        "claude", 4000, 300)  # fmt: skip
    assert out.reasoning_output_token == 7


@pytest.mark.parametrize("kind", ["CHAIN", "AGENT", "TOOL", "chain"])
def test_openinference_aggregating_kinds_repeat_their_children(kind: str) -> None:
    outcome = span_outcome(span({"openinference.span.kind": kind, "llm.model_name": "m",
                                 "llm.token_count.prompt": 3}), MAPPER, NOW)  # fmt: skip
    assert outcome == REPEATS_CHILDREN


LITELLM = ("litellm", "")


@pytest.mark.parametrize(("call_type", "operation"), [
    ("completion", Operation.CHAT_COMPLETION), ("acompletion", Operation.CHAT_COMPLETION),
    ("embedding", Operation.EMBEDDING), ("aembedding", Operation.EMBEDDING),
    ("text_completion", Operation.COMPLETION), ("atext_completion", Operation.COMPLETION),
    ("rerank", Operation.RERANK), ("arerank", Operation.RERANK),
    ("image_generation", Operation.IMAGE_GENERATION),
    ("aimage_generation", Operation.IMAGE_GENERATION),
    ("transcription", Operation.AUDIO_TRANSCRIPTION),
    ("atranscription", Operation.AUDIO_TRANSCRIPTION),
    ("speech", Operation.AUDIO_SPEECH), ("aspeech", Operation.AUDIO_SPEECH),
])  # fmt: skip
def test_litellm_call_types_are_operations(call_type: str, operation: Operation) -> None:
    for key in ("gen_ai.operation.name", "llm.request.type"):
        out = report({key: call_type, "gen_ai.request.model": "m",
                      "gen_ai.usage.input_tokens": 1}, LITELLM)  # fmt: skip
        assert out.operation == operation, key


def test_completion_means_chat_only_for_litellm() -> None:
    attrs = {"llm.request.type": "completion", "gen_ai.request.model": "m",
             "gen_ai.usage.input_tokens": 1}  # fmt: skip
    assert report(attrs, LITELLM).operation == Operation.CHAT_COMPLETION
    assert report(attrs, ("opentelemetry.instrumentation.openai.v1", "0.62.4")).operation == (
        Operation.COMPLETION)  # fmt: skip


def test_litellm_usage_object_fills_the_counts_its_attributes_leave_out() -> None:
    usage = ("{'completion_tokens': 50, 'prompt_tokens': 1200, 'completion_tokens_details': "
             "{'reasoning_tokens': 20}, 'prompt_tokens_details': {'cached_tokens': 1024}}")
    out = report({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                  "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 50,
                  "metadata.usage_object": usage}, LITELLM)  # fmt: skip
    assert (out.input_token, out.input_cached_token, out.reasoning_output_token) == (
        1200, 1024, 20)  # fmt: skip
    # Attributes win over the usage object; other scopes never read it.
    out = report({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 10,
                  "gen_ai.usage.cache_read.input_tokens": 3, "metadata.usage_object": usage},
                 LITELLM)  # fmt: skip
    assert out.input_cached_token == 3
    assert report({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1200,
                   "metadata.usage_object": usage}).input_cached_token == 0


@pytest.mark.parametrize(("text", "expected"), [
    ('{"prompt_tokens_details": {"cached_tokens": 5}}', {"input_cached_token": 5}),
    ("{'cache_read_input_tokens': 4000, 'cache_creation_input_tokens': 300}",
     {"input_cached_token": 4000, "cache_write_input_token": 300}),
    ("{'prompt_tokens_details': None}", {}),
    ("{'prompt_tokens_details': {'cached_tokens': -1}}", {}),
    ("{'prompt_tokens_details': {'cached_tokens': True}}", {}),
    ("Usage(prompt_tokens=3)", {}), ("{not python", {}), ("[1, 2]", {}), (7, {}),
    ("{'a': " * 200 + "1" + "}" * 200, {}),
])  # fmt: skip
def test_usage_literals_are_read_safely(text: object, expected: dict[str, int]) -> None:
    assert usage_counts(text) == expected


def test_the_anthropic_sdks_own_spans_are_ignored_with_the_reason() -> None:
    outcome = span_outcome(span({"gen_ai.request.model": "claude",
                                 "gen_ai.usage.input_tokens": 4312},
                                ("com.anthropic.sdk.python", "2.14.0")), MAPPER, NOW)  # fmt: skip
    assert outcome == REPEATED_BY_LIBRARY == "repeated by another library's span"
    [rule] = [r for r in DEFAULT_PRODUCER_RULES if r.scope == "com.anthropic.sdk.python"]
    assert rule.ignore is not None and "Anthropic SDK" in rule.ignore
    assert span_outcome(span({"http.route": "/v1"}), MAPPER, NOW) == NOT_USAGE


def test_decoders_carry_the_scope_of_each_span() -> None:
    doc = {"resourceSpans": [{"scopeSpans": [
        {"scope": {"name": "openlit.instrumentation.anthropic"}, "spans": [{"name": "a"}]},
        {"scope": {"name": "litellm", "version": "1.110.2"}, "spans": [{"name": "b"}]},
        {"spans": [{"name": "c"}]},
    ]}]}  # fmt: skip
    scopes = [item.scope for item in otlp_json.spans(doc, MAPPER.wanted)]
    assert scopes == [("openlit.instrumentation.anthropic", ""), ("litellm", "1.110.2"),
                      ("", "")]  # fmt: skip
    assert "metadata.usage_object" in MAPPER.wanted


def test_config_rules_are_checked_and_become_mapping_rules() -> None:
    config = load(overrides={"mapping": {"producer_rules": [
        {"scope": "my.lib", "versions": ">=2", "input_excludes_cache": True,
         "operations": {"Generate": "chat_completion"}},
    ]}}, environ={})  # fmt: skip
    rules = mapping_rules(config).producer_rules
    assert rules[0] == ProducerRule(scope="my.lib", versions=">=2", input_excludes_cache=True,
                                    operations={"generate": Operation.CHAT_COMPLETION})
    assert rules[1:] == DEFAULT_PRODUCER_RULES
    with pytest.raises(ConfigError, match=r"mapping\.producer_rules\.0\.versions"):
        load(overrides={"mapping": {"producer_rules": [{"scope": "x", "versions": "new"}]}},
             environ={})  # fmt: skip
    with pytest.raises(ConfigError, match="unknown operation 'chatting'"):
        load(overrides={"mapping": {"producer_rules": [
            {"scope": "x", "operations": {"a": "chatting"}}]}}, environ={})  # fmt: skip
    with pytest.raises(ConfigError, match="scope"):
        load(overrides={"mapping": {"producer_rules": [{"versions": ">1"}]}}, environ={})


def test_the_readme_mapping_reads_litellm_proxy_keys() -> None:
    config = load(overrides={"mapping": {"fields": {
        "access_key": ["tokenbridge.api_key.access_key", "metadata.user_api_key_hash"]}}},
        environ={})  # fmt: skip
    mapper = FieldMapper(mapping_rules(config))
    assert "metadata.user_api_key_hash" in mapper.wanted
    key_hash = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    out = report({"gen_ai.operation.name": "acompletion", "gen_ai.request.model": "gpt-4o-mini",
                  "gen_ai.usage.input_tokens": 1200, "llm.user": "alice",
                  "metadata.user_api_key_hash": key_hash}, LITELLM, mapper)  # fmt: skip
    assert (out.user_id, out.operation, out.access_key) == (
        "alice", Operation.CHAT_COMPLETION, key_hash)  # fmt: skip
