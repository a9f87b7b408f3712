"""benchmarks/startup.py: every console script's --help timed in a new interpreter."""

from __future__ import annotations

import json

import pytest

from benchmarks.startup import _scripts, main


@pytest.mark.slow  # 22 new interpreters, each importing its command
def test_every_console_script_is_timed(capsys):
    assert main(["--rounds", "1", "--skip-predict"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result["help"]) == sorted(_scripts()) and len(result["help"]) >= 20
    for row in result["help"].values():
        assert 0 < row["best_s"] <= row["worst_s"] and row["under_1s"] == (row["worst_s"] < 1)
    assert result["every_help_under_1s"] == all(row["under_1s"] for row in result["help"].values())
    assert result["bare_interpreter_s"] < min(row["best_s"] for row in result["help"].values())
