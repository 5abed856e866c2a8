"""The bounded decoder fuzz run (bench/fuzz.py) in miniature, so it cannot rot unnoticed;
``python bench/fuzz.py`` runs the full one and prints its figures."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support import ROOT


def test_decoder_fuzz_finds_no_crash(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    assert fuzz.main(["--examples", "150", "--seconds", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "crashes: 0"
    assert all("inputs tried    150" in line for line in lines[:-1])
