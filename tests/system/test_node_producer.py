"""A metrics-only Node.js producer (``@opentelemetry/sdk-metrics`` with the OTLP/HTTP JSON
exporter) counts by default, cumulative and delta, exactly.

The Node packages live outside the repository (``.ci/run`` installs
``tests/system/producers/node/package.json`` into ``/var/cache/tokenbridge-ci/node``, or
``TOKENBRIDGE_TEST_NODE_DIR``); when they are missing and npm is here, the first test installs
them. Without npm the tests skip, and fail on CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.model import Ignored
from tests.support import ROOT, Server, query
from tests.system.producers.drive import DURATION, TOKEN_USAGE, counts, serve_with_metrics

PACKAGE = ROOT / "tests" / "system" / "producers" / "node"
NODE_DIR = Path(os.environ.get("TOKENBRIDGE_TEST_NODE_DIR", "/var/cache/tokenbridge-ci/node"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("node and npm are needed for the Node.js producer")
    wanted = (PACKAGE / "package.json").read_text()
    installed = NODE_DIR / "package.json"
    if not installed.exists() or installed.read_text() != wanted:
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        installed.write_text(wanted)
        result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"],
                                cwd=NODE_DIR, capture_output=True, text=True, timeout=600,
                                check=False)  # fmt: skip
        if result.returncode != 0:
            installed.unlink()
            _unavailable(f"npm install failed in {NODE_DIR}: {result.stderr[-500:]}")
    return NODE_DIR / "node_modules"


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
async def test_a_node_metrics_only_producer_counts_by_default(
    temporality: str, node_modules: Path, database_url: str, server_factory: type[Server],
    tmp_path: Path,
) -> None:  # fmt: skip
    server, port = serve_with_metrics(server_factory, database_url, tmp_path)
    run = subprocess.run(
        ["node", str(PACKAGE / "metrics.js"), f"{server.http}/v1/metrics", temporality, "7",
         "9", "node-1"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    sent = json.loads(run.stdout.splitlines()[-1])
    assert sent["failures"] == 0 and sent["calls"] > 5
    rows = await query(database_url, "SELECT sum(prompt_token_count), "
                       "sum(completion_token_count), sum(request_count) FROM model_usages")
    assert [tuple(int(v) for v in row) for row in rows] == [
        (sent["input"], sent["output"], sent["calls"])]  # fmt: skip
    users = await query(database_url, "SELECT count(DISTINCT user_id) FROM model_usages")
    assert users == [(2,)]
    assert counts(port) == {
        "accepted": sent["points"][TOKEN_USAGE], "rejected": 0,
        f"ignored: {Ignored.UNUSED_METRIC}": sent["points"][DURATION],
    }  # fmt: skip
