"""Logging for an operator: one format for every process (text or one JSON object per line),
the bridge's own loggers at the configured level, libraries at WARNING (their INFO lines, such
as alembic's ``setup plugin`` ones, say nothing an operator acts on) unless the level is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

OWN = ("collector", "exporters", "tokenbridge")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"time": ISO-8601 UTC, "level", "logger", "message"}`` (+ ``exception``, and
    ``worker`` in a worker process)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            entry["worker"] = self._worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, fmt: str = "text", worker: int | None = None) -> None:
    """Configure the root logger once per process (later calls replace the handler)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        name = "%(name)s" if worker is None else f"worker-{worker} %(name)s"
        handler.setFormatter(logging.Formatter(TEXT.replace("%(name)s", name)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    debug = level == "DEBUG"
    root.setLevel(level if debug else max(logging.WARNING, logging.getLevelName(level)))
    for name in OWN:
        logging.getLogger(name).setLevel(level)
