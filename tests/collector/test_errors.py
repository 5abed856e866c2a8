"""The one table: every error kind has one HTTP status and one gRPC code."""

from __future__ import annotations

import grpc

from collector.errors import STATUS, Kind, PermanentError, RetryableError
from collector.receivers.status import grpc_code


def test_every_kind_has_a_status_and_a_grpc_code_of_the_same_name() -> None:
    assert set(STATUS) == set(Kind)
    table = {k: (int(s.http), grpc.StatusCode[s.rpc.name].value[0]) for k, s in STATUS.items()}
    assert table == {
        Kind.INVALID: (400, 3),
        Kind.TOO_LARGE: (413, 8),
        Kind.UNSUPPORTED_MEDIA: (415, 3),
        Kind.UNAUTHENTICATED: (401, 16),
        Kind.UNAVAILABLE: (503, 14),
    }
    # The number an HTTP body carries is the code the gRPC transport answers.
    assert all(grpc.StatusCode[s.rpc.name].value[0] == s.rpc for s in STATUS.values())


def test_errors_carry_a_kind_not_a_status() -> None:
    too_large = PermanentError("more than 2 items in one request", Kind.TOO_LARGE)
    assert grpc_code(too_large) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code(PermanentError("malformed")) == grpc.StatusCode.INVALID_ARGUMENT
    retry = RetryableError("pending queue full", retry_after=2.5)
    assert (retry.kind, retry.retry_after, grpc_code(retry)) == (
        Kind.UNAVAILABLE, 2.5, grpc.StatusCode.UNAVAILABLE)
