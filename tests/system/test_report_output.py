"""``tokenbridge report`` output of names that senders chose: CSV cells a spreadsheet would run
as formulas are neutralised (OWASP's rule), the table escapes control characters; ``--raw``
gives the names exactly as stored."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, Server
from tests.system.test_gateway_and_cli import push

FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\tTAB", "\rCR"]  # fmt: skip
TERMINAL = "a\x1b[2Jb\x1b]0;title\x07c\rforged"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's output as written: no newline translation, so a CR stays a CR."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                            env=env, cwd=ROOT, timeout=60, check=False)  # fmt: skip
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())  # fmt: skip


async def test_report_neutralises_formulas_and_escapes_control_characters(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'tb.db'}"
    with Server(url, tmp_path, {"commit": {"flush_interval": 0.01}}) as server:
        pushes = [{"model": name, "input_token": 3, "user_id": "plain"}
                  for name in [*FORMULAS, TERMINAL, "ok-model"]]  # fmt: skip
        assert await push(server, pushes) == (
            200, {"accepted": 8, "rejected": 0, "ignored": 0, "message": ""})  # fmt: skip

    result = cli("report", "--database-url", url, "--by", "model_name,user_id", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout, newline='')))
    names = {row[0]: row[2] for row in rows[1:]}
    assert names == {**{"'" + name: "3" for name in FORMULAS}, TERMINAL: "3", "ok-model": "3"}
    assert rows[0][:3] == ["model_name", "user_id", "prompt_tokens"]

    raw = cli("report", "--database-url", url, "--by", "model_name", "--format", "csv", "--raw")
    assert raw.returncode == 0, raw.stderr
    assert {row[0] for row in list(csv.reader(io.StringIO(raw.stdout, newline='')))[1:]} == {
        *FORMULAS, TERMINAL, "ok-model"}  # fmt: skip

    table = cli("report", "--database-url", url, "--by", "model_name")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\r" not in table.stdout and "\x07" not in table.stdout
    assert "a\\x1b[2Jb\\x1b]0;title\\x07c\\rforged" in table.stdout
    assert len(table.stdout.splitlines()) == 2 + 8  # header, rule, one line per model
