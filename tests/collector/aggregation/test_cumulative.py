"""Cumulative -> delta: the worked example of collector.aggregation.cumulative, row by row."""

from __future__ import annotations

from collector.aggregation.cumulative import StreamState, delta


def test_worked_example() -> None:
    state = None
    steps = [(1, 100, 4), (2, 150, 6), (2, 150, 6), (1, 100, 4), (3, 30, 1), (4, 30, 1)]
    deltas = []
    for time_ns, value, count in steps:
        dv, dc, new = delta(state, time_ns, value, count)
        deltas.append((dv, dc))
        if new is not None:
            state = new
    assert deltas == [(100, 4), (50, 2), (0, 0), (0, 0), (30, 1), (0, 0)]
    assert state == StreamState(4, 30, 1)
