"""Configuration: one pydantic model per component, defaults in code, unknown keys rejected.

Sources, later ones winning: the YAML file, ``TOKENBRIDGE_*`` environment variables
(``TOKENBRIDGE_DATABASE__URL`` sets ``database.url``; ``__`` separates levels; values are read
as YAML), then command-line flags. Each section lives in the module of its stage
(``receivers``, ``storage``, ``rules``, ``output``); this module joins them and loads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from collector.config.base import ENV_PREFIX, Section
from collector.config.output import LogConfig, MetricsConfig
from collector.config.receivers import (
    AuthConfig,
    LimitsConfig,
    ReceiversConfig,
    TlsConfig,
    usable_tokens,
)
from collector.config.rules import (
    AggregationConfig,
    CatalogConfig,
    MappingConfig,
    PricingConfig,
    ProducerRuleConfig,
    SourcesConfig,
)
from collector.config.storage import (
    DATABASE_SCHEMES,
    URL_HELP,
    CommitConfig,
    DatabaseConfig,
    RetentionConfig,
)
from collector.origins import Origins

__all__ = [
    "DATABASE_SCHEMES",
    "ENV_PREFIX",
    "URL_HELP",
    "AggregationConfig",
    "AuthConfig",
    "CatalogConfig",
    "CommitConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "LimitsConfig",
    "LogConfig",
    "MappingConfig",
    "MetricsConfig",
    "PricingConfig",
    "ProducerRuleConfig",
    "ReceiversConfig",
    "RetentionConfig",
    "Section",
    "SourcesConfig",
    "TlsConfig",
    "load",
    "sources",
    "usable_tokens",
]


class Config(Section):
    receivers: ReceiversConfig = ReceiversConfig()
    database: DatabaseConfig = DatabaseConfig()
    aggregation: AggregationConfig = AggregationConfig()
    commit: CommitConfig = CommitConfig()
    sources: SourcesConfig = SourcesConfig()
    mapping: MappingConfig = MappingConfig()
    catalog: CatalogConfig | None = None
    pricing: PricingConfig = PricingConfig()
    metrics: MetricsConfig | None = MetricsConfig()
    """On by default at 127.0.0.1:9464; ``metrics: null`` or ``enabled: false`` turns it off."""
    auth: AuthConfig = AuthConfig()
    tls: TlsConfig = TlsConfig()
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = RetentionConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _one_catalog(self) -> Config:
        if self.database.layout == "gpustack" and self.catalog is not None:
            raise ValueError("catalog: not used with database.layout gpustack (GPUStack's "
                             "own tables are the catalog); remove the catalog section")
        return self


class ConfigError(Exception):
    """Invalid configuration; the message names the setting (flag, environment variable or
    YAML key and file), its value (secrets masked) and what to do."""


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_PREFIX + "TEST_"):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            node[path[-1]] = raw  # not YAML: the text as given, validated as such
    return tree


def _read_file(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file; give the path of a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"--config {path}: YAML syntax error{where}: {problem}; fix the file"
        ) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config {path}: expected a mapping of sections at the top level")
    return loaded


def load(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """The configuration from ``path``, the environment and ``overrides`` (command-line flags;
    ``flags`` names the flag of each dotted key, for error messages)."""
    origins = sources(path, overrides, environ, flags)
    try:
        return Config.model_validate(origins.merged())
    except ValidationError as exc:
        raise ConfigError("; ".join(origins.describe(item) for item in exc.errors())) from None


def sources(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Origins:
    """What each source sets, to name where a setting came from."""
    data = _read_file(path) if path is not None else {}
    env = _from_env(os.environ if environ is None else environ)
    return Origins(path, data, env, overrides or {}, flags or {}, Config, _merge)
