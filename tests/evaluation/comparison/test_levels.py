"""Recording- and person-level metrics with intervals over people: each unit is the mean of its
windows, and a resample of people always holds both classes."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.evaluation.comparison import levels
from eegfm.evaluation.comparison.windows import WindowSet


def people_windows(positives: int, people: int, per_person: int = 4) -> WindowSet:
    """``people`` people of ``per_person`` windows each, one recording apiece; the first
    ``positives`` of them are of class 1."""
    n = people * per_person
    person = np.repeat(np.arange(people), per_person)
    return WindowSet(
        eeg=np.zeros((n, 19, 8), np.float32),
        channel_mask=np.ones((n, 19), np.float32),
        label=(person < positives).astype(np.int64),
        votes=np.zeros((n, 2), np.float32),
        subject=np.array([f"p{p}" for p in person]),
        site=np.array(["a"] * n),
        recording=np.array([f"p{p}-r" for p in person]),
        split=np.array(["eval"] * n),
    )


def test_a_constant_prediction_is_chance_in_every_resample_of_people():
    windows = people_windows(positives=2, people=9)  # about one draw in ten holds no positive person
    constant = np.tile([0.8, 0.2], (len(windows), 1))
    values, intervals = levels.level_scores([constant], windows, "subject", 2)
    assert values["balanced_accuracy"] == [0.5]
    ci = intervals["balanced_accuracy"]
    assert ci["people"] == 9 and ci["low"] == ci["high"] == pytest.approx(0.5)
    assert intervals["auroc"]["low"] == intervals["auroc"]["high"] == pytest.approx(0.5)


def test_units_are_the_mean_of_their_windows_and_a_perfect_ranking_scores_one():
    windows = people_windows(positives=3, people=6)
    # each person's windows disagree, but their mean is on the right side for every person
    noisy = np.where(windows.label == 1, 0.7, 0.3) + np.tile([0.25, -0.25, 0.2, -0.2], 6)
    probs = np.stack([1 - noisy, noisy], axis=1)
    values, intervals = levels.level_scores([probs], windows, "recording", 2)
    assert values["auroc"] == [1.0] and values["balanced_accuracy"] == [1.0]
    assert intervals["auroc"]["low"] == 1.0 and intervals["balanced_accuracy"]["low"] == 1.0
