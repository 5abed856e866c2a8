"""GPUStack 2.3 itself, for the ``gpustack`` tests: its code run from its own environment.

``GpuStack.run`` (``bench.gpustack_env``) calls GPUStack's code with the python of the GPUStack
test environment (``TOKENBRIDGE_TEST_GPUSTACK_PYTHON``, made by ``make gpustack-env``).
The catalog and the reports are shared by the tests: pushes shaped like GPUStack's gateway
plugin sends them (always the counts, stamps and flags; ids when known), with a fallback pair,
a resend, a LoRA route name and an unknown user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.gpustack_env import CREATE, ENV, GpuStack

__all__ = ["GpuStack", "gpustack_python"]


def gpustack_python() -> str:
    """The GPUStack environment's python; fails on CI, skips elsewhere, when missing."""
    path = os.environ.get(ENV, "")
    if path and Path(path).is_file():
        return path
    message = (f"GPUStack 2.3 test environment not found ({ENV}={path or 'unset'}): "
               f"run `{CREATE}` (about 900 MB) and `make test`")  # fmt: skip
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


SPEC: dict[str, Any] = {
    "principals": [
        {"ref": "admin", "name": "admin", "is_admin": True},
        {"ref": "alice", "name": "alice"},
        {"ref": "bob", "name": "bob"},
        {"ref": "acme", "name": "acme", "kind": "org"},
    ],
    "clusters": [{"ref": "gpu", "name": "gpu-a"}],
    "models": [
        {"ref": "qwen3", "name": "qwen3", "cluster": "gpu"},
        {"ref": "bge", "name": "bge-m3", "cluster": "gpu", "categories": ["embedding"],
         "repo": "BAAI/bge-m3"},
    ],
    "routes": [
        {"ref": "r_qwen", "name": "qwen3", "model": "qwen3"},
        {"ref": "r_lora", "name": "qwen3:sql-lora", "model": "qwen3"},
        {"ref": "r_bge", "name": "bge-m3", "model": "bge"},
        {"ref": "r_ds", "name": "ds-chat"},
    ],
    "providers": [{"ref": "ds", "name": "deepseek", "type": "deepseek", "models": ["ds-chat"]}],
    "api_keys": [
        {"ref": "k_alice", "name": "ci key", "access_key": "ak-alice", "user": "alice",
         "owner": "acme"},
        {"ref": "k_bob", "name": "bob key", "access_key": "ak-bob", "user": "bob"},
    ],
}  # fmt: skip


def push(model: str, at: int, tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
         **known: Any) -> dict[str, Any]:  # fmt: skip
    """A gateway push as the plugin sends it: ``tokens`` = input, output, total, cached."""
    inp, out, total, cached = tokens
    body: dict[str, Any] = {
        "model": model, "input_token": inp, "output_token": out, "total_token": total,
        "input_cached_token": cached, "request_count": 1, "completed": True,
        "output_chunk_count": 0, "request_content_bytes": 0, "started_at": at - 800,
        "completed_at": at,
    }  # fmt: skip
    body.update(known)
    return body


def gateway_reports(ids: dict[str, int], at: int) -> tuple[list[dict[str, Any]], int]:
    """The pushes (in sending order) and the index of the resend among them."""
    alice, bob = ids["alice"], ids["bob"]
    qwen = {"model_id": ids["qwen3"], "model_route_id": ids["r_qwen"]}
    fallback = {"user_id": bob, "request_id": "req-fb", **qwen}
    first = push("qwen3", at, (100, 20, 120, 40), user_id=alice, access_key="ak-alice",
                 request_id="req-a1", ttft_ms=80, **qwen)  # fmt: skip
    reports = [
        first,
        push("qwen3", at + 1, **fallback),  # the fallback pair: a zero report, then the real one
        push("qwen3", at + 2, (50, 10, 60, 0), **fallback),
        dict(first),  # an identical resend: GPUStack would count it twice
        push("qwen3:sql-lora", at + 3, (30, 5, 35, 0), user_id=bob, model_id=ids["qwen3"],
             model_route_id=ids["r_lora"], request_id="req-lora"),
        push("qwen3", at + 4, (7, 1, 8, 0), user_id=999, request_id="req-ghost", **qwen),
        push("ds-chat", at + 5, (70, 30, 100, 0), user_id=alice, provider_id=ids["ds"],
             model_route_id=ids["r_ds"], organization_id=str(ids["acme"]), request_id="req-ds"),
        {**push("qwen3", at + 6, user_id=bob, request_id="req-cut", **qwen), "completed": False,
         "request_content_bytes": 400, "output_chunk_count": 10},
        push("bge-m3", at + 7, (0, 0, 64, 0), user_id=alice, access_key="ak-alice",
             model_id=ids["bge"], model_route_id=ids["r_bge"], request_id="req-emb"),
    ]  # fmt: skip
    return reports, 3


def span_reports(ids: dict[str, int], at: int) -> list[dict[str, Any]]:
    """Chat spans (as ModelUsageMetrics with the operation GPUStack's middleware sets)."""
    base = {"model": "qwen3", "model_id": ids["qwen3"], "model_route_id": ids["r_qwen"],
            "user_id": ids["alice"], "operation": "chat_completion", "completed": True}
    return [
        {**base, "input_token": 10, "output_token": 5, "total_token": 15,
         "started_at": at + 10 - 500, "completed_at": at + 10},
        {**base, "input_token": 20, "output_token": 5, "total_token": 25,
         "started_at": at + 11 - 500, "completed_at": at + 11},
        {**base, "model_id": 77, "input_token": 9, "output_token": 9, "total_token": 18,
         "started_at": at + 12 - 500, "completed_at": at + 12},  # no such model
    ]  # fmt: skip
