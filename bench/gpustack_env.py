"""GPUStack 2.3 itself, run from its own test-only virtualenv (``make gpustack-env``).

``GpuStack.run`` calls ``gpustack_scripts/gs.py`` with that environment's python (never
tokenbridge's: their pins clash) and returns the JSON it prints. Used by ``bench/gpustack.py``
and the ``gpustack`` tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("gpustack_scripts") / "gs.py"
ENV = "TOKENBRIDGE_TEST_GPUSTACK_PYTHON"
DEFAULT_VENV = Path("/var/cache/tokenbridge-ci/gpustack-venv")
CREATE = "make gpustack-env"


class GpuStack:
    def __init__(self, python: str) -> None:
        self.python = python

    def run(self, command: str, url: str, payload: Any = None, timeout: float = 300) -> Any:
        """``gs.py command url`` with ``payload`` as JSON on stdin, GPUSTACK_TIMEZONE=UTC."""
        env = {"PATH": os.environ.get("PATH", ""), "GPUSTACK_TIMEZONE": "UTC", "TZ": "UTC",
               "HOME": os.environ.get("HOME", "/tmp")}  # fmt: skip
        done = subprocess.run(
            [self.python, str(SCRIPT), command, url], input=json.dumps(payload),
            capture_output=True, text=True, env=env, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"gs.py {command} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
