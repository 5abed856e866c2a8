"""Cost of the structure bound on legitimate requests, side by side with the decoding it guards.

For protobuf trace requests of the synthetic gateway (1,000 spans each, ~25 elements per span)
at a few sizes: the time to parse and walk the spans (what every request pays), and the time
the element bound adds. Under ``2 * max_items`` bytes the bound is free (a length check);
past it a C-speed bound of tag bytes runs, and only when that bound passes the limit the wire
walk (shown forced, with the limit just above the request's true count). Then the refusal of
a 64 MiB bomb.

    python -m bench.bounds
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

if not __package__:  # run as a script (python bench/bounds.py): the repository root first
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from collector.config import LimitsConfig
from collector.decode import protobuf as pb
from collector.decode.structure import _len_tag_bound, check_protobuf, count_elements
from collector.errors import PermanentError
from collector.mapping.fields import FieldMapper, MappingRules
from collector.tools.synthetic import templates


def _best(work: Callable[[], object], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def _decode(body: bytes, wanted: frozenset[str]) -> None:
    for _span in pb.spans(tpb.ExportTraceServiceRequest.FromString(body), wanted):
        pass


def main() -> int:
    limit = LimitsConfig().max_items
    wanted = FieldMapper(MappingRules()).wanted
    template = templates("grpc", 1)[0]
    print(f"max_items {limit:,}; times are CPU ms, best of 5")
    print(f"{'request':>18} {'elements':>9} {'decode':>8} {'bound':>8} {'tag bound':>10} "
          f"{'wire walk':>10}")  # fmt: skip
    for copies in (1, 4, 16):
        request = tpb.ExportTraceServiceRequest()
        for n in range(copies):
            request.MergeFromString(template.render(n))
        body = request.SerializeToString()
        elements = count_elements(body, "traces", 10**9)
        decode = _best(partial(_decode, body, wanted))
        bound = _best(partial(check_protobuf, body, "traces", limit))
        tags = _best(partial(_len_tag_bound, body, 10**9))
        walk = _best(partial(count_elements, body, "traces", elements + 1))
        size = f"{len(body) / 1e6:5.1f} MB {1000 * copies:6,} spans"
        print(f"{size} {elements:9,} {decode * 1e3:8.1f} {bound * 1e3:8.2f} "
              f"{tags * 1e3:10.2f} {walk * 1e3:10.1f}")  # fmt: skip
    bomb = b"\x0a\x00" * (32 * 1024 * 1024 - 100)
    started = time.process_time()
    try:
        check_protobuf(bomb, "traces", limit)
    except PermanentError as refused:
        print(f"64 MiB of empty ResourceSpans: {refused.message} after "
              f"{(time.process_time() - started) * 1e3:,.0f} ms CPU")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
