"""The base of every configuration section: frozen, unknown keys refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "TOKENBRIDGE_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
