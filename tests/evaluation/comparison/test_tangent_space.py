"""Tangent-space band covariances (pyRiemann): each window's own co-spectral matrices, the
reference point a statistic of the training windows alone, and a baseline that reads what
per-channel band powers cannot: a source shared by many channels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eegfm.evaluation.comparison import baselines, tangent_space
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.model import linear_fit
from eegfm.model.spectral_features import BANDS, band_covariances
from tests.evaluation.comparison.test_baselines import T, alpha_windows


def coherent_windows(labels, seed: int, split: str = "train"):
    """Equal band powers in both classes; class 1's 2 Hz activity is one source on every channel,
    class 0's an independent phase per channel."""
    rng = np.random.default_rng(seed)
    base = alpha_windows(labels, (0.0, 0.0), seed=seed, split=split)
    phases = rng.uniform(0, 2 * np.pi, (len(labels), 19, 1))
    shared = np.asarray(labels)[:, None, None] == 1
    delta = 8 * np.sin(2 * np.pi * 2.0 * np.arange(T) / 256.0 + np.where(shared, phases[:, :1], phases))
    return dataclasses.replace(base, eeg=(base.eeg + delta).astype(np.float32))


def test_covariances_put_a_shared_source_off_the_diagonal_of_its_band_and_depend_on_one_window():
    rng = np.random.default_rng(0)
    eeg = rng.standard_normal((2, 19, T))
    eeg[1, :10] += 20 * np.sin(2 * np.pi * 2.0 * np.arange(T) / 256.0)  # one 2 Hz source on ten channels
    matrices = band_covariances(eeg.astype(np.float32))  # shrunk by 1 % of the mean eigenvalue
    assert matrices.shape == (2, len(BANDS), 19, 19)
    np.testing.assert_allclose(matrices, np.swapaxes(matrices, -1, -2))
    delta, alpha = matrices[1, 0], matrices[1, 2]
    scale = np.sqrt(np.outer(np.diag(delta), np.diag(delta)))
    assert (delta[:10, :10] / scale[:10, :10]).min() > 0.9  # the shared source: correlation near 1
    assert np.abs(delta[10:, 10:] / scale[10:, 10:] - np.eye(9)).max() < 0.6  # noise alone
    assert np.abs(alpha[:10, :10]).max() < np.abs(delta[:10, :10]).min()  # 2 Hz is not alpha
    np.testing.assert_allclose(band_covariances(eeg[1:2].astype(np.float32))[0], matrices[1])
    assert (np.linalg.eigvalsh(matrices) > 0).all()  # the shrinkage keeps every matrix invertible


def test_features_are_fitted_on_the_training_windows_and_read_each_window_alone():
    train = coherent_windows([0, 1] * 6, seed=1)
    held = coherent_windows([0, 1] * 3, seed=2, split="eval")
    tangent, featurize = tangent_space.tangent_space(train, "riemann")
    assert tangent.metric == "riemann" and tangent.reference.shape == (len(BANDS), 19, 19)
    features = featurize(held)
    assert features.shape == (6, len(BANDS) * 19 * 20 // 2) and np.isfinite(features).all()
    np.testing.assert_allclose(featurize(held.where(np.arange(6) == 4))[0], features[4], rtol=1e-8, atol=1e-10)
    # another reference point (other training windows) gives other features: the map is train's
    other = tangent_space.tangent_space(coherent_windows([0, 1] * 6, seed=3), "riemann")[1](held)
    assert np.abs(other - features).max() > 1e-3
    # an interpolated channel (a copy of its neighbour) leaves the matrices invertible
    copied = dataclasses.replace(held, eeg=held.eeg.copy())
    copied.eeg[:, 5] = copied.eeg[:, 4]
    assert np.isfinite(featurize(copied)).all()


def test_an_unknown_metric_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"metric: expected one of riemann, logeuclid; got 'euclid'"):
        tangent_space.tangent_space(alpha_windows([0, 1], (1.0, 2.0), seed=0), "euclid")


def test_the_baseline_reads_a_shared_source_that_band_powers_cannot():
    train, validation = coherent_windows([0, 1] * 12, seed=4), coherent_windows([0, 1] * 4, seed=5, split="dev")
    held = coherent_windows([0, 1] * 8, seed=6, split="eval")
    predict, tangent = tangent_space.tangent_space_lr(train, 2, validation)
    assert tangent.metric in tangent_space.METRICS and predict.c in linear_fit.C_GRID
    prior = np.array([0.5, 0.5])
    assert metrics_of(predict(held), held.label, prior)["auroc"] > 0.95
    powers = baselines.band_power_lr(train, 2, validation)
    assert metrics_of(powers(held), held.label, prior)["auroc"] < 0.8
