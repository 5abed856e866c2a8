"""The memory budget of requests in flight, shared by every transport of one process.

Each request holds, from its first body byte to its answer, the bytes it read (compressed
and inflated) and the most elements its body could decode into (every element of an OTLP
or JSON body takes at least two bytes, so ``min(len(body) // 2, limits.max_items)``). A
request that would pass either budget is refused before it is decoded, retryably: HTTP 503 +
Retry-After, gRPC UNAVAILABLE + RetryInfo. UNAVAILABLE rather than RESOURCE_EXHAUSTED: OTLP
clients retry UNAVAILABLE always, RESOURCE_EXHAUSTED only with RetryInfo, and the bridge
already answers RESOURCE_EXHAUSTED (no RetryInfo) for a request that is too large for good,
so each code keeps one meaning. A request is always admitted while no other is in flight, so
a budget under one request's size cannot refuse it forever.

Example with ``max_bytes`` 256 MiB: three uploads of 64 MiB (inflated) are decoded at once,
a fourth waits behind a 503 until one of them has been answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from collector.errors import RetryableError

MIB = 1 << 20


class Held:
    """What one request holds of the budget; ``take`` more as it reads and decodes."""

    __slots__ = ("_budget", "bytes", "items")

    def __init__(self, budget: InFlight) -> None:
        self._budget = budget
        self.bytes = 0
        self.items = 0

    def take(self, nbytes: int = 0, items: int = 0) -> None:
        """Hold ``nbytes`` and ``items`` more; ``RetryableError`` when over the budget."""
        self._budget.take(self, nbytes, items)
        self.bytes += nbytes
        self.items += items


class InFlight:
    def __init__(self, max_bytes: int, max_items: int, retry_after: float = 1.0) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._retry_after = retry_after
        self.bytes = 0
        self.items = 0
        self.requests = 0

    @contextmanager
    def request(self) -> Iterator[Held]:
        """Hold for one request until it is answered (released whatever happens)."""
        held = Held(self)
        self.requests += 1
        try:
            yield held
        finally:
            self.requests -= 1
            self.bytes -= held.bytes
            self.items -= held.items

    def take(self, held: Held, nbytes: int, items: int) -> None:
        alone = self.requests <= 1
        if not alone and (self.bytes + nbytes > self.max_bytes or
                          self.items + items > self.max_items):  # fmt: skip
            raise RetryableError(
                f"requests in flight hold {self.bytes // MIB} MiB and {self.items} items "
                f"(budget {self.max_bytes // MIB} MiB, {self.max_items} items); retry later",
                retry_after=self._retry_after,
            )
        self.bytes += nbytes
        self.items += items


UNBOUNDED = InFlight(2**62, 2**62)
"""For callers that hold no budget (tools, tests of other parts)."""
