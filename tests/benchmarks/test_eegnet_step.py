"""benchmarks/eegnet_step.py: EEGNet's training step and validation pass, factored and as the module."""

from __future__ import annotations

import json

from benchmarks.eegnet_step import main


def test_both_ways_are_timed_and_compared(capsys):
    assert main(["--steps", "3", "--rounds", "1", "--batch", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["train_ms_per_step"]) == {"module", "factored"} == set(result["eval_ms_per_256_windows"])
    assert all(ms > 0 for ms in result["train_ms_per_step"].values())
    assert result["module_over_factored"] > 0 and result["eval_module_over_factored"] > 0, result
