import numpy as np
import pytest
import torch

from eegfm.metrics import classification as eval_metrics
from eegfm.metrics.calibration import (
    brier_score,
    calibration_metrics,
    ece_of_bins,
    expected_calibration_error,
    reliability_bins,
)
from eegfm.metrics.plots import plot_reliability


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[labels]


def _sampled(logits: np.ndarray, seed: int) -> np.ndarray:
    """One label per window drawn from softmax(logits): targets the logits are calibrated for."""
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(len(p), p=p) for p in probs])


def test_bins_and_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])  # 0.9-1.0 bin: 1 of 2 right; 0.6 and 0.7: right
    bins = reliability_bins(probs, _one_hot(labels, 2), n_bins=10)
    assert bins["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]  # 0.6 lies on an edge: the lower bin
    assert bins["confidence"][9] == pytest.approx(0.935) and bins["observed"][9] == pytest.approx(0.5)
    assert np.isnan(bins["observed"][0])
    # |0.6 - 1| + |0.7 - 1| + 2 * |0.935 - 0.5|, over 4 windows
    expected = (0.4 + 0.3 + 2 * 0.435) / 4
    assert expected_calibration_error(probs, _one_hot(labels, 2), n_bins=10) == pytest.approx(expected)
    assert ece_of_bins(bins) == pytest.approx(expected)
    assert brier_score(probs, _one_hot(labels, 2)) == pytest.approx(
        np.mean([2 * 0.05**2, 2 * 0.92**2, 2 * 0.3**2, 2 * 0.4**2])
    )


def test_vote_distributions_count_the_share_of_raters_on_the_predicted_class():
    votes = np.array([[3, 1, 0, 0, 0, 0], [0, 0, 5, 5, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=float)
    target = votes / votes.sum(1, keepdims=True)
    # Predicting each panel's own distribution is calibrated and perfect in Brier's terms.
    assert calibration_metrics(target, target) == {"ece": pytest.approx(0.0), "brier": pytest.approx(0.0)}
    # Confident in the majority class: the gap is what the raters disagree on.
    sure = np.eye(6)[[0, 2, 0]]
    assert expected_calibration_error(sure, target) == pytest.approx(np.mean([1 - 0.75, 1 - 0.5, 1 - 1 / 6]))
    # A uniform guess on one-hot targets of C classes scores 1 - 1/C.
    assert brier_score(np.full((4, 6), 1 / 6), _one_hot(np.arange(4), 6)) == pytest.approx(5 / 6)


def test_overconfidence_shows_as_ece_and_temperature_scaling_removes_it():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.5, size=(6000, 6))
    labels = _sampled(logits, 1)
    target = _one_hot(labels, 6)
    calibrated = torch.softmax(torch.from_numpy(logits), -1).numpy()
    overconfident = torch.softmax(torch.from_numpy(3 * logits), -1).numpy()
    assert expected_calibration_error(calibrated, target) < 0.03
    assert expected_calibration_error(overconfident, target) > 0.15
    assert brier_score(overconfident, target) > brier_score(calibrated, target)
    temperature, _, _ = eval_metrics.fit_temperature(torch.from_numpy(3 * logits), torch.from_numpy(target))
    assert temperature == pytest.approx(3.0, rel=0.1)
    rescaled = torch.softmax(torch.from_numpy(3 * logits / temperature), -1).numpy()
    assert expected_calibration_error(rescaled, target) < 0.03


def test_the_calibrated_metric_ranks_checkpoints_by_what_temperature_scaling_will_ship():
    """An over-confident model that ranks well loses on the raw loss and wins once both are scaled."""
    from types import SimpleNamespace

    rng = np.random.default_rng(4)
    truth = rng.normal(0.0, 1.5, size=(3000, 6))
    target = torch.from_numpy(_one_hot(_sampled(truth, 5), 6))
    informed = torch.from_numpy(4 * truth)  # the right ranking, four times too sure
    vague = torch.from_numpy(0.3 * truth + rng.normal(0.0, 0.5, size=truth.shape))  # humble, less informed
    cfg = SimpleNamespace(task="multiclass", head="multiclass")
    raw = [eval_metrics.evaluate(x, target, cfg, None, [1 / 6] * 6) for x in (informed, vague)]
    scaled = [eval_metrics.evaluate(x, target, cfg, None, [1 / 6] * 6, calibrated=True) for x in (informed, vague)]
    assert raw[0]["metric"] > raw[1]["metric"]  # the raw loss keeps the vague checkpoint
    assert scaled[0]["metric"] < scaled[1]["metric"]  # the scaled loss keeps the informed one
    assert scaled[0]["calibrated_temperature"] == pytest.approx(4.0, rel=0.1)
    assert scaled[0]["loss"] == raw[0]["loss"]  # the raw loss is still reported
    unlabeled = eval_metrics.evaluate(
        informed[:5], torch.full((5, 6), float("nan")), cfg, None, [1 / 6] * 6, calibrated=True
    )
    assert "calibrated_temperature" not in unlabeled  # no target, no temperature to fit


def test_metrics_carry_calibration_next_to_the_class_prior():
    rng = np.random.default_rng(2)
    logits = torch.from_numpy(rng.normal(0.0, 1.0, size=(500, 6)))
    target = torch.from_numpy(_one_hot(_sampled(logits.numpy(), 3), 6))
    metrics = eval_metrics.classification_metrics(logits, target, prior=[1 / 6] * 6)
    assert metrics["ece"] < 0.08 and 0 < metrics["brier"] < 1
    # The uniform prior always says 1/6 for one class (the first), right on 1/6 of the windows.
    assert metrics["baseline_ece"] == pytest.approx(abs(1 / 6 - target[:, 0].mean().item()))
    assert metrics["baseline_brier"] == pytest.approx(5 / 6)


def test_errors_name_the_arrays():
    with pytest.raises(ValueError, match=r"probs, target: expected two arrays of shape \[windows, classes\]"):
        reliability_bins(np.ones((3, 2)) / 2, np.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match="n_bins: expected an integer >= 1; got 0"):
        reliability_bins(np.ones((3, 2)) / 2, np.ones((3, 2)) / 2, n_bins=0)
    assert np.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros((0, 2))))


def test_reliability_diagram_is_a_png(tmp_path):
    rng = np.random.default_rng(4)
    logits = rng.normal(0.0, 2.0, size=(400, 6))
    target = _one_hot(_sampled(logits, 5), 6)
    curves = [
        ("uncalibrated", reliability_bins(torch.softmax(torch.from_numpy(3 * logits), -1).numpy(), target)),
        ("calibrated", reliability_bins(torch.softmax(torch.from_numpy(logits), -1).numpy(), target)),
    ]
    path = tmp_path / "calibration.png"
    plot_reliability(curves, "hms6: test windows", path)
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (672, 768)


def test_the_class_weighted_metric_keeps_the_checkpoint_balanced_accuracy_prefers():
    """With a rare class, the plain loss keeps the weights that lean to the common class; the loss
    weighted as a class-balanced run trains keeps those that score each class best."""
    from types import SimpleNamespace

    from eegfm.metrics.losses import balanced_class_weights

    rng = np.random.default_rng(7)
    labels = (rng.random(4000) < 0.2).astype(np.int64)  # one window in five is the rare class
    evidence = np.where(labels == 1, 1.0, -1.0) + rng.normal(0.0, 1.2, size=len(labels))
    target = torch.from_numpy(_one_hot(labels, 2))
    cfg = SimpleNamespace(task="binary", head="multiclass")

    def logits(bias: float) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.zeros_like(evidence), 1.6 * evidence + bias], 1))

    leaning, centred = logits(-1.4), logits(0.0)  # the same ranking, two decision points
    weights = balanced_class_weights(target.sum(0))
    plain = [eval_metrics.evaluate(x, target, cfg, None, [0.8, 0.2]) for x in (leaning, centred)]
    weighted = [
        eval_metrics.evaluate(x, target, cfg, None, [0.8, 0.2], class_weights=weights) for x in (leaning, centred)
    ]
    assert plain[0]["metric"] < plain[1]["metric"]  # the plain loss keeps the leaning weights
    assert weighted[0]["metric"] > weighted[1]["metric"]  # the weighted loss keeps the centred ones
    assert weighted[1]["balanced_accuracy"] > weighted[0]["balanced_accuracy"] + 0.02
    assert weighted[0]["loss"] == plain[0]["loss"]  # the plain loss is still reported
    assert weighted[0]["metric"] == weighted[0]["class_weighted_loss"]
    calibrated = eval_metrics.evaluate(centred, target, cfg, None, [0.8, 0.2], calibrated=True, class_weights=weights)
    assert calibrated["metric"] != calibrated["class_weighted_loss"]  # at the fitted temperature
    hms = SimpleNamespace(task="hms6", head="multiclass")
    votes = torch.from_numpy(_one_hot(labels % 6, 6))
    six = torch.from_numpy(rng.normal(size=(len(labels), 6)))
    kl = eval_metrics.evaluate(six, votes, hms, None, [1 / 6] * 6, class_weights=torch.ones(6) * 2)
    assert kl["metric"] == kl["kl"] and "class_weighted_loss" not in kl  # hms6 stops on the HMS metric
