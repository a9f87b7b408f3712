"""benchmarks/fusion_share.py: the recipe's fusion at each share of the network, on two readings
of real eegmat windows (a person's rest against their arithmetic task)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.fusion_share import share_table
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.model.spectral_features import band_power_features


def _probabilities(feature: np.ndarray) -> np.ndarray:
    z = (feature - feature.mean()) / feature.std()
    return np.stack([1 / (1 + np.exp(z)), 1 / (1 + np.exp(-z))], 1)


@pytest.fixture(scope="module")
def readings(eegmat_recording):
    """Two class distributions of the same real windows, each from one band power, and the labels."""
    rest, task = (eegmat_recording(f"Subject00_{k}") for k in (1, 2))
    features = band_power_features(np.concatenate([rest, task]), sfreq=500.0)
    target = np.eye(2)[np.r_[np.zeros(len(rest), int), np.ones(len(task), int)]]
    return _probabilities(features[:, 0]), _probabilities(-features[:, -1]), target


def test_share_zero_is_the_readout_and_one_the_network(readings):
    network, readout, target = readings
    prior = target.mean(0)
    table = share_table([network], readout, target, prior, [0.0, 0.5, 1.0])
    for share, probs in ((0.0, readout), (1.0, network)):
        expected = metrics_of(probs, target, prior)
        for metric in ("balanced_accuracy", "auroc", "auprc", "kl"):
            assert table[share][metric] == pytest.approx(expected[metric], abs=1e-4), (share, metric)
    assert table[0.0] != table[0.5] != table[1.0]
    assert set(table[0.5]) == {"balanced_accuracy", "auroc", "auprc", "kl", "score"}
