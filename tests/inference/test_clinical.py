"""Windows read clinically: recommendations from the rules, minutes per class without counting
overlaps twice, and flagged episodes as runs of one class."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eegfm.core.tasks import HMS_CLASSES
from eegfm.inference.clinical import flagged_episodes, minutes_by_class, read_windows
from eegfm.inference.predictor import PredictConfig, Predictor, WindowPrediction
from eegfm.inference.recommendation import load_rules

SEIZURE = [0.7, 0.1, 0.05, 0.05, 0.05, 0.05]
OTHER = [0.02, 0.02, 0.02, 0.02, 0.02, 0.9]
STRONG = [0.9, 0.02, 0.02, 0.02, 0.02, 0.02]
UNSURE = [0.45, 0.15, 0.1, 0.1, 0.1, 0.1]  # Seizure, but below the urgent rule's 0.5
LPD = [0.05, 0.6, 0.1, 0.1, 0.1, 0.05]


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


def test_a_ninety_second_seizure_is_one_episode_whatever_its_windows_recommendations():
    # 10 s windows over a seizure (530-620 s), as the demo's model read a simulated one (recordings.json),
    # where the per-recommendation runs made three episodes: P(Seizure) dips below the urgent
    # threshold, one window reads LPD, one is rejected (no window at 600 s), then the seizure ends
    rows = [UNSURE, SEIZURE, UNSURE, SEIZURE, LPD, SEIZURE, STRONG, SEIZURE, UNSURE, OTHER, OTHER]
    starts = [530, 540, 550, 560, 570, 580, 590, 610, 620, 630, 640]
    windows, rules = _windows(rows, starts)
    assert [w.clinical_recommendation for w in windows[:5]] == [
        "standard review",
        "urgent review",
        "standard review",
        "urgent review",
        "urgent review",
    ]
    [episode] = flagged_episodes(windows, rules.flagged)
    # the unflagged Seizure windows at its edges (530, 620) do not stretch it; the LPD window inside is its
    assert episode == {
        "start_s": 540,
        "end_s": 620,
        "duration_s": 80,
        "class": "Seizure",
        "recommendation": "urgent review",
        "windows": 7,
        "peak_probability": pytest.approx(0.9),
        "peak_window": 6,
    }


def test_two_windows_of_another_class_or_two_rejected_split_an_episode():
    rows = [SEIZURE, LPD, LPD, SEIZURE, SEIZURE, SEIZURE, OTHER]
    windows, rules = _windows(rows, [0, 10, 20, 30, 40, 70, 80], artifact=[0, 0, 0, 0, 0, 0, 0.9])
    episodes = flagged_episodes(windows, rules.flagged)
    # two LPD windows are an episode of their own; 50 and 60 were rejected; 80 is an artifact's expert review
    assert [(e["start_s"], e["end_s"], e["class"], e["recommendation"]) for e in episodes] == [
        (0, 10, "Seizure", "urgent review"),
        (10, 30, "LPD", "urgent review"),
        (30, 50, "Seizure", "urgent review"),
        (70, 80, "Seizure", "urgent review"),
        (80, 90, "Other", "expert review"),
    ]
    assert [e["peak_window"] for e in episodes] == [0, 1, 3, 5, 6]


def test_episodes_of_real_predictions_cover_every_flagged_window(hms6_run, shared_data):
    """A six-class model's overlapping windows (5 s apart) on a real recording: every flagged window
    lies in an episode, each episode's peak is its class's most probable window there."""
    predictor = Predictor(hms6_run, PredictConfig(stride_seconds=5.0))
    [prediction] = predictor.predict([str(shared_data / "eegmat" / "Subject00_1.edf")])
    windows = prediction.windows
    episodes = flagged_episodes(windows, predictor.rules.flagged)
    assert (
        len(windows) > 30
        and episodes
        and len(episodes) < sum(w.clinical_recommendation in predictor.rules.flagged for w in windows)
    )
    for e in episodes:
        inside = [w for w in windows if e["start_s"] <= w.start_s < e["end_s"]]
        peak = windows[e["peak_window"]]
        assert peak in inside and peak.predicted_class == e["class"]
        assert e["peak_probability"] == pytest.approx(
            max(w.class_probabilities[e["class"]] for w in inside if w.predicted_class == e["class"])
        )
        assert e["recommendation"] in {w.clinical_recommendation for w in inside}
        assert e["duration_s"] == pytest.approx(e["end_s"] - e["start_s"])
    for w in windows:
        if w.clinical_recommendation in predictor.rules.flagged:
            assert any(e["start_s"] <= w.start_s < e["end_s"] for e in episodes)
    assert [e["start_s"] for e in episodes] == sorted(e["start_s"] for e in episodes)


def test_overlapping_windows_count_their_minutes_once():
    windows, rules = _windows([SEIZURE, SEIZURE, OTHER, OTHER], [0, 5, 10, 15])  # 10 s windows, 5 s apart
    minutes = minutes_by_class(windows, HMS_CLASSES)
    assert minutes["Seizure"] == pytest.approx(10 / 60, abs=1e-4) and minutes["Other"] == pytest.approx(
        15 / 60, abs=1e-4
    )
    assert sum(minutes.values()) == pytest.approx(25 / 60, abs=1e-3)  # 0 to 25 s
    [episode] = flagged_episodes(windows, rules.flagged)
    assert (episode["start_s"], episode["end_s"], episode["windows"]) == (0, 15, 2)
    assert episode["peak_window"] in (0, 1)
