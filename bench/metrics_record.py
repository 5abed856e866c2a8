"""Cost of the usage re-export on the commit path, and of one Prometheus scrape.

    python bench/metrics_record.py [reports-per-commit] [commits]

Prints reports/s recorded by ``UsageMetrics`` (what each commit pays) and the time and size
of one scrape of the resulting series. Synthetic labels: 20 models, 500 users, 700 keys.
"""

from __future__ import annotations

import sys
import time
import urllib.request

from collector.config import MetricsConfig
from collector.model import Committed, Operation, Source, UsageReport
from exporters.metrics.provider import MetricsExport
from exporters.metrics.usage import UsageMetrics


def main(size: int = 5000, commits: int = 20) -> None:
    export = MetricsExport(MetricsConfig(port=0))
    export.start()
    try:
        record = UsageMetrics(export.meter)
        reports = [
            UsageReport(f"model-{i % 20}", Source.SPAN, f"k{i}", 1, input_token=100,
                        output_token=20, user_id=f"u{i % 500}", access_key=f"key{i % 700}",
                        operation=Operation.CHAT_COMPLETION)
            for i in range(size)
        ]  # fmt: skip
        committed = Committed(reports, 0, 0, 0.0)
        started = time.perf_counter()
        for _ in range(commits):
            record(committed)
        seconds = time.perf_counter() - started
        print(f"record: {size * commits / seconds:,.0f} reports/s "
              f"({seconds / commits * 1000:.1f} ms per {size}-report commit)")  # fmt: skip
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{export.port}/metrics") as response:
            body = response.read()
        print(f"scrape: {time.perf_counter() - started:.3f} s, {len(body) / 1e6:.1f} MB, "
              f"{body.count(b'tokenbridge_usage_')} usage samples")  # fmt: skip
    finally:
        export.shutdown()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
