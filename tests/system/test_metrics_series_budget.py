"""The usage counters share one series budget: label caps alone let combinations multiply
(1000 models x 100 users, each push with its own access key), so past ``metrics.max_series``
new combinations fold into the all-``__overflow__`` series; totals stay exact and the scrape
stays small."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Server, free_port, query

USAGE = tuple(f"tokenbridge_usage_{name}_total"
              for name in ("input_tokens", "output_tokens", "cached_input_tokens", "requests"))
PUSHES = 100_000
PER_REQUEST = 5_000


def _push(n: int) -> dict[str, object]:
    return {"model": f"model-{n % 1000}", "user_id": f"user-{n // 1000 % 100}",
            "access_key": f"key-{n}", "input_token": 3, "output_token": 2,
            "request_id": f"r{n}", "completed": True}  # fmt: skip


async def test_the_worst_case_scrape_is_bounded_and_totals_stay_exact(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = {"metrics": {"port": metrics_port}, "commit": {"flush_interval": 0.01},
              "limits": {"max_items": PER_REQUEST * 4}}  # fmt: skip
    url = f"sqlite:///{tmp_path / 'tb.db'}"
    with Server(url, tmp_path, config) as server:
        async with aiohttp.ClientSession() as session:
            for start in range(0, PUSHES, PER_REQUEST):
                body = [_push(n) for n in range(start, start + PER_REQUEST)]
                async with session.post(f"{server.http}/v2/usage/gateway-metrics",
                                        json=body) as response:  # fmt: skip
                    assert (response.status, (await response.json())["accepted"]) == (
                        200, PER_REQUEST)  # fmt: skip
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
            scrape = r.read()
        seconds = time.monotonic() - started
    series: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    overflow: dict[str, float] = {}
    series_unpriced = 0
    for family in text_string_to_metric_families(scrape.decode()):
        for sample in family.samples:
            if sample.name == "tokenbridge_usage_unpriced_requests_total":
                series_unpriced += 1
            if sample.name in USAGE:
                series[sample.name] += 1
                totals[sample.name] += int(sample.value)
                if set(sample.labels.values()) - {"false"} == {"__overflow__"}:
                    overflow[sample.name] = sample.value
    print(f"scrape of the worst case: {len(scrape) / 1e6:.2f} MB in {seconds:.3f} s, "
          f"{sum(series.values())} usage series")  # fmt: skip
    # the default budget of 10,000 series: 1,666 label combinations, each a series in the four
    # token and request counters and in the unpriced requests (no price table here)
    assert set(series.values()) == {1_666}
    assert series_unpriced == 1_666
    assert len(scrape) < 4_000_000
    # exact totals, folded attribution: the overflow series holds what no longer fits
    sql = await query(url, "SELECT SUM(prompt_token_count), SUM(completion_token_count), "
                      "SUM(request_count) FROM model_usages")  # fmt: skip
    assert sql == [(3 * PUSHES, 2 * PUSHES, PUSHES)]
    assert totals == {USAGE[0]: 3 * PUSHES, USAGE[1]: 2 * PUSHES, USAGE[2]: 0, USAGE[3]: PUSHES}
    assert overflow[USAGE[3]] == PUSHES - 1_665
