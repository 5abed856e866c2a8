"""Sections of mapping and aggregation: rollup rules, sources, fields, catalog, prices."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, field_validator, model_validator

from collector import conventions as conv
from collector.aggregation.rules import EXTRA_DIMENSIONS
from collector.config.base import Section
from collector.mapping.fields import MAPPABLE_FIELDS
from collector.mapping.producers import ProducerRule
from collector.model import Operation


class AggregationConfig(Section):
    timezone: str = "UTC"
    """The zone of a rollup's day: the equivalent of GPUStack's ``GPUSTACK_TIMEZONE`` (set
    both alike when GPUStack's views read tokenbridge's rows)."""
    bytes_per_input_token: int = 4
    tokens_per_output_chunk: int = 1
    extra_dimensions: tuple[str, ...] = ("model_route_id", "organization_id")
    """Added to the seed's rollup key: GPUStack 2.3 keys on both (``[]``: the seed's key).
    The GPUStack layout always merges on GPUStack's own database key instead."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("extra_dimensions")
    @classmethod
    def _known_dimensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(EXTRA_DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; use {EXTRA_DIMENSIONS}")
        return tuple(d for d in EXTRA_DIMENSIONS if d in value)


class SourcesConfig(Section):
    """Which inputs count; custom counters (``mapping.counters``) always do. By default
    both kinds of GenAI producer count once (the source rule)."""

    spans: bool = True
    genai_metrics: bool | Literal["auto"] = "auto"
    """The GenAI semconv metrics (``gen_ai.client.token.usage``, the draft counters).
    ``auto``: the source rule (a producer's points count until its first usage span, then
    its spans; ``collector.aggregation.sources``); ``true``: every point counts (spans
    too, unless ``spans: false``); ``false``: none does."""
    gateway: bool = True

    @field_validator("genai_metrics", mode="before")
    @classmethod
    def _auto_or_flag(cls, value: object) -> object:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"expected auto, true or false, got {value!r}")


class ProducerRuleConfig(Section):
    """One producer rule (``collector/mapping/producers.py``): corrections for the spans of an
    instrumentation scope. A rule with the scope and versions of a default one replaces it."""

    scope: str = Field(min_length=1)
    versions: str = ""
    input_excludes_cache: bool = False
    operations: dict[str, str] = {}
    usage_object: str | None = None
    ignore: str | None = None

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"not a version range (PEP 440 specifiers): {value!r}") from None
        return value

    @field_validator("operations")
    @classmethod
    def _operations(cls, value: dict[str, str]) -> dict[str, str]:
        for name, stored in value.items():
            if Operation.parse(stored) is None:
                raise ValueError(f"{name}: unknown operation {stored!r}")
        return value

    def rule(self) -> ProducerRule:
        operations = {}
        for name, stored in self.operations.items():
            operation = Operation.parse(stored)
            if operation is not None:  # always: checked above
                operations[name.strip().lower()] = operation
        return ProducerRule(
            scope=self.scope, versions=self.versions,
            input_excludes_cache=self.input_excludes_cache, operations=operations,
            usage_object=self.usage_object, ignore=self.ignore,
        )  # fmt: skip


class MappingConfig(Section):
    producer_rules: list[ProducerRuleConfig] = []
    """Extra producer rules, before the defaults; one with a default's scope and versions
    replaces it."""
    fields: dict[str, list[str]] = {}
    """Per report field, the ordered attribute keys to read (replaces the default list)."""
    operations: dict[str, str] = {}
    """Extra operation names -> the stored operation value."""
    skip_operations: list[str] = []
    """Extra operation names whose spans repeat their children's usage."""
    counters: dict[str, str] = {}
    """Custom counters: metric name -> report field (always counted)."""

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(value) - MAPPABLE_FIELDS
        if unknown:
            raise ValueError(f"unknown report fields {sorted(unknown)}")
        return value

    @field_validator("counters")
    @classmethod
    def _known_counter_fields(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = set(conv.TOKEN_FIELDS) - {"total_token"}
        for name, field in value.items():
            if field not in allowed:
                raise ValueError(f"{name}: field must be one of {sorted(allowed)}")
        return value


class CatalogConfig(Section):
    path: str
    """YAML file of models, providers, users, api_keys, routes and clusters (see README)."""
    reload_interval: float = Field(5.0, ge=0)
    """Seconds between checks of the file for changes (reloaded when changed); 0: read once."""


class PricingConfig(Section):
    """Cost of every report (``collector.aggregation.pricing``). Prices come from ``path``
    (YAML, see README) and, for models the file does not price, the ``genai-prices``
    package."""

    enabled: bool = True
    """false: no report is priced (cost and status stay NULL)."""
    currency: str = "USD"
    """One currency per deployment; a price file naming another is refused."""
    path: str | None = None
    builtin: bool = True
    """Fall back to the ``genai-prices`` package's prices (USD) for models the file lacks."""
    reload_interval: float = Field(5.0, ge=0)
    """Seconds between checks of ``path`` for changes (reloaded when changed); 0: read once."""

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str) -> str:
        if not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
            raise ValueError("a three-letter upper-case code such as USD")
        return value

    @model_validator(mode="after")
    def _builtin_in_usd(self) -> PricingConfig:
        if self.enabled and self.builtin and self.currency != "USD":
            raise ValueError(f"the builtin prices are in USD, not {self.currency}: set "
                             "pricing.builtin: false")  # fmt: skip
        return self
