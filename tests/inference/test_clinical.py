"""Windows read clinically: recommendations from the rules, minutes per class without counting
overlaps twice, and flagged episodes as runs of contiguous windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eegfm.core.tasks import HMS_CLASSES
from eegfm.inference.clinical import flagged_episodes, minutes_by_class, read_windows
from eegfm.inference.predictor import WindowPrediction
from eegfm.inference.recommendation import load_rules

SEIZURE = [0.7, 0.1, 0.05, 0.05, 0.05, 0.05]
OTHER = [0.02, 0.02, 0.02, 0.02, 0.02, 0.9]


def _windows(rows, starts, duration=10.0, artifact=None):
    rules = load_rules().for_labels(HMS_CLASSES)
    outputs = np.array(rows)
    artifact = artifact or [0.0] * len(rows)
    readings = read_windows(outputs, outputs[:, None, :], artifact, HMS_CLASSES, rules)
    return [
        WindowPrediction(s, duration, tuple(r), a, (), **vars(reading))
        for s, r, a, reading in zip(starts, rows, artifact, readings, strict=True)
    ], rules


def test_readings_follow_the_rules_and_one_sample_has_no_mutual_information():
    windows, _ = _windows([SEIZURE, OTHER, OTHER], [0, 10, 20], artifact=[0.0, 0.0, 0.8])
    assert [w.clinical_recommendation for w in windows] == ["urgent review", "routine", "expert review"]
    assert windows[0].predicted_class == "Seizure" and windows[0].confidence == pytest.approx(0.7)
    assert windows[1].uncertainty == {
        "entropy": pytest.approx(0.48603, abs=1e-4),
        "mutual_information": 0.0,
        "passes": 1,
    }
    assert sum(windows[0].class_probabilities.values()) == pytest.approx(1.0)


def test_without_samples_the_entropy_is_the_outputs_and_mutual_information_is_null():
    rules = load_rules().for_labels(("rest", "task"))
    [reading] = read_windows(np.array([[0.5, 0.5]]), None, [0.0], ("rest", "task"), rules)
    assert reading.uncertainty == {"entropy": pytest.approx(math.log(2)), "mutual_information": None, "passes": 0}
    assert reading.clinical_recommendation == "expert review"  # no class stands out
    [value] = read_windows(np.array([[3.2]]), None, [0.9], ("value",), rules.for_labels(("value",)), regression=True)
    assert value.predicted_class is None and value.class_probabilities == {} and value.recommendation_rule == "artifact"


def test_episodes_are_contiguous_runs_of_one_flagged_recommendation():
    rows = [OTHER, SEIZURE, SEIZURE, OTHER, SEIZURE, SEIZURE, OTHER]
    windows, rules = _windows(rows, [0, 10, 20, 30, 40, 60, 70], artifact=[0, 0, 0, 0, 0, 0, 0.9])
    # 40 and 60 are not contiguous (the window 50-60 was rejected); 70 is an expert review
    assert flagged_episodes(windows, rules.flagged) == [
        {"start_s": 10, "end_s": 30, "class": "Seizure", "recommendation": "urgent review", "windows": 2},
        {"start_s": 40, "end_s": 50, "class": "Seizure", "recommendation": "urgent review", "windows": 1},
        {"start_s": 60, "end_s": 70, "class": "Seizure", "recommendation": "urgent review", "windows": 1},
        {"start_s": 70, "end_s": 80, "class": "Other", "recommendation": "expert review", "windows": 1},
    ]


def test_overlapping_windows_count_their_minutes_once():
    windows, rules = _windows([SEIZURE, SEIZURE, OTHER, OTHER], [0, 5, 10, 15])  # 10 s windows, 5 s apart
    minutes = minutes_by_class(windows, HMS_CLASSES)
    assert minutes["Seizure"] == pytest.approx(10 / 60, abs=1e-4) and minutes["Other"] == pytest.approx(
        15 / 60, abs=1e-4
    )
    assert sum(minutes.values()) == pytest.approx(25 / 60, abs=1e-3)  # 0 to 25 s
    [episode] = flagged_episodes(windows, rules.flagged)
    assert (episode["start_s"], episode["end_s"], episode["windows"]) == (0, 15, 2)
