"""The README's configuration reference states every key of every section with the default the
code has: the documented YAML is compared with the models' own defaults, key for key."""

from __future__ import annotations

import re
from typing import Any

import yaml

from collector.config import CatalogConfig, Config
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
