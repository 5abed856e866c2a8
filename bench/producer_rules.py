"""Cost of the producer rules on the span mapping hot path: ``python -m bench.producer_rules``.

CPU time per span to decode and map the same pre-built 1,000-span requests (the load
generator's, scope ``tokenbridge.loadgen``: no rule applies) with the default producer rules
and with none, alternating in the same run; then requests whose spans are all OpenLIT's
Anthropic spans or LiteLLM's, so that every span takes its rule (the LiteLLM one scans
``metadata.usage_object``, which is decoded only when a rule reads it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.decode import protobuf as pb
from collector.mapping.fields import FieldMapper, MappingRules
from collector.mapping.spans import span_report
from collector.tools.synthetic import templates

USAGE = ("{'completion_tokens': 50, 'prompt_tokens': 1200, 'total_tokens': 1250, "
         "'completion_tokens_details': {'reasoning_tokens': 20}, "
         "'prompt_tokens_details': {'audio_tokens': 0, 'cached_tokens': 1024}}")


def _bodies(scope: str | None, usage_object: bool) -> list[bytes]:
    out = []
    for n, template in enumerate(templates("grpc", 4, spans=1000)):
        request = ExportTraceServiceRequest()
        request.ParseFromString(template.render(n))
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                if scope is not None:
                    scope_spans.scope.name = scope
                for span in scope_spans.spans if usage_object else ():
                    kv = span.attributes.add()
                    kv.key, kv.value.string_value = "metadata.usage_object", USAGE
        out.append(request.SerializeToString())
    return out


def _cpu_per_span(bodies: list[bytes], mapper: FieldMapper) -> float:
    """CPU seconds per span to decode and map ``bodies`` once (process time: on a shared
    machine, waiting for a core is not counted)."""
    spans, started = 0, time.process_time()
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for span in pb.spans(request, mapper.wanted):
            span_report(span, mapper, 0)
            spans += 1
    return (time.process_time() - started) / spans


def _side_by_side(bodies: list[bytes], rounds: int = 9) -> tuple[float, float]:
    """Best of alternating rounds with the default rules and with none."""
    with_rules, without = FieldMapper(MappingRules()), FieldMapper(MappingRules(producer_rules=()))
    on = off = float("inf")
    for _round in range(rounds):
        off = min(off, _cpu_per_span(bodies, without))
        on = min(on, _cpu_per_span(bodies, with_rules))
    return on, off


def main(say: Callable[[str], None] = print) -> None:
    for label, scope, usage in (
        ("no rule applies (scope tokenbridge.loadgen)", None, False),
        ("every span openlit.instrumentation.anthropic", "openlit.instrumentation.anthropic",
         False),
        ("every span litellm, with metadata.usage_object", "litellm", True),
    ):  # fmt: skip
        on, off = _side_by_side(_bodies(scope, usage))
        say(f"decode + map, {label}: {on * 1e6:.2f} us/span with the producer rules, "
            f"{off * 1e6:.2f} without ({(on - off) * 1e6:+.2f} us)")  # fmt: skip


if __name__ == "__main__":
    main()
