"""``tokenbridge demo``: serves, sends, and prints the report of exactly what it sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, query


async def test_demo_prints_the_report_of_what_it_sent(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--requests", "4", "--spans", "10",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )  # fmt: skip
    assert "sent 4, acknowledged 4, retried 0, failed 0; 40 spans" in done.stdout
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model_name"))
    column = lines[header].split().index("requests")
    rows = [line.split() for line in lines[header + 2 :] if line.startswith("model-")]
    assert sum(int(row[column]) for row in rows) == 40
    url = f"sqlite:///{tmp_path / 'tokenbridge.db'}"
    assert await query(url, "select count(*) from model_usage_details") == [(40,)]
