"""benchmarks/allocator.py: EEGNet's steps under eegfm's malloc thresholds and under glibc's own."""

from __future__ import annotations

import json
import platform

import pytest

from benchmarks.allocator import main


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_eegnet_steps_fault_freed_memory_back_in_only_under_glibcs_rule(capsys):
    assert main(["--jobs", "eegnet", "--steps", "4", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    keep, glibc = result["eegnet"]["keep"], result["eegnet"]["glibc"]
    # a batch's 25 MB activations: thousands of page faults a step under glibc's rule, few kept
    assert keep["faults_per_step"] < 500 < 5000 < glibc["faults_per_step"], result
    assert result["eegnet"]["glibc_over_keep"] > 0 and keep["ms_per_step"] > 0
