"""The OTLP/HTTP receiver in process (aiohttp test server) against a recording sink: the
refusal paths a real server cannot be held in on demand, each with its exact status, body
code, ``Retry-After`` and counts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.receivers.http import build_app
from tests.collector.receivers.pipeline import MAX_BODY, Pipeline, pipeline, span_key, traces

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Pipeline, TestClient[Any, Any]]]:
    line = await pipeline()

    async def ready() -> bool:
        return not line.commit.database_down and await line.sink.ping()

    app = build_app(line.ingest, ready, MAX_BODY, retryable=line.count_retryable)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield line, client
    await line.close()


async def _post(client: TestClient[Any, Any], body: bytes) -> tuple[int, str | None, Any]:
    response = await client.post("/v1/traces", data=body, headers=PROTOBUF)
    raw = await response.read()
    return response.status, response.headers.get("Retry-After"), raw


def _status(raw: bytes) -> tuple[int, str]:
    status = status_pb2.Status()
    status.ParseFromString(raw)
    return status.code, status.message


async def test_accepted_and_rejected_spans_are_counted_in_the_answer(served: Any) -> None:
    line, client = served
    body = traces((1, 10), (2, None), (3, 30)).SerializeToString()
    status, retry_after, raw = await _post(client, body)
    response = tpb.ExportTraceServiceResponse()
    response.ParseFromString(raw)
    assert (status, retry_after) == (200, None)
    assert response.partial_success.rejected_spans == 1
    assert response.partial_success.error_message == (
        "gen_ai.usage.input_tokens: expected a count, got 'many'")
    assert line.sink.batches == [[span_key(1), span_key(3)]] and line.sink.rejects == 1
    assert line.retryable == []


async def test_a_full_queue_answers_503_with_retry_after_and_commits_nothing(served: Any) -> None:
    line, client = served
    await line.fill_queue()
    status, retry_after, raw = await _post(client, traces((1, 10)).SerializeToString())
    assert (status, retry_after, _status(raw)) == (503, "3", (14, "pending queue full"))
    json_answer = await client.post("/v1/traces", data=json.dumps({"resourceSpans": []}),
                                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert json_answer.status == 503 and json_answer.headers["Retry-After"] == "3"
    assert await json_answer.json() == {"code": 14, "message": "pending queue full"}
    await line.release()
    assert line.sink.batches == [["held"]] and line.sink.started == [["held"]]
    assert line.retryable == ["http", "http"]


async def test_a_database_down_answers_503_and_readyz_says_not_ready(served: Any) -> None:
    line, client = served
    await line.take_database_down()
    status, retry_after, raw = await _post(client, traces((1, 10)).SerializeToString())
    assert (status, retry_after, _status(raw)) == (503, "3", (14, "database unavailable"))
    gateway = await client.post("/v2/usage/gateway-metrics", json={"model": "m", "input_token": 1})
    assert gateway.status == 503 and gateway.headers["Retry-After"] == "3"
    assert await gateway.json() == {"code": 14, "message": "database unavailable"}
    ready = await client.get("/readyz")
    assert (ready.status, await ready.json()) == (503, {"status": "not ready"})
    assert line.sink.batches == [] and line.sink.started == [["lost"]]
    assert line.retryable == ["http", "http"]


async def test_after_shutdown_requests_are_refused_as_retryable(served: Any) -> None:
    line, client = served
    await line.commit.shutdown()
    status, retry_after, raw = await _post(client, traces((1, 10)).SerializeToString())
    assert (status, retry_after, _status(raw)) == (503, "3", (14, "shutting down"))
    assert line.sink.started == [] and line.retryable == ["http"]


async def test_too_many_items_answer_413_with_the_grpc_code_in_the_body(served: Any) -> None:
    line, client = served
    body = traces(*[(n, 1) for n in range(1, 102)]).SerializeToString()  # the bound is 100
    status, retry_after, raw = await _post(client, body)
    assert (status, retry_after) == (413, None)
    assert _status(raw) == (8, "more than 100 items in one request")  # RESOURCE_EXHAUSTED
    assert line.sink.started == [] and line.retryable == []
