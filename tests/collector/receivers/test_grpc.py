"""The OTLP/gRPC receiver in process (a grpc.aio server on a free port) against a recording
sink: the refusal paths with their exact status code, ``RetryInfo`` trailer and counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

from collector.model import Signal
from collector.receivers.grpc import GrpcReceiver, _Export
from collector.receivers.status import RETRY_INFO_KEY
from tests.collector.receivers.pipeline import MAX_BODY, Pipeline, pipeline, span_key, traces


@pytest.fixture
async def served() -> AsyncIterator[tuple[Pipeline, Any]]:
    line = await pipeline()
    receiver = GrpcReceiver(line.ingest, "127.0.0.1", 0, MAX_BODY,
                            retryable=line.count_retryable)  # fmt: skip
    await receiver.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        yield line, channel
    await receiver.shutdown(grace=1)
    await line.close()


async def _refused(channel: Any, request: tpb.ExportTraceServiceRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tgrpc.TraceServiceStub(channel).Export(request, timeout=10)
    return refused.value


def _retry_delay(error: grpc.aio.AioRpcError) -> tuple[int, int] | None:
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_INFO_KEY:
            info = RetryInfo()
            info.ParseFromString(value)
            return info.retry_delay.seconds, info.retry_delay.nanos
    return None


async def test_accepted_and_rejected_spans_are_counted_in_the_answer(served: Any) -> None:
    line, channel = served
    request = traces((1, 10), (2, None), (3, 30))
    response = await tgrpc.TraceServiceStub(channel).Export(request, timeout=10)
    assert response.partial_success.rejected_spans == 1
    assert response.partial_success.error_message == (
        "gen_ai.usage.input_tokens: expected a count, got 'many'")
    assert line.sink.batches == [[span_key(1), span_key(3)]] and line.sink.rejects == 1
    assert line.retryable == []


async def test_a_full_queue_answers_unavailable_with_retry_info(served: Any) -> None:
    line, channel = served
    await line.fill_queue()
    error = await _refused(channel, traces((1, 10)))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "pending queue full")
    assert _retry_delay(error) == (2, 500_000_000)
    await line.release()
    assert line.sink.batches == [["held"]] and line.sink.started == [["held"]]
    assert line.retryable == ["grpc"]


async def test_a_database_down_answers_unavailable_with_retry_info(served: Any) -> None:
    line, channel = served
    await line.take_database_down()
    error = await _refused(channel, traces((1, 10)))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "database unavailable")
    assert _retry_delay(error) == (2, 500_000_000)
    assert line.sink.batches == [] and line.sink.started == [["lost"]]
    assert line.retryable == ["grpc"]


async def test_after_shutdown_calls_are_refused_as_retryable(served: Any) -> None:
    line, channel = served
    await line.commit.shutdown()
    error = await _refused(channel, traces((1, 10)))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "shutting down")
    assert _retry_delay(error) == (2, 500_000_000)
    assert line.sink.started == [] and line.retryable == ["grpc"]


async def test_bad_requests_are_refused_without_retry_info(served: Any) -> None:
    line, channel = served
    too_many = await _refused(channel, traces(*[(n, 1) for n in range(1, 102)]))
    assert (too_many.code(), too_many.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "more than 100 items in one request")
    assert _retry_delay(too_many) is None
    raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await raw(b"\xff\xff\xff", timeout=10)
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert malformed.value.details().startswith("malformed protobuf")
    assert line.sink.started == [] and line.retryable == []


class _EndedCall:
    """A servicer context whose call the sender has ended while its message was awaited:
    ``read`` gives EOF, and sending the answer fails as grpc's own batch does (records it)."""

    def __init__(self, cancelled: bool) -> None:
        self._cancelled = cancelled
        self.aborts: list[tuple[grpc.StatusCode, str]] = []

    async def read(self) -> object:
        return grpc.aio.EOF

    def cancelled(self) -> bool:
        return self._cancelled

    async def abort(self, code: grpc.StatusCode, details: str, _trailers: object) -> None:
        self.aborts.append((code, details))
        raise RuntimeError('Failed "execute_batch": (SendStatusFromServerOperation)')


@pytest.mark.parametrize("cancelled", [True, False], ids=["seen cancelled", "not yet seen"])
async def test_a_call_ended_by_its_sender_ends_quietly_as_cancelled(
    cancelled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether or not grpc has marked the call cancelled yet, the handler ends it as
    cancelled (logged by grpc at DEBUG), never with an exception grpc logs as a traceback."""
    line = await pipeline()
    export = _Export(line.ingest, Signal.TRACES, line.count_retryable, 5.0)
    context = _EndedCall(cancelled)
    with caplog.at_level(logging.DEBUG, "collector.receivers.grpc"), \
            pytest.raises(asyncio.CancelledError):  # fmt: skip
        await export.export(_no_messages(), context)
    await line.close()
    if cancelled:
        assert context.aborts == []  # seen over: no answer attempted
    else:
        assert context.aborts == [(grpc.StatusCode.INVALID_ARGUMENT,
                                   "no request message: Export takes exactly one")]  # fmt: skip
        assert "gRPC call over before its answer" in caplog.text
    assert line.sink.batches == [] and line.retryable == []


async def _no_messages() -> AsyncIterator[bytes]:
    return
    yield b""
