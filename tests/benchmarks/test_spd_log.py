"""benchmarks/spd_log.py: both logarithms of real EEG band covariances timed, and their agreement."""

from __future__ import annotations

import json

from benchmarks.spd_log import main


def test_both_logarithms_are_timed_on_real_eeg_and_agree(shared_data, capsys):
    assert main(["--batch", "4", "--rounds", "1", "--data", str(shared_data / "eegmat")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matrices"] == [4, 5, 19, 19] and result["threads"] == 1
    assert result["eigh_ms"] > 0 and result["products_ms"] > 0
    assert result["products_over_eigh"] > 0
    assert 0 < result["max_relative_difference"] < 2e-5  # the two methods, not one computed twice
