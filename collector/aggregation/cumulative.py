"""Cumulative -> delta, pure: one stream's last point in, this point's delta out.

A stream is identified as the Collector's cumulativetodelta processor does: resource, scope,
metric name, unit, point attributes and start time. The caller keeps ``StreamState`` in SQL
in the same transaction as the usage the delta produces, so a restart neither loses nor
repeats a delta.

First-point rule: the first point of a stream counts in full. The start time is part of the
identity, so a new start time is a new life of the producer whose counters began at zero: its
first export is usage that happened since then. (The Collector's ``initial_value: auto`` drops
the first value when it cannot tell; tokenbridge can, because its state is durable.)

Worked example, one stream with start time S:

====  =======  ===========  =====================================================
time  value    state before delta and why
====  =======  ===========  =====================================================
t1    100      none         100: first point of the stream counts in full
t2    150      (t1, 100)    50
t2    150      (t2, 150)    0: the same point replayed
t1    100      (t2, 150)    0: an older point, out of order
t3    30       (t2, 150)    30: below the last value, a reset; counting restarts at 0
====  =======  ===========  =====================================================
"""

from __future__ import annotations

from typing import NamedTuple


class StreamState(NamedTuple):
    time_ns: int
    value: int
    requests: int


def delta(
    state: StreamState | None, time_ns: int, value: int, count: int
) -> tuple[int, int, StreamState | None]:
    """(value delta, count delta, state to store; None when the state must stay as it was)."""
    if state is None:
        return value, count, StreamState(time_ns, value, count)
    if time_ns <= state.time_ns:
        return 0, 0, None
    if value < state.value or count < state.requests:
        return value, count, StreamState(time_ns, value, count)
    return value - state.value, count - state.requests, StreamState(time_ns, value, count)
