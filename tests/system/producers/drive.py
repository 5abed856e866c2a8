"""Drive producer processes from a test, and read a bridge's self-telemetry."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support import ROOT, Server, free_port
from tests.system.test_metrics_export import _scrape

TOKEN_USAGE = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
GENAI_APP = "tests.system.producers.genai_app"


class GenAiApp:
    """A producer app as a subprocess, one command at a time: ``genai_app`` with this
    python by default, or ``module`` run by ``python`` (``openai_v2_app`` in its own
    virtualenv), ``env`` added to its environment. Each answer is awaited at most
    ``timeout`` seconds (the first one includes the process's start)."""

    def __init__(
        self, *args: str, python: str = sys.executable, module: str = GENAI_APP,
        env: Mapping[str, str] | None = None, timeout: float = 60.0,
    ) -> None:  # fmt: skip
        environ = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [python, "-m", module, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=environ,
        )  # fmt: skip
        self.timeout = timeout
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.exported = {"token_points": 0, "duration_points": 0, "spans": 0}
        self.totals: dict[str, int] = {}

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # the end of its output

    def _answer(self, command: str) -> str:
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.process.kill()
            raise AssertionError(f"{command!r}: no answer within {self.timeout} s") from None
        if not line:
            raise AssertionError(f"{command!r}: the app exited ({self.process.wait(10)})")
        return line

    def do(self, *command: str) -> dict[str, Any]:
        """Run one command; the answer, with this export's token and duration points."""
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(command) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._answer(" ".join(command)))
        assert answer.get("metrics_ok", True) and answer.get("spans_ok", True), answer
        points = answer.get("points", {})
        answer["token_points"] = points.get(TOKEN_USAGE, 0)
        answer["duration_points"] = points.get(DURATION, 0)
        answer.setdefault("spans", 0)
        for key in self.exported:
            self.exported[key] += answer[key]
        self.totals = {k: answer[k] for k in ("input", "output", "calls")}
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def counts(metrics_port: int) -> dict[str, int]:
    """The bridge's accepted and rejected reports and ignored items by reason (``ignored:
    <reason>``), as scraped."""
    out: dict[str, int] = {}
    for (name, labels), value in _scrape(metrics_port).items():
        if name == "tokenbridge_reports_accepted_total":
            out["accepted"] = int(value)
        elif name == "tokenbridge_reports_rejected_total":
            out["rejected"] = int(value)
        elif name == "tokenbridge_reports_ignored_total" and value:
            out[f"ignored: {dict(labels)['reason']}"] = int(value)
    return out


def serve_with_metrics(
    factory: type[Server], url: str, workdir: Path, config: dict[str, Any] | None = None
) -> tuple[Server, int]:
    """A started server with its metrics endpoint on a free port of its own (never one of the
    server's receiver ports); the server and that port."""
    server = factory(url, workdir, config)
    port = free_port()
    while port in (server.grpc_port, server.http_port):
        port = free_port()
    server.extra_args = [*server.extra_args, "--metrics-port", str(port)]
    return server.start(), port
