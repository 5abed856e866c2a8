"""Defaults live once, in the pydantic sections; the runtime settings are derived from them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from collector.config import CommitConfig, Config, ConfigError, LimitsConfig, SourcesConfig, load
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
    # timestamps from 2000-01-01T00:00Z to a day ahead of the clock, in UnixMilli
    assert Config().limits.settings() == Limits(2_000_000, 256, 4096, 10**12,
                                                946_684_800_000, 86_400_000)  # fmt: skip
    custom = LimitsConfig(max_items=50, max_attributes=8, max_value_length=300, max_count=99,
                          earliest="2020-01-01", max_ahead=60)  # fmt: skip
    assert custom.settings() == Limits(50, 8, 300, 99, 1_577_836_800_000, 60_000)


def test_gpustack_layout_refuses_a_yaml_catalog_and_unknown_layouts() -> None:
    with pytest.raises(ConfigError, match=r"catalog: not used with database\.layout gpustack"):
        load(overrides={"database": {"layout": "gpustack"}, "catalog": {"path": "c.yaml"}},
             environ={})  # fmt: skip
    unknown = r"database\.layout seed .*Input should be 'tokenbridge' or 'gpustack'"
    with pytest.raises(ConfigError, match=unknown):
        load(overrides={"database": {"layout": "seed"}}, environ={})
    config = load(environ={"TOKENBRIDGE_DATABASE__LAYOUT": "gpustack"})
    assert (config.database.layout, config.database.catalog_refresh) == ("gpustack", 2.0)
    assert config.aggregation.extra_dimensions == ("model_route_id", "organization_id")


def test_genai_metrics_is_auto_by_default_and_takes_a_flag_or_auto_only() -> None:
    assert Config().sources.genai_metrics == "auto"
    assert [SourcesConfig(genai_metrics=v).genai_metrics for v in ("auto", True, False)] == [
        "auto", True, False]  # fmt: skip
    with pytest.raises(ValidationError, match="expected auto, true or false, got 'maybe'"):
        SourcesConfig(genai_metrics="maybe")
