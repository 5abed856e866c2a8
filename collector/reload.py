"""Follow a file: the catalog and the price table are reloaded when their files change.

Every ``interval`` seconds the file's modification time and size are compared with those of
the last read. A changed file is parsed off the event loop; a valid one is installed at once,
an invalid one (``ValueError``, naming what is wrong) is logged and the last good one stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class FileWatcher(Generic[T]):
    """``load(path)`` the file when it changed and ``install`` the result; ``what`` names it
    in the log (``catalog reloaded from ...``), ``describe`` adds what it holds."""

    def __init__(
        self, path: str | Path, load: Callable[[Path], T], install: Callable[[T], None],
        what: str, describe: Callable[[T], str],
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self._load = load
        self._install = install
        self._what = what
        self._describe = describe
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check()

    async def check(self) -> bool:
        """Reload if the file changed since the last read; True when a new one is in."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            loaded = await asyncio.to_thread(self._load, self.path)
        except ValueError as exc:
            logger.error("%s not reloaded, keeping the last good one: %s", self._what, exc)
            return False
        self._install(loaded)
        logger.info("%s reloaded from %s: %s", self._what, self.path, self._describe(loaded))
        return True
