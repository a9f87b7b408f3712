"""Choosing between fine-tuning recipes on validation (``runs.run_methods``' alternatives):
the row takes, per fold and seed, the run with the best validation metrics, never the test's."""

from __future__ import annotations

import pytest

from eegfm.evaluation.benchmark.runs import choose_runs, validation_score


def _report(val: float, test: float) -> dict:
    return {"val": {"balanced_accuracy": val, "auroc": val, "auprc": val}, "test": {"auroc": test}, "run": f"r{val}"}


def test_validation_chooses_per_seed_and_test_never_does():
    reports = {
        "eegfm": {"corpus": [_report(0.9, 0.5), _report(0.6, 0.99)]},
        "linear_probe": {"corpus": [_report(0.8, 0.99), _report(0.7, 0.1)]},
    }
    found = choose_runs(reports, {"eegfm": ("linear_probe",)}, asked=["eegfm"])
    assert list(found) == ["eegfm", "eegfm_full"]  # the probe was not asked for: no row of its own
    first, second = found["eegfm"]["corpus"]
    assert (first["chosen"], first["test"]["auroc"]) == ("eegfm", 0.5)
    assert (second["chosen"], second["test"]["auroc"]) == ("linear_probe", 0.1)
    assert [r["val"]["auroc"] for r in found["eegfm_full"]["corpus"]] == [0.9, 0.6]


def test_a_tie_keeps_the_method_s_own_run_and_a_run_without_metrics_scores_lowest():
    own, other = _report(0.7, 0.0), _report(0.7, 1.0)
    found = choose_runs(
        {"eegfm": {"f": [own]}, "linear_probe": {"f": [other]}}, {"eegfm": ("linear_probe",)}, ["eegfm"]
    )
    assert found["eegfm"]["f"][0]["chosen"] == "eegfm"
    assert validation_score({"val": {}}) == float("-inf") and validation_score(own) == pytest.approx(0.7)
