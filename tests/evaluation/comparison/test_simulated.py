"""The simulated suite end to end on a small corpus: leave-one-site-out folds for every method."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from eegfm.evaluation.comparison import baselines, simulated
from eegfm.evaluation.comparison.cli import main
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.rows import baseline_names
from tests.evaluation.comparison.test_baselines import alpha_windows


@pytest.mark.slow
def test_leave_one_site_out_on_a_small_simulated_corpus(tmp_path):
    argv = ["simulated", "--output", str(tmp_path), "--sites", "2", "--seeds", "0", "1", "--config", "cpu-tiny"]
    argv += ["--subjects_per_site", "4"]
    methods = ["--methods", "eegfm", "scratch", "ensemble"]  # ensemble: eegfm + spectrogram CNN, stacked
    assert main([*argv, *methods, "--pretrain_steps", "4", "--finetune_set", "epochs=1"]) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert len(report["run"]["sites"]) == 2
    for method in ("class_prior", "band_power_lr", "eegfm_model", "scratch", "ensemble"):
        for metric in ("kl", "kl_vs_baseline", "balanced_accuracy"):
            assert f"{method}.heldout.{metric}" in report
    assert report["class_prior.heldout.kl_vs_baseline"]["mean"] == pytest.approx(1.0)
    assert set(report["run"]["folds"]["eegfm_model"]) == set(report["run"]["sites"])
    assert "eegfm.heldout.kl" not in report  # eegfm names the recipe, which this suite does not fit
    # The seed ensemble's mean probabilities: KL is convex in the prediction, so on every held-out
    # site it is at most the mean of the seeds' own KLs (each recomputed from the saved models).
    for site, ensemble in report["run"]["folds"]["eegfm_model_ensemble"].items():
        seeds = report["run"]["folds"]["eegfm_model"][site]["kl"]
        assert len(seeds) == 2 and ensemble["kl"] <= sum(seeds) / 2 + 1e-6
    assert "leave-one-site-out" in (tmp_path / "benchmark.md").read_text()
    stacked = json.loads((tmp_path / "runs" / "ensemble" / site_of(report) / "seed0" / "eval.json").read_text())
    assert set(stacked["members"]["test"]) == {"members/0-eegfm", "members/1-spectrogram_cnn", "ensemble"}
    assert {"eegfm_model", "ensemble"} <= set(report["run"]["selective"])
    # The suite's fine-tuning settings reach every run, and --finetune_set overrides them.
    site = report["run"]["sites"][0]
    run = json.loads((tmp_path / "runs" / "eegfm" / site / "seed0" / "run.json").read_text())
    assert run["config"]["class_weights"] == "none" and run["config"]["epochs"] == 1


def test_fewer_than_two_sites_is_refused(tmp_path, capsys):
    assert main(["simulated", "--output", str(tmp_path), "--sites", "1"]) == 2
    assert "--sites: leave-one-site-out needs at least 2 sites; got 1" in capsys.readouterr().err


def test_fewer_than_two_people_a_site_is_refused(tmp_path, capsys):
    assert main(["simulated", "--output", str(tmp_path), "--subjects_per_site", "1"]) == 2
    assert "--subjects_per_site: fine-tuning keeps people aside for validation, so at least 2; got 1" in (
        capsys.readouterr().err
    )
    assert not any(tmp_path.iterdir())  # refused before anything is simulated


def site_of(report: dict) -> str:
    return report["run"]["sites"][0]


def test_selective_means_average_the_held_out_sites_summaries():
    def summary(full: float, at: float) -> dict:
        scores = {"confidence": {"risk_at_0.8": at, "aurc": at}, "entropy": {"risk_at_0.8": full, "aurc": full}}
        return {"coverage": 0.8, "risks": {"error": {"full_coverage_risk": full, "scores": scores}}}

    reports = {
        "eegfm": {"a": [{"selective": summary(0.5, 0.3)}], "b": [{"selective": summary(0.7, 0.5)}]},
        "old_run": {"a": [{}], "b": [{}]},  # runs written before the summary: left out
    }
    means = simulated.selective_means(reports, ["a", "b"])
    assert set(means) == {"eegfm"}
    assert means["eegfm"]["error"] == pytest.approx({"all": 0.6, "confidence": 0.4, "entropy": 0.6})
    table = simulated.selective_markdown(means)
    assert "| eegfm | error | 0.600 | 0.400 | 0.600 |" in table


def test_the_suite_s_baselines_are_the_registry_s_each_fitted_on_the_other_sites(tmp_path):
    assert baseline_names("simulated") == ["class_prior", "band_power_lr"]
    labels = np.tile([0, 1, 0, 1, 2, 1], 8)  # Seizure, LPD, GPD by index; 8 people, 4 a site
    windows = alpha_windows(labels % 2, (2.0, 8.0), seed=5, subjects=8)
    sites = np.where(np.arange(len(labels)) % 8 < 4, "a", "b")
    windows = dataclasses.replace(windows, label=labels, votes=np.zeros((len(labels), 6), np.float32), site=sites)
    found = simulated.baseline_folds(windows, ["a", "b"], baseline_names("simulated"), tmp_path)
    for site in ("a", "b"):
        train, test = windows.where(sites != site), windows.where(sites == site)
        prior, target = baselines.targets(train, 6).mean(0), baselines.targets(test, 6)
        # the registry's row, fitted as the fold's context says: unweighted, C by cross-validation
        expected = metrics_of(baselines.band_power_lr(train, 6, balanced=False)(test), target, prior)
        assert found["band_power_lr"][site]["kl"] == pytest.approx(expected["kl"], rel=1e-6)
        assert found["band_power_lr"][site]["kl_vs_baseline"] < 1.0  # alpha tells the classes apart
        assert found["class_prior"][site]["kl_vs_baseline"] == pytest.approx(1.0)
