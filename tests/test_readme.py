"""The README's configuration reference states every key of every section with the default the
code has: the documented YAML is compared with the models' own defaults, key for key."""

from __future__ import annotations

import re
from typing import Any

import yaml

from collector.config import CatalogConfig, Config, LimitsConfig
from collector.decode.json import MAX_DEPTH as JSON_MAX_DEPTH
from collector.ingest import MAX_REJECT_TEXT
from collector.mapping.limits import MAX_DEPTH
from collector.mapping.values import MAX_TEXT
from tests.support import ROOT


def _blocks() -> list[Any]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration reference") : readme.index("## Metric names")]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def test_the_configuration_reference_shows_every_key_and_its_real_default() -> None:
    documented = _blocks()[0]
    assert documented == Config().model_dump(mode="json")
    assert list(documented) == list(Config.model_fields)  # every section, in the code's order


def test_the_catalog_section_shows_its_keys_and_defaults() -> None:
    [catalog] = [b["catalog"] for b in _blocks() if isinstance(b, dict) and b.get("catalog")]
    assert set(catalog) == set(CatalogConfig.model_fields)
    assert catalog["reload_interval"] == CatalogConfig(path="x").reload_interval


def _default(path: str) -> object:
    node: object = Config()
    for part in path.split("."):
        node = getattr(node, part)
    return node


def test_the_limits_section_lists_every_bound_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Limits"):]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", section, re.M)
    listed = {key: text.strip() for key, text in rows}
    every_limit = {f"limits.{name}" for name in LimitsConfig.model_fields}
    bounds = {"receivers.max_body_bytes", "receivers.grpc_max_message_bytes",
              "receivers.header_timeout", "receivers.idle_timeout",
              "receivers.body_timeout", "commit.max_pending", "metrics.label_limit",
              "metrics.max_series"}  # fmt: skip
    assert set(listed) == every_limit | bounds
    for key, text in listed.items():
        assert text == str(_default(key)), key
    fixed = section[section.index("Fixed in code"):section.index("Why the defaults")]
    assert f"nest at most {MAX_DEPTH} levels" in fixed
    assert f"OTLP/JSON values {JSON_MAX_DEPTH}" in fixed
    assert f"at most {MAX_TEXT} characters" in fixed
    assert f"at most {MAX_REJECT_TEXT}\ncharacters" in fixed
