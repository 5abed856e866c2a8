"""The dialect's INSERT with ON CONFLICT support (PostgreSQL and SQLite share the syntax)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

InsertBuilder = Callable[[Table], Any]


def upsert_builder(dialect: str) -> InsertBuilder:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"unsupported database dialect {dialect!r}: use PostgreSQL or SQLite")
