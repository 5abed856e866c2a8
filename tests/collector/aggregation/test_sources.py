"""The source rule, pure: the docstring's worked example, step by step."""

from __future__ import annotations

from collector.aggregation.sources import NEVER, ProducerState, Ruling, producer_identity, rule

T1, T2, T3 = 60, 120, 180


def test_metrics_first_then_spans_switches_at_the_last_point_counted() -> None:
    assert rule(None, False, [T1]) == Ruling(ProducerState(False, T1), T1, False)
    assert rule(ProducerState(False, T1), False, [T2]) == Ruling(ProducerState(False, T2), T2,
                                                                 False)  # fmt: skip
    # A replayed or older point moves nothing and still counts (it is not after the switch).
    assert rule(ProducerState(False, T2), False, [T1]) == Ruling(None, T2, False)
    # First spans: the switch freezes at T2; spans ending after it count, points after it don't.
    assert rule(ProducerState(False, T2), True, [T3]) == Ruling(ProducerState(True, T2), T2, True)
    assert rule(ProducerState(True, T2), True, []) == Ruling(None, T2, True)
    assert rule(ProducerState(True, T2), False, [T3]) == Ruling(None, T2, True)


def test_spans_first_switches_at_never() -> None:
    assert rule(None, True, []) == Ruling(ProducerState(True, NEVER), NEVER, True)
    assert rule(None, True, [T1]) == Ruling(ProducerState(True, NEVER), NEVER, True)


def test_the_identity_is_the_service_triple_as_bounded_text() -> None:
    resource = {"service.name": "app", "service.instance.id": 7, "host.name": "h",
                "service.namespace": "x" * 300}  # fmt: skip
    assert producer_identity(resource) == ("x" * 255, "app", "7")
    assert producer_identity({}) == (None, None, None)
