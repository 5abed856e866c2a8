"""otel-config.yaml (and its load-balanced variant): complete, pointed at tokenbridge's default
port, retrying forever from a persistent queue; and OTLP forwarded through a real collector
(rotel, from PyPI) arrives in tokenbridge exactly once."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import ReceiversConfig
from tests import otelcol_schema, traffic
from tests.support import ROOT, Server, free_port, query

CONFIGS = ("otel-config.yaml", "otel-config.loadbalanced.yaml")
KINDS = ("receivers", "processors", "exporters")
LEGACY = {"gen_ai.usage.prompt_tokens": "gen_ai.usage.input_tokens",
          "gen_ai.usage.completion_tokens": "gen_ai.usage.output_tokens",
          "gen_ai.system": "gen_ai.provider.name"}  # fmt: skip


def _load(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text())


def _default(value: str) -> str:
    """``${env:NAME:-default}`` as the collector expands it with NAME unset."""
    return re.sub(r"\$\{env:\w+:-([^}]*)\}", r"\1", value)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_pipeline_component_is_defined_and_memory_limiter_comes_first(name: str) -> None:
    config = _load(name)
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    assert set(service["pipelines"]) == {"traces", "metrics"}
    for pipeline in service["pipelines"].values():
        for kind in KINDS:
            assert pipeline[kind], kind
            assert set(pipeline[kind]) <= set(config[kind]), (kind, pipeline[kind])
        assert pipeline["processors"][0] == "memory_limiter"
        assert "transform/genai_legacy" in pipeline["processors"]
        # No stage that holds acknowledged data before the persistent queue.
        assert not [p for p in pipeline["processors"] if p.split("/")[0] == "batch"]


@pytest.mark.parametrize("name", CONFIGS)
def test_exporters_retry_forever_from_a_persistent_queue_to_the_default_port(name: str) -> None:
    config = _load(name)
    default_port = ReceiversConfig().grpc_port
    exporters = {e for p in config["service"]["pipelines"].values() for e in p["exporters"]}
    for exporter_id in exporters:
        exporter = config["exporters"][exporter_id]
        if exporter_id.startswith("loadbalancing"):
            assert exporter["resolver"]["dns"]["port"] == default_port
        else:
            host, port = _default(exporter["endpoint"]).rsplit(":", 1)
            assert (host, int(port)) == ("tokenbridge", default_port)
        retry = exporter["retry_on_failure"]
        assert retry["enabled"] is True and retry["max_elapsed_time"] == 0
        queue = exporter["sending_queue"]
        assert queue["enabled"] is True
        assert queue["storage"].startswith("file_storage")
        assert queue["storage"] in config["service"]["extensions"]
        batch = queue["batch"]  # batching after the queue, from disk
        assert 0 < batch["min_size"] <= batch["max_size"] <= queue["queue_size"]
        assert queue["sizer"] == "items" and batch["flush_timeout"].endswith("ms")


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_use_only_keys_the_components_define(name: str) -> None:
    """No Collector binary installs from the registries here, so each key is checked against
    the components' settings as documented for Collector v0.165 (``tests/otelcol_schema``):
    a misspelt or retired key (e.g. the batch processor's ``send_batch_size`` under
    ``sending_queue``) fails here instead of at the collector's start."""
    config = _load(name)
    for kind in ("extensions", "receivers", "processors", "exporters"):
        for component_id, settings in config[kind].items():
            component = component_id.split("/")[0]
            assert component in otelcol_schema.COMPONENTS[kind], (kind, component_id)
            otelcol_schema.check(otelcol_schema.COMPONENTS[kind][component], settings,
                                 f"{kind}.{component_id}")  # fmt: skip


def test_the_load_balanced_variant_routes_spans_by_trace_and_metrics_by_stream() -> None:
    config = _load("otel-config.loadbalanced.yaml")
    pipelines = config["service"]["pipelines"]
    keys = {signal: config["exporters"][p["exporters"][0]]["routing_key"]
            for signal, p in pipelines.items()}  # fmt: skip
    assert keys == {"traces": "traceID", "metrics": "streamID"}


def test_the_transform_aliases_the_legacy_gen_ai_names() -> None:
    transform = _load("otel-config.yaml")["processors"]["transform/genai_legacy"]
    statements = [s for group in transform["trace_statements"] for s in group["statements"]]
    for legacy, current in LEGACY.items():
        assert any(s.startswith(f'set(attributes["{current}"], attributes["{legacy}"])')
                   for s in statements), legacy  # fmt: skip
        # the legacy key goes only after it was copied
        aliased = next(i for i, s in enumerate(statements) if f'attributes["{legacy}"])' in s)
        dropped = statements.index(f'delete_key(attributes, "{legacy}")')
        assert aliased < dropped


def _rotel_agent() -> Path:
    spec = importlib.util.find_spec("rotel")
    if spec is None or spec.origin is None:
        message = "rotel not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(spec.origin).parent / "rotel-agent"


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "rotel exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"rotel did not listen on {port}")


async def test_spans_forwarded_through_a_real_collector_are_counted_once(
    tmp_path: Path, sqlite_url: str, server_factory: type[Server]
) -> None:
    agent = _rotel_agent()
    server = server_factory(sqlite_url, tmp_path).start()
    grpc_port, http_port = free_port(), free_port()
    with (tmp_path / "rotel.out").open("ab") as out:
        rotel = subprocess.Popen(
            [str(agent), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
             "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "otlp",
             "--otlp-exporter-endpoint", f"http://{server.grpc}",
             "--otlp-exporter-protocol", "grpc", "--batch-timeout", "100ms",
             "--pid-file", str(tmp_path / "rotel.pid"),
             "--log-file", str(tmp_path / "rotel.log")],
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        _wait_port(grpc_port, rotel)
        traffic.send_spans(f"127.0.0.1:{grpc_port}")
        wanted = [(sum(s[6] for s in traffic.SPANS), sum(s[7] for s in traffic.SPANS),
                   len(traffic.SPANS))]  # fmt: skip
        sql = ("SELECT sum(prompt_token_count), sum(completion_token_count), "
               "sum(request_count) FROM model_usages")  # fmt: skip
        deadline = time.monotonic() + 30
        rows = await query(sqlite_url, sql)
        while rows != wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            rows = await query(sqlite_url, sql)
    finally:
        rotel.terminate()
        rotel.wait(20)
    assert rows == wanted
    assert server.stop() == 0
    assert "3 reports committed, 0 duplicates skipped" in server.log()
