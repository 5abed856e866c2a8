"""An app instrumented by the official OpenAI instrumentation itself.

Runs in its own virtualenv (``make openai-v2-env``: ``opentelemetry-instrumentation-openai-v2``
and the ``openai`` client pinned as in the ``record-openai-v2`` extra of pyproject.toml).
The instrumentation wraps the real client, which calls the local mock API of the recordings
(``tests/fixtures/recorder/mock_llm.py``, on 127.0.0.1) with usage drawn from ``--seed``; what
it records goes to the SDK providers of ``genai_app.Signals``, exported only when a command
says so. Same commands and answers as ``genai_app``:

``calls N``          N calls: chat completions (streamed with ``--stream``, usage in the
                     last chunk), every fourth an embeddings request
``metrics ADDR``     collect the metrics now and export them to ADDR
``spans ADDR``       export the spans ended since the last ``spans``
``both MADDR SADDR`` both exports at once, from two threads
``quit``             exit

The totals (``input``, ``output``, ``calls``) are the usage the mock answered with, never
what the instrumentation recorded. The semantic conventions follow the environment, as for
any user: ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` switches chat calls to
``opentelemetry-util-genai``'s handler.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import openai
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from tests.fixtures.recorder.mock_llm import MockLLM
from tests.system.producers.genai_app import Signals, parser, serve

CHAT_MODELS = ("gpt-4o-mini", "gpt-4.1")
EMBEDDING_MODEL = "text-embedding-3-small"


class OpenAiV2App(Signals):
    """The instrumented client and the mock it calls (serving inside ``with app.mock``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        OpenAIInstrumentor().instrument(tracer_provider=self.tracers, meter_provider=self.meters)
        self.mock = MockLLM(usage=self.usage)
        self.made = 0
        self.stream = bool(args.stream)
        # No retries: a call is answered once, so the mock's answers are the calls made.
        self.client = openai.OpenAI(base_url=self.mock.openai_url, api_key="sk-test",
                                    max_retries=0, timeout=10)  # fmt: skip

    def usage(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The mock's answer to each request: fresh token counts from ``--seed``."""
        prompt = self.rng.randint(1, 3000)
        if path.endswith("/embeddings"):
            return {"prompt_tokens": prompt, "total_tokens": prompt}
        completion = self.rng.randint(1, 800)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}  # fmt: skip

    def chat(self, model: str, messages: list[dict[str, str]]) -> None:
        if not self.stream:
            self.client.chat.completions.create(model=model, messages=messages)
            return
        chunks = self.client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        for _chunk in chunks:  # read to the end, as an app does: the span ends there
            pass

    def calls(self, n: int) -> dict[str, Any]:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        for _ in range(n):
            self.made += 1
            if self.made % 4 == 0:
                self.client.embeddings.create(model=EMBEDDING_MODEL, input="The capital")
            else:
                self.chat(CHAT_MODELS[self.rng.randrange(len(CHAT_MODELS))], messages)
        served = [usage for _path, usage in self.mock.served]
        self.totals = {"input": sum(u["prompt_tokens"] for u in served),
                       "output": sum(u.get("completion_tokens", 0) for u in served),
                       "calls": len(served)}  # fmt: skip
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    options = parser("openai_v2_app")
    options.add_argument("--stream", action="store_true", help="stream the chat calls")
    app = OpenAiV2App(options.parse_args(argv))
    with app.mock:
        return serve(app)


if __name__ == "__main__":
    sys.exit(main())
