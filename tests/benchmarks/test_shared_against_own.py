"""benchmarks/shared_against_own.py: where a network's decision falls, on a reading of real eegmat
windows (a person's rest against their arithmetic task), and which seeds pair up."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.shared_against_own import best_offset, seed_runs
from eegfm.model.spectral_features import band_power_features


@pytest.fixture(scope="module")
def reading(eegmat_recording):
    """Log-odds of 'task' from one standardized band power of real windows, and the labels."""
    rest, task = (eegmat_recording(f"Subject00_{k}") for k in (1, 2))
    feature = band_power_features(np.concatenate([rest, task]), sfreq=500.0)[:, -1]
    return (feature - feature.mean()) / feature.std(), np.r_[np.zeros(len(rest), int), np.ones(len(task), int)]


def _probabilities(log_odds: np.ndarray) -> np.ndarray:
    return np.stack([1 / (1 + np.exp(log_odds)), 1 / (1 + np.exp(-log_odds))], 1)


def test_the_best_offset_follows_a_shifted_decision(reading):
    log_odds, top = reading
    offset, accuracy = best_offset(_probabilities(log_odds), top)
    at_zero = np.mean([((log_odds[top == c] > 0) == c).mean() for c in (0, 1)])
    assert 0.5 < at_zero <= accuracy  # the offset can only help balanced accuracy
    # A network leaning to rest wants a positive offset, one leaning to the task a negative one,
    # and either reaches the same best balanced accuracy.
    leaning_rest, rest_accuracy = best_offset(_probabilities(log_odds - 3.0), top)
    leaning_task, task_accuracy = best_offset(_probabilities(log_odds + 3.0), top)
    assert leaning_rest > 0 > leaning_task and abs(offset) < 3.0
    assert rest_accuracy == pytest.approx(accuracy) and task_accuracy == pytest.approx(accuracy)


def test_only_seeds_both_encoders_ran_are_paired(tmp_path):
    for method, seeds in (("eegfm", (0, 1, 2)), ("eegfm_shared", (1, 2))):
        for seed in seeds:
            (tmp_path / "a" / "runs" / method / "corpus" / f"seed{seed}").mkdir(parents=True)
    (tmp_path / "b" / "runs" / "eegfm" / "corpus" / "seed3").mkdir(parents=True)
    (tmp_path / "b" / "runs" / "eegfm_shared" / "corpus" / "seed3").mkdir(parents=True)
    (tmp_path / "b" / "runs" / "eegfm_adapted" / "corpus" / "seed3").mkdir(parents=True)
    runs = seed_runs([tmp_path / "a", tmp_path / "b"], ("eegfm", "eegfm_shared"))
    assert list(runs) == ["seed1", "seed2", "seed3"]
    assert runs["seed3"]["eegfm_shared"] == tmp_path / "b" / "runs" / "eegfm_shared" / "corpus" / "seed3" / "model"
    adapted = seed_runs([tmp_path / "a", tmp_path / "b"], ("eegfm", "eegfm_adapted"))  # --shared_row eegfm_adapted
    assert list(adapted) == ["seed3"] and set(adapted["seed3"]) == {"eegfm", "eegfm_adapted"}
