"""benchmarks/openmp_waits.py: every wait setting measured alone and beside copies of itself."""

from __future__ import annotations

import json

import pytest

from benchmarks.openmp_waits import SETTINGS, main


@pytest.mark.slow  # 16 new interpreters importing torch
def test_each_setting_is_timed_alone_and_together(capsys):
    assert main(["--copies", "2", "--rounds", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == list(SETTINGS)
    for row in result.values():
        assert row["alone_s"] > 0 and row["2_copies_slowest_s"] > 0
        assert row["ratio"] > 0
