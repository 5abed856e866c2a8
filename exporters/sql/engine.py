"""Async engines for the two supported databases, and the errors that mean "try later"."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///tokenbridge.db"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs and pick the async drivers."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
              "sqlite": "sqlite+aiosqlite"}.get(parsed.drivername)  # fmt: skip
    return parsed.set(drivername=driver).render_as_string(False) if driver else url


def create_engine(
    url: str, *, connect_timeout: float = 5.0, pool_size: int = 5, command_timeout: float = 15.0,
    read_only: bool = False,
) -> AsyncEngine:  # fmt: skip
    """``connect_timeout`` bounds a connection attempt and a wait for a pooled connection;
    ``command_timeout`` bounds one statement (PostgreSQL), so a database that stops answering
    turns into "unavailable" instead of a request that hangs. ``read_only``: a SQLite file is
    opened read-only (``report`` must not create or change one)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        if read_only:
            parsed = make_url(url)
            url = parsed.set(database=f"file:{parsed.database}",
                             query={"mode": "ro", "uri": "true"}).render_as_string(False)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        if not read_only:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=connect_timeout,
        connect_args={"timeout": connect_timeout, "command_timeout": command_timeout},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (reports, /readyz) run beside the writer; FULL makes every commit
    # durable across a power cut, cheap here because commits are grouped.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "55P03", "57014"})
"""Admin or crash shutdown, starting up, too many connections, lock or statement timeout."""


def _sqlstate(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""


def is_unavailable(error: BaseException) -> bool:
    """True when the database could not be reached or is busy, as opposed to bad data."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    state = _sqlstate(error)
    if state.startswith("08") or state in UNAVAILABLE_SQLSTATES:  # 08: connection exception
        return True
    return isinstance(
        error,
        exc.OperationalError
        | exc.InterfaceError
        | exc.DisconnectionError
        | exc.TimeoutError
        | OSError
        | asyncio.TimeoutError,
    )


RETRY_SQLSTATES = frozenset({"40001", "40P01"})


def is_conflict(error: BaseException) -> bool:
    """Serialization failure or deadlock: the transaction can simply be run again."""
    return _sqlstate(error) in RETRY_SQLSTATES
