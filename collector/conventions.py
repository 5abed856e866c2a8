"""Attribute names tokenbridge understands, and the default alias table.

Every attribute key the mapping reads is named here once. Deprecated and vendor aliases are
resolved in one place, the ordered lists of ``DEFAULT_FIELD_KEYS``: the first key present wins,
span or point attributes before resource attributes.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.model import Operation

# OTel GenAI semantic conventions v1.41
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
# Deprecated semconv names and the genai draft
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
# OpenLLMetry
LLM_USAGE_TOTAL_TOKENS = "llm.usage.total_tokens"
LLM_USER = "llm.user"
LLM_IS_STREAMING = "llm.is_streaming"
LLM_REQUEST_TYPE = "llm.request.type"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_OPENLLMETRY = "gen_ai.usage.cache_read_input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_OPENLLMETRY = "gen_ai.usage.cache_creation_input_tokens"
# OpenInference
LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total"
LLM_TOKEN_COUNT_CACHE_READ = "llm.token_count.prompt_details.cache_read"
LLM_TOKEN_COUNT_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
LLM_TOKEN_COUNT_REASONING = "llm.token_count.completion_details.reasoning"
LLM_MODEL_NAME = "llm.model_name"
LLM_PROVIDER = "llm.provider"
LLM_SYSTEM = "llm.system"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
# General OTel
USER_ID = "user.id"
ENDUSER_ID = "enduser.id"
# tokenbridge's own namespace, for the seed's fields no convention has
TB_MODEL_ID = "tokenbridge.model.id"
TB_PROVIDER_ID = "tokenbridge.provider.id"
TB_PROVIDER_NAME = "tokenbridge.provider.name"
TB_PROVIDER_TYPE = "tokenbridge.provider.type"
TB_USER_ID = "tokenbridge.user.id"
TB_ACCESS_KEY = "tokenbridge.api_key.access_key"
TB_ORGANIZATION_ID = "tokenbridge.organization.id"
TB_MODEL_ROUTE_ID = "tokenbridge.model_route.id"
TB_CLUSTER_ID = "tokenbridge.cluster.id"
TB_USAGE_COMPLETED = "tokenbridge.usage.completed"
TB_USAGE_OUTPUT_CHUNK_COUNT = "tokenbridge.usage.output_chunk_count"
TB_USAGE_REQUEST_CONTENT_BYTES = "tokenbridge.usage.request_content_bytes"
TB_REQUEST_ID = "tokenbridge.request.id"

# Report fields filled from attributes, each with its ordered alias list.
DEFAULT_FIELD_KEYS: Mapping[str, tuple[str, ...]] = {
    "model": (GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, LLM_MODEL_NAME),
    "model_id": (TB_MODEL_ID,),
    "provider_id": (TB_PROVIDER_ID,),
    "provider_name": (
        TB_PROVIDER_NAME,
        GEN_AI_PROVIDER_NAME,
        GEN_AI_SYSTEM,
        LLM_PROVIDER,
        LLM_SYSTEM,
    ),
    "provider_type": (TB_PROVIDER_TYPE,),
    "user_id": (TB_USER_ID, USER_ID, ENDUSER_ID, LLM_USER),
    "access_key": (TB_ACCESS_KEY,),
    "organization_id": (TB_ORGANIZATION_ID,),
    "model_route_id": (TB_MODEL_ROUTE_ID,),
    "cluster_id": (TB_CLUSTER_ID,),
    "operation": (GEN_AI_OPERATION_NAME, LLM_REQUEST_TYPE),
    "input_token": (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS, LLM_TOKEN_COUNT_PROMPT),
    "output_token": (
        GEN_AI_USAGE_OUTPUT_TOKENS,
        GEN_AI_USAGE_COMPLETION_TOKENS,
        LLM_TOKEN_COUNT_COMPLETION,
    ),
    "total_token": (LLM_USAGE_TOTAL_TOKENS, LLM_TOKEN_COUNT_TOTAL),
    "input_cached_token": (
        GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_OPENLLMETRY,
        LLM_TOKEN_COUNT_CACHE_READ,
    ),
    "cache_write_input_token": (
        GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
        GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_OPENLLMETRY,
        LLM_TOKEN_COUNT_CACHE_WRITE,
    ),
    "reasoning_output_token": (GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, LLM_TOKEN_COUNT_REASONING),
    "completed": (TB_USAGE_COMPLETED,),
    "output_chunk_count": (TB_USAGE_OUTPUT_CHUNK_COUNT,),
    "request_content_bytes": (TB_USAGE_REQUEST_CONTENT_BYTES,),
    "stream": (GEN_AI_REQUEST_STREAM, LLM_IS_STREAMING),
    "request_id": (TB_REQUEST_ID,),
}

TOKEN_FIELDS = (
    "input_token",
    "output_token",
    "total_token",
    "input_cached_token",
    "cache_write_input_token",
    "reasoning_output_token",
)
"""Fields whose presence on a span makes it a usage report."""

EVIDENCE_FIELDS = ("output_chunk_count", "request_content_bytes")
"""Partial-stream evidence: a span with these but no tokens is still a (to be estimated) report."""

# gen_ai.operation.name (and OpenLLMetry's llm.request.type) -> the seed's enum.
DEFAULT_OPERATION_NAMES: Mapping[str, Operation] = {
    "chat": Operation.CHAT_COMPLETION,
    "chat_completion": Operation.CHAT_COMPLETION,
    "generate_content": Operation.CHAT_COMPLETION,
    "text_completion": Operation.COMPLETION,
    "completion": Operation.COMPLETION,
    "embeddings": Operation.EMBEDDING,
    "embedding": Operation.EMBEDDING,
    "rerank": Operation.RERANK,
    "image_generation": Operation.IMAGE_GENERATION,
    "generate_image": Operation.IMAGE_GENERATION,
    "audio_speech": Operation.AUDIO_SPEECH,
    "text_to_speech": Operation.AUDIO_SPEECH,
    "audio_transcription": Operation.AUDIO_TRANSCRIPTION,
    "audit_transcription": Operation.AUDIO_TRANSCRIPTION,
    "speech_to_text": Operation.AUDIO_TRANSCRIPTION,
}

# Spans that repeat their children's usage: counting them would count it twice.
DEFAULT_SKIPPED_OPERATIONS = frozenset(
    {
        "invoke_agent",
        "create_agent",
        "execute_tool",
        "invoke_workflow",
        "workflow",
        "task",
        "agent",
        "tool",
        "chain",
    }
)
DEFAULT_SKIPPED_SPAN_KINDS = frozenset({"AGENT", "TOOL", "CHAIN"})
"""OpenInference span kinds that aggregate children (``openinference.span.kind``)."""

# Metrics
GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
INFERENCE_USAGE_PREFIX = "gen_ai.client.inference.usage."
DEFAULT_COUNTER_FIELDS: Mapping[str, str] = {
    INFERENCE_USAGE_PREFIX + "input_tokens": "input_token",
    INFERENCE_USAGE_PREFIX + "output_tokens": "output_token",
    INFERENCE_USAGE_PREFIX + "cache_read.input_tokens": "input_cached_token",
    INFERENCE_USAGE_PREFIX + "cache_write.input_tokens": "cache_write_input_token",
    INFERENCE_USAGE_PREFIX + "reasoning.output_tokens": "reasoning_output_token",
}
TOKEN_TYPE_FIELDS: Mapping[str, str] = {"input": "input_token", "output": "output_token"}
"""``gen_ai.token.type`` of a ``gen_ai.client.token.usage`` series -> report field."""
REQUEST_COUNTING_TOKEN_TYPE = "input"
"""The histogram series whose ``count`` is the number of requests (every call has input)."""

# Resource: who produced an item (the source rule of ``collector.aggregation.sources``)
SERVICE_NAMESPACE = "service.namespace"
SERVICE_NAME = "service.name"
SERVICE_INSTANCE_ID = "service.instance.id"
PRODUCER_IDENTITY = (SERVICE_NAMESPACE, SERVICE_NAME, SERVICE_INSTANCE_ID)
