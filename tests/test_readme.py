"""The README's configuration reference states the defaults the code has."""

from __future__ import annotations

import re

import yaml

from collector.config import Config, MetricsConfig
from tests.support import ROOT


def test_the_configuration_reference_shows_the_real_defaults() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration reference"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    documented = Config.model_validate(yaml.safe_load(block.group(1)))
    assert documented == Config(metrics=MetricsConfig())
