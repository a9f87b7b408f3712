"""The spectral stack: the frozen encoder's embedding beside the band powers (and the bands'
inter-channel correlations), each window on its own; validation choosing the readout's features;
the readout above chance on subjects it never saw; the fusion a normalised geometric mean."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eegfm.evaluation.benchmark import baselines, spectral_stack
from eegfm.evaluation.benchmark.labeled import metrics_of
from eegfm.model.modeling import create_pretraining_model
from tests.evaluation.benchmark.test_baselines import alpha_windows


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    create_pretraining_model("tiny").save_pretrained(folder)
    return folder


def test_features_are_the_embedding_beside_the_band_powers_of_each_window_alone(encoder_dir):
    windows = alpha_windows([0, 1, 0, 1], (2.0, 20.0), seed=0)
    featurize = spectral_stack.readout_feature_sets(encoder_dir)["embedding+powers"]
    features = featurize(windows)
    powers = baselines.band_power_features(windows.eeg)
    assert features.shape == (4, 64 + powers.shape[1])
    np.testing.assert_allclose(features[:, 64:], powers)
    # a window's features do not depend on the windows beside it
    np.testing.assert_allclose(featurize(windows.where(np.arange(4) == 2)), features[2:3], rtol=1e-5, atol=1e-6)
    assert np.isfinite(features).all() and features[:, :64].std(0).max() > 0


def test_band_correlations_are_high_for_a_shared_source_and_low_for_independent_noise():
    rng = np.random.default_rng(0)
    t = np.arange(1280) / 256.0
    eeg = rng.standard_normal((2, 19, 1280))
    eeg[1, :10] += 20 * np.sin(2 * np.pi * 2.0 * t)  # one 2 Hz source on the first ten channels
    eeg[1, 18] = 0.0  # a flat channel
    z = spectral_stack.band_correlation_features(eeg.astype(np.float32))
    pairs = 19 * 18 // 2
    assert z.shape == (2, len(baselines.BANDS) * pairs) and np.isfinite(z).all()
    delta = np.tanh(z[:, :pairs])  # 0.5-4 Hz: back to correlations
    upper = np.triu_indices(19, 1)
    shared = (upper[0] < 10) & (upper[1] < 10)
    # 5 s of 0.5-4 Hz noise has few degrees of freedom: independent channels correlate by chance
    assert delta[1, shared].min() > 0.9 and np.abs(delta[0]).mean() < 0.35
    assert np.all(delta[1, upper[1] == 18] == 0.0)


def test_the_readout_ranks_unseen_subjects_windows_and_validation_chooses_its_features(encoder_dir):
    train = alpha_windows([0, 1] * 12, (3.0, 12.0), seed=1)
    validation = alpha_windows([0, 1] * 4, (3.0, 12.0), seed=2, split="dev")
    predict, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)
    held = alpha_windows([0, 1] * 6, (3.0, 12.0), seed=3, split="eval")
    held.subject[:] = "unseen"
    metrics = metrics_of(predict(held), held.label, np.array([0.5, 0.5]))
    assert chosen["C"] in baselines.C_GRID and chosen["features"] in spectral_stack.READOUT_FEATURES
    assert metrics["auroc"] > 0.9


def test_the_readout_takes_the_correlations_where_only_they_separate_the_classes(encoder_dir):
    def windows(labels, seed, split):
        """Equal band powers; class 1's 2 Hz activity is one source on every channel, class 0's independent."""
        rng = np.random.default_rng(seed)
        base = alpha_windows(labels, (0.0, 0.0), seed=seed, split=split)
        t = np.arange(1280) / 256.0
        phases = rng.uniform(0, 2 * np.pi, (len(labels), 19, 1))
        shared = np.asarray(labels)[:, None, None] == 1
        delta = 8 * np.sin(2 * np.pi * 2.0 * t + np.where(shared, phases[:, :1], phases))
        return dataclasses.replace(base, eeg=(base.eeg + delta).astype(np.float32))

    train, validation = windows([0, 1] * 12, 4, "train"), windows([0, 1] * 4, 5, "dev")
    predict, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)
    assert chosen["features"] == "embedding+powers+correlations"
    held = windows([0, 1] * 6, 6, "eval")
    assert metrics_of(predict(held), held.label, np.array([0.5, 0.5]))["auroc"] > 0.95


def test_the_fusion_is_a_normalised_weighted_geometric_mean():
    model = np.array([[0.9, 0.1], [0.2, 0.8], [1.0, 0.0]])
    readout = np.array([[0.5, 0.5], [0.8, 0.2], [0.5, 0.5]])
    np.testing.assert_allclose(spectral_stack.fuse(model, readout, 1.0), np.clip(model, 1e-9, 1), atol=1e-8)
    np.testing.assert_allclose(spectral_stack.fuse(model, readout, 0.0), readout)
    fused = spectral_stack.fuse(model, readout, 0.5)
    np.testing.assert_allclose(fused.sum(1), 1.0)
    geometric = np.sqrt(model[1] * readout[1])
    np.testing.assert_allclose(fused[1], geometric / geometric.sum())
    assert fused[2, 1] > 0  # a probability of 0 in one expert does not veto the class


def test_a_fusion_weight_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"weight: expected a number in \[0, 1\]; got 1.5"):
        spectral_stack.fuse(np.ones((1, 2)) / 2, np.ones((1, 2)) / 2, 1.5)


def test_the_readout_is_fitted_on_the_training_windows_alone(encoder_dir):
    train = alpha_windows([0, 1] * 12, (3.0, 12.0), seed=7)
    validation = alpha_windows([1, 0] * 4, (3.0, 12.0), seed=8, split="dev")  # its labels contrary
    predict, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)
    featurize = spectral_stack.readout_feature_sets(encoder_dir)[chosen["features"]]
    x, y, weight, _ = baselines._soft_rows(featurize(train), baselines.targets(train, 2), train.subject)
    alone = baselines._fit(x, y, weight, chosen["C"], True)
    held = alpha_windows([0, 1] * 3, (3.0, 12.0), seed=9, split="eval")
    np.testing.assert_allclose(predict(held), alone.predict_proba(featurize(held)), rtol=1e-6, atol=1e-9)
