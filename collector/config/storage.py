"""Sections of storage: the database, the group commit and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from collector.commit import CommitSettings
from collector.config.base import Section

DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "sqlite", "sqlite+aiosqlite")
URL_HELP = "use postgresql://user:password@host:5432/db or sqlite:///path/to/file.db"


class DatabaseConfig(Section):
    url: str = "sqlite+aiosqlite:///tokenbridge.db"
    """``postgresql://user:password@host:5432/db`` or ``sqlite:///path/to/file.db``."""
    layout: Literal["tokenbridge", "gpustack"] = "tokenbridge"
    """``gpustack``: write GPUStack 2.3's own ``model_usages`` and ``model_usage_details`` in
    its (PostgreSQL) database and read its catalog tables; bookkeeping in ``tokenbridge_*``."""
    catalog_refresh: float = Field(2.0, gt=0)
    """``gpustack`` layout: seconds between reads of GPUStack's catalog tables."""
    migrate_on_start: bool = True
    pool_size: int = Field(5, ge=1)
    connect_timeout: float = Field(5.0, gt=0)
    command_timeout: float = Field(15.0, gt=0)
    """Longest one SQL statement may run before the database counts as unavailable."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL; {URL_HELP}") from None
        if url.drivername not in DATABASE_SCHEMES:
            raise ValueError(f"unknown database scheme {url.drivername!r}; {URL_HELP}")
        if url.drivername.startswith("sqlite") and not url.database:
            raise ValueError(f"no file named; {URL_HELP}")
        return value


class CommitConfig(Section):
    max_batch: int | None = Field(None, ge=1)
    """Reports a transaction takes at most; unset: 2000 on PostgreSQL, 5000 on SQLite."""
    flush_interval: float = Field(0.1, gt=0, le=10)
    """How long the last free transaction slot, taken while others are in flight, waits for
    company; a free slot that is not the last starts a transaction at once."""
    max_pending: int = Field(20_000, ge=1)
    """Reports accepted and not yet committed. Keep it to a few seconds of commits: a sender
    waiting longer than its export timeout (10 s for the OTel SDK) resends anyway."""
    retry_after: float = Field(1.0, gt=0)
    concurrency: int | None = Field(None, ge=1, le=16)
    """Transactions in flight at once; unset: 3 on PostgreSQL, 1 on SQLite (one writer).

    The PostgreSQL defaults were measured with ``make bench``: three transactions of at most
    2000 reports keep the bridge's core busy while the database commits (8 requests of 1000
    spans in flight: about 16% more spans/s than two of at most 5000). SQLite has one
    writer, so there one larger transaction at a time does best."""

    def settings(self, engine: str) -> CommitSettings:
        """The commit's settings on ``engine`` (a SQLAlchemy dialect name): what is unset
        takes that engine's default."""
        postgres = engine == "postgresql"
        return CommitSettings(
            max_batch=self.max_batch or (2000 if postgres else 5000),
            flush_interval=self.flush_interval,
            max_pending=self.max_pending,
            retry_after=self.retry_after,
            concurrency=self.concurrency or (3 if postgres else 1),
        )


class RetentionConfig(Section):
    """How long audit rows and rejects are kept; rollups (``model_usages``) are kept for good.

    A day D of audit rows is removed once it is more than ``details_days`` days before today
    (in ``aggregation.timezone``); a report dated before that horizon is rejected (``older
    than retention``), since its audit row could no longer de-duplicate a resend."""

    details_days: int = Field(400, ge=1)
    """Days of ``model_usage_details`` kept (400: about GPUStack's 13 months)."""
    rejects_days: int = Field(30, ge=1)
    """Days of ``usage_rejects`` kept (beside ``limits.max_reject_rows``)."""
    partition: Literal["day", "month"] = "month"
    """PostgreSQL: one partition of ``model_usage_details`` per day or per month."""
    partitions_ahead: int = Field(3, ge=1, le=400)
    """Partitions created ahead of today (days or months), so no report waits for DDL."""
    archive_dir: Path | None = None
    """Where a partition (a day, on SQLite) is written before it is dropped; unset: no
    archive. Files are gzip CSV with a header (``tokenbridge archive --restore F``)."""
    interval: float = Field(3600.0, ge=0)
    """Seconds between two prune runs inside ``serve`` (partitions ahead are created on
    each run too); 0: ``serve`` never prunes (run ``tokenbridge prune`` instead)."""
    batch_rows: int = Field(10_000, ge=100)
    """Rows one DELETE removes at most (SQLite, PostgreSQL's default partition, rejects)."""
