"""A real Prometheus (the Debian package) on a free loopback port, scraping given targets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import free_port

BINARY = shutil.which("prometheus")


def require_prometheus() -> str:
    """The binary; fails on CI (``.ci/run`` installs it), skips elsewhere."""
    if BINARY is None:
        message = "prometheus not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return BINARY


class Prometheus:
    def __init__(
        self, workdir: Path, targets: list[str], scrape_interval: str = "1s",
        jobs: dict[str, dict[str, Any]] | None = None,
    ) -> None:  # fmt: skip
        """Scrapes ``targets`` as job ``tokenbridge``; ``jobs`` adds more jobs over the same
        targets, each with extra scrape settings (e.g. ``authorization``)."""
        self.port = free_port()
        self.workdir = workdir / f"prometheus-{self.port}"
        self.workdir.mkdir()
        scrapes = {"tokenbridge": {}, **(jobs or {})}
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": targets}], **settings}
                for name, settings in scrapes.items()
            ],
        }
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Prometheus:
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [require_prometheus(), f"--config.file={self.config_path}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 f"--storage.tsdb.path={self.workdir / 'data'}", "--log.level=warn"],
                stdout=log, stderr=log, cwd=self.workdir,
            )  # fmt: skip
        self.wait_for(lambda: self._ready(), timeout, "Prometheus did not become ready")
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.25)
        log = (self.workdir / "prometheus.log").read_text(errors="replace")
        raise AssertionError(f"{what} within {timeout}s\n{log[-3000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises on a PromQL error."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{expr}: {error.read().decode()}") from None
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
