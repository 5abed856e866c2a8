"""Fixtures of the system tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system.producers.drive import GenAiApp


@pytest.fixture
def apps() -> Iterator[list[GenAiApp]]:
    """The producer apps a test started (it appends them); each closed at its end."""
    started: list[GenAiApp] = []
    yield started
    for app in started:
        app.close()
