"""benchmarks/cotenancy.py: a job alone, then copies of it at once, each copy's time against alone."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.cotenancy import main


@pytest.mark.slow  # sets up a corpus and a pretrained model first (about a minute on two cores)
def test_each_copy_is_measured_against_the_job_alone_and_the_fair_share(capsys):
    assert main(["--jobs", "preprocess", "--copies", "2", "--recordings", "1", "--steps", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["jobs"]["preprocess"]
    assert row["alone_s"] > 0
    two = row["N=2"]
    assert len(two["walls_s"]) == 2 and all(w > 0 for w in two["walls_s"])
    assert two["ideal"] == max(1.0, 2 / len(os.sched_getaffinity(0)))
    assert two["ratios"] == [round(w / row["alone_s"], 2) for w in two["walls_s"]]
    assert two["meets_target"] == (max(two["ratios"]) <= 1.3 * two["ideal"])
    # the bound on a copy's share of the cores: the job alone on that many threads
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert two["fair_share_s"] == pytest.approx(two["ideal"] * row[f"alone_{share}_thread_s"], abs=0.02)
    assert two["worst_vs_fair_share"] == pytest.approx(max(two["walls_s"]) / two["fair_share_s"], abs=0.02)
