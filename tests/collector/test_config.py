"""Defaults live once, in the pydantic sections; the runtime settings are derived from them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from collector.config import CommitConfig, Config, LimitsConfig, SourcesConfig
from collector.mapping.limits import Limits


def test_unset_commit_settings_take_the_engine_default() -> None:
    postgres = CommitConfig().settings("postgresql")
    sqlite = CommitConfig().settings("sqlite")
    assert (postgres.max_batch, postgres.concurrency) == (2000, 3)
    assert (sqlite.max_batch, sqlite.concurrency) == (5000, 1)
    for settings in (postgres, sqlite):
        assert (settings.flush_interval, settings.max_pending, settings.retry_after) == (
            0.1, 20_000, 1.0)  # fmt: skip


def test_set_commit_settings_win_over_the_engine_default() -> None:
    config = CommitConfig(max_batch=700, concurrency=2, flush_interval=0.5)
    for engine in ("postgresql", "sqlite"):
        settings = config.settings(engine)
        assert (settings.max_batch, settings.concurrency, settings.flush_interval) == (700, 2, 0.5)


def test_limits_come_from_the_limits_section() -> None:
    assert Config().limits.settings() == Limits(100_000, 256, 4096, 10**12)
    custom = LimitsConfig(max_items=50, max_attributes=8, max_value_length=300, max_count=99)
    assert custom.settings() == Limits(50, 8, 300, 99)


def test_genai_metrics_is_auto_by_default_and_takes_a_flag_or_auto_only() -> None:
    assert Config().sources.genai_metrics == "auto"
    assert [SourcesConfig(genai_metrics=v).genai_metrics for v in ("auto", True, False)] == [
        "auto", True, False]  # fmt: skip
    with pytest.raises(ValidationError, match="expected auto, true or false, got 'maybe'"):
        SourcesConfig(genai_metrics="maybe")
