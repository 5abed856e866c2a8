"""The in-flight budget: requests hold bytes and items until answered; past the budget a
request is refused retryably, unless it is the only one in flight."""

from __future__ import annotations

import pytest

from collector.errors import RetryableError
from collector.inflight import InFlight


def test_requests_share_the_budget_and_release_it_when_answered() -> None:
    budget = InFlight(max_bytes=100, max_items=10, retry_after=3.0)
    with budget.request() as first:
        first.take(80, 4)
        with budget.request() as second:
            second.take(20, 6)  # exactly the budget
            with budget.request() as third, pytest.raises(RetryableError) as refused:
                third.take(1)
            assert refused.value.retry_after == 3.0
            assert "requests in flight hold 0 MiB and 10 items" in refused.value.message
        assert (budget.bytes, budget.items, budget.requests) == (80, 4, 1)
        first.take(500, 50)  # alone: a request bigger than the budget still passes
    assert (budget.bytes, budget.items, budget.requests) == (0, 0, 0)


def test_a_refused_request_releases_what_it_held() -> None:
    budget = InFlight(max_bytes=100, max_items=10)
    with budget.request() as first:
        first.take(60)
        with pytest.raises(RetryableError), budget.request() as second:
            second.take(30)
            second.take(30)
        assert (budget.bytes, budget.requests) == (60, 1)
