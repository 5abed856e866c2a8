"""The bridge under test (``tokenbridge serve`` as a subprocess) and the load process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import cpu_seconds, memory_mb

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Bridge:
    """``tokenbridge serve`` on free loopback ports; samples its memory (all processes)."""

    def __init__(self, url: str, config: dict[str, Any] | None = None, workers: int = 1):
        self.url = url
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="tb-bench-bridge-"))
        self.config_path = self.workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config or {}))
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss_mb = 0.0
        self._sampling = False

    def start(self) -> Bridge:
        args = [sys.executable, "-m", "collector", "serve", "--config", str(self.config_path),
                "--database-url", self.url, "--grpc-port", str(self.grpc_port),
                "--http-port", str(self.http_port)]  # fmt: skip
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        args += ["--no-metrics"]  # measured alone: the endpoint is on by default
        path = self.workdir / "bridge.log"
        log = path.open("ab")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=_env(),
                                        cwd=ROOT)  # fmt: skip
        # The ready line is logged (to the log file) once the bridge listens.
        while b"tokenbridge ready" not in path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"bridge did not start: {path.read_text()}")
            time.sleep(0.02)
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return (self.workdir / "bridge.log").read_text(errors="replace")

    def reset_peak(self) -> None:
        self.peak_rss_mb = 0.0

    def cpu_seconds(self) -> float:
        """CPU time the bridge (all its processes) has used so far."""
        return cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def _sample(self) -> None:
        while self._sampling and self.process is not None:
            self.peak_rss_mb = max(self.peak_rss_mb, memory_mb(self.process.pid, "VmRSS"))
            time.sleep(0.1)

    def stop(self) -> int:
        self._sampling = False
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self.process = None
        return code


def load(bridge: Bridge, protocol: str, duration: float, concurrency: int = 8,
         rate: float = 0.0, requests: int = 0) -> dict[str, Any]:  # fmt: skip
    """Run ``tokenbridge loadgen`` as its own process; its JSON summary."""
    args = [sys.executable, "-m", "collector", "loadgen", "--json", "--quiet",
            "--protocol", protocol, "--grpc-port", str(bridge.grpc_port),
            "--http-port", str(bridge.http_port), "--duration", str(duration),
            "--concurrency", str(concurrency), "--rate", str(rate),
            "--requests", str(requests)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, env=_env(), cwd=ROOT, timeout=duration + 120)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"loadgen failed: {done.stderr.decode()}")
    summary: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return summary
