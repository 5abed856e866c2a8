"""Test support: free ports, the real ``tokenbridge serve`` as a subprocess, database reads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Executable, text
from sqlalchemy.ext.asyncio import create_async_engine

from exporters.sql.engine import normalize_url

ROOT = Path(__file__).resolve().parents[1]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before by this process. The port is
    bound later, by a subprocess, so the kernel may offer it again meanwhile: two calls in a
    row returned the same port once (a bridge's HTTP port equal to the metrics port a test
    had just picked, and it refused to start)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


FIXTURE_RETENTION_DAYS = 36_500


class Server:
    """``python -m collector serve`` (the ``tokenbridge`` entry point) on free loopback ports."""

    def __init__(
        self, database_url: str, workdir: Path, config: dict[str, Any] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:  # fmt: skip
        self.database_url = database_url
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.config_path = workdir / f"tokenbridge-{self.http_port}.yaml"
        config = dict(config or {})
        # Fixtures are fixed instants of 2023: keep them inside the retention horizon unless
        # a test sets its own.
        config.setdefault("retention", {"details_days": FIXTURE_RETENTION_DAYS})
        self.metrics_port: int | None = None
        metrics = config.get("metrics", {})
        if isinstance(metrics, dict) and "port" not in metrics:
            # The endpoint is on by default at 9464: tests running at once each take their own.
            self.metrics_port = free_port()
            config["metrics"] = {**metrics, "port": self.metrics_port}
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"tokenbridge-{self.http_port}.log"
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 30.0) -> Server:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env = {k: v for k, v in env.items() if not k.startswith("TOKENBRIDGE_") or
               k.startswith("TOKENBRIDGE_TEST_")}  # fmt: skip
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector", "serve", "--config", str(self.config_path),
                 "--database-url", self.database_url, "--grpc-port", str(self.grpc_port),
                 "--http-port", str(self.http_port), *self.extra_args],
                stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT,
            )  # fmt: skip
        self._wait_ready(start, timeout)
        return self

    def _wait_ready(self, start: int, timeout: float) -> None:
        """Until the log (from ``start``) holds the ready line, which the bridge logs once
        it listens (text or JSON format alike)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(start)
                if b"tokenbridge ready" in log.read():
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"tokenbridge did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self._close()

    def _close(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


async def query(url: str, sql: str | Executable, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of a SQL string or a SQLAlchemy statement (typed results: use one for dates,
    datetimes and booleans, which SQLite returns as text and integers to raw SQL)."""
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.connect() as conn:
            statement = text(sql) if isinstance(sql, str) else sql
            result = await conn.execute(statement, params)
            return [tuple(row) for row in result]
    finally:
        await engine.dispose()
