"""Selective prediction on windows whose risk-coverage curves are known by construction, and the
honest verdict when uncertainty ranks the errors first."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from eegfm.metrics.selective import main, risk_at, risk_coverage, selective_summary


def _windows(confidences, correct):
    """Two-class probabilities: the predicted class 0 with these confidences, target 0 where correct."""
    confidences = np.asarray(confidences, float)
    probabilities = np.stack([confidences, 1 - confidences], axis=1)
    return probabilities, np.where(correct, 0, 1)


def test_errors_on_the_least_confident_windows_vanish_at_80_percent_coverage():
    confidences = np.linspace(0.95, 0.6, 10)  # the last two are the least confident and wrong
    probabilities, target = _windows(confidences, [True] * 8 + [False] * 2)
    coverage, risk = risk_coverage(1 - confidences, (np.arange(10) >= 8).astype(float))
    np.testing.assert_allclose(coverage, np.arange(1, 11) / 10)
    np.testing.assert_allclose(risk, [0] * 8 + [1 / 9, 2 / 10])
    summary = selective_summary(probabilities, target)
    error = summary["risks"]["error"]
    confidence = error["scores"]["confidence"]
    assert error["full_coverage_risk"] == pytest.approx(0.2)
    assert confidence["aurc"] == pytest.approx((1 / 9 + 2 / 10) / 10)  # 0.0311
    assert (
        confidence["risk_at_0.8"] == 0 and confidence["accuracy_at_0.8"] == 1.0 and confidence["accuracy_at_1"] == 0.8
    )
    assert confidence["improves"] and summary["uncertainty_helps"]
    assert error["oracle_aurc"] == pytest.approx(confidence["aurc"])  # the ranking is perfect
    assert "kl" not in summary["risks"]  # hard labels: error rate only


def test_when_the_most_confident_windows_are_the_wrong_ones_the_summary_says_so():
    confidences = np.linspace(0.95, 0.6, 10)
    probabilities, target = _windows(confidences, [False] * 2 + [True] * 8)
    summary = selective_summary(probabilities, target)
    confidence = summary["risks"]["error"]["scores"]["confidence"]
    assert confidence["risk_at_0.8"] == pytest.approx(2 / 8) and confidence["risk_at_0.8"] > 0.2
    assert not confidence["improves"] and not summary["uncertainty_helps"]
    assert "does not lower the risk" in summary["note"]


def test_soft_labels_add_the_kl_to_the_votes_and_samples_add_mutual_information():
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5]])
    votes = np.array([[3, 1], [0, 4]])  # distributions (0.75, 0.25) and (0, 1)
    samples = np.array([[[0.9, 0.1], [0.9, 0.1]], [[0.9, 0.1], [0.1, 0.9]]])
    summary = selective_summary(probabilities, votes, samples, coverage=0.5)
    kl_first = 0.75 * math.log(0.75 / 0.9) + 0.25 * math.log(0.25 / 0.1)
    kl = summary["risks"]["kl"]
    assert kl["full_coverage_risk"] == pytest.approx((kl_first + math.log(2)) / 2)
    assert kl["scores"]["mutual_information"]["risk_at_0.5"] == pytest.approx(kl_first)  # agreeing samples first
    assert set(kl["scores"]) == {"confidence", "entropy", "mutual_information"}
    assert risk_at(np.array([0.5, 1.0]), np.array([0.1, 0.3]), 0.8) == 0.3  # 80 % of 2 windows keeps both


def test_the_command_reads_predictions_csv_and_draws_the_curve(tmp_path):
    rows = [
        (0.9, 0.1, "3;0"),
        (0.8, 0.2, "2;1"),
        (0.7, 0.3, "2;0"),
        (0.75, 0.25, "1;0"),
        (0.55, 0.45, "0;4"),
        (0.6, 0.4, ""),
    ]
    with (tmp_path / "predictions.csv").open("w", newline="") as fileobj:
        writer = csv.writer(fileobj)
        writer.writerow(
            [
                "index",
                "input",
                "start_s",
                "duration_s",
                "a",
                "b",
                "predicted",
                "artifact_score",
                "masked_channels",
                "votes",
            ]
        )
        for k, (a, b, votes) in enumerate(rows):
            writer.writerow([1, "file-x.edf", 10 * k, 10, a, b, "a", 0.1, "", votes])
    assert main(["--predictions", str(tmp_path / "predictions.csv"), "--output", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "selective.json").read_text())
    assert summary["n_windows"] == 5  # the window without votes is left out
    assert summary["risks"]["error"]["scores"]["confidence"]["improves"]  # the one error is the least confident
    assert (tmp_path / "out" / "selective.png").stat().st_size > 5_000
    with pytest.raises(SystemExit):
        main(["--predictions", str(tmp_path / "none.csv"), "--output", str(tmp_path / "out")])
