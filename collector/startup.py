"""Startup errors a user can cause, each one line that names the setting, its value and what
to do: ``tokenbridge: error: <setting> <value>: <problem>; <what to do>``.

Exit codes: 2 when the configuration is wrong in itself (a bad URL, a missing file, a database
that does not exist), 1 when something it depends on is not there now (PostgreSQL not
listening, a port taken by another process). Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from collector.origins import mask_url

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 1


class StartupError(Exception):
    def __init__(self, message: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory databases)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


def check_sqlite(url: str, setting: str, *, writes: bool) -> None:
    """A SQLite file a command can use: one that exists for a command that only reads (which
    must not create an empty database), a directory it may write in for one that writes."""
    path = sqlite_path(url)
    if path is None:
        return
    where = f"{setting} {mask_url(url)}"
    if not writes:
        if not path.is_file():
            raise StartupError(
                f"{where}: no database file {path}; point it at the bridge's database, or "
                "run tokenbridge migrate (or serve) first"
            )
        return
    directory = path.parent
    if not directory.is_dir():
        raise StartupError(f"{where}: directory {directory} does not exist; create it or "
                           "choose another path")  # fmt: skip
    # SQLite writes beside the file too (its -wal and -shm files): the directory must take
    # new files. Tried, not inferred from permission bits (root passes those everywhere).
    for target in (directory, path):
        if not _writable(target):
            raise StartupError(f"{where}: cannot write in {target}; fix its permissions or "
                               "choose another path")  # fmt: skip


def _writable(path: Path) -> bool:
    try:
        if path.is_dir():
            with tempfile.TemporaryFile(dir=path, prefix=".tokenbridge-"):
                return True
        if path.exists():
            with path.open("r+b"):
                return True
    except OSError:
        return False
    return True


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def database_error(error: BaseException, url: str, setting: str) -> StartupError | None:
    """The one line for a database a command could not open, or None when ``error`` is not
    one of the causes a user can fix."""
    parsed = make_url(url)
    where = f"{setting} {mask_url(url)}"
    server = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    for cause in _chain(error):
        name = type(cause).__name__
        if name == "InvalidCatalogNameError":
            return StartupError(f"{where}: database {parsed.database!r} does not exist on "
                                f"{server}; create it (createdb {parsed.database}) or fix the "
                                "name")  # fmt: skip
        if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            return StartupError(f"{where}: PostgreSQL refused the login ({cause}); fix the "
                                "user or password")  # fmt: skip
        if isinstance(cause, socket.gaierror):
            return StartupError(f"{where}: unknown host {parsed.host!r}; fix the host name",
                                EXIT_UNREACHABLE)  # fmt: skip
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH)
        ):
            return StartupError(f"{where}: nothing listens on {server} (connection refused); "
                                "start PostgreSQL or fix the host and port",
                                EXIT_UNREACHABLE)  # fmt: skip
        if isinstance(cause, TimeoutError):
            return StartupError(f"{where}: no answer from {server} within "
                                "database.connect_timeout; check that PostgreSQL runs and "
                                "is reachable", EXIT_UNREACHABLE)  # fmt: skip
        if name == "OperationalError" and "unable to open database file" in str(cause):
            return StartupError(f"{where}: cannot open the SQLite file; check the path and "
                                "its permissions")  # fmt: skip
    return None
