"""The bounded decoder fuzz run (``bench.fuzz``) in miniature, so it cannot rot unnoticed;
``python -m bench.fuzz`` runs the full one and prints its figures."""

from __future__ import annotations

import pytest

from bench import fuzz


def test_decoder_fuzz_finds_no_crash(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz.main(["--examples", "150", "--seconds", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "crashes: 0"
    assert all("inputs tried    150" in line for line in lines[:-1])
