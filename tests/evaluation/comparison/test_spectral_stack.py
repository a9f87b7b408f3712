"""The spectral stack: the frozen encoder's embedding beside the band powers (and the bands'
tangent-space covariances), each window on its own; validation choosing the readout's features;
the readout above chance on subjects it never saw; the fusion a normalised geometric mean."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.evaluation.comparison import baselines, spectral_stack, tangent_space
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.windows import computed_once
from eegfm.model import linear_fit
from eegfm.model.fused import encoder_embedding, fuse
from eegfm.model.modeling import create_pretraining_model
from eegfm.model.spectral_features import band_covariances, band_power_features
from tests.evaluation.comparison.test_baselines import alpha_windows
from tests.evaluation.comparison.test_tangent_space import coherent_windows


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    create_pretraining_model("tiny").save_pretrained(folder)
    return folder


def test_features_are_the_embedding_beside_the_band_powers_of_each_window_alone(encoder_dir):
    windows = alpha_windows([0, 1, 0, 1], (2.0, 20.0), seed=0)
    embedding = encoder_embedding(encoder_dir)(windows.eeg, windows.channel_mask)
    assert embedding.shape == (4, 64) and np.isfinite(embedding).all() and embedding.std(0).max() > 0
    # a window's embedding does not depend on the windows beside it
    alone = encoder_embedding(encoder_dir)(windows.eeg[2:3], windows.channel_mask[2:3])
    np.testing.assert_allclose(alone, embedding[2:3], rtol=1e-5, atol=1e-6)
    # every candidate feature set starts with the embedding beside the band powers
    assert all(names[:2] == ("embedding", "powers") for names in spectral_stack.READOUT_FEATURES.values())
    readout, chosen = spectral_stack.spectral_readout(encoder_dir, windows, 2, windows)
    assert readout.features == spectral_stack.READOUT_FEATURES[chosen["features"]]
    parts = readout.feature_parts(windows.eeg, windows.channel_mask)
    assert set(parts) == set(readout.features)
    np.testing.assert_allclose(parts["embedding"], embedding, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["powers"], band_power_features(windows.eeg))
    one = readout.feature_parts(windows.eeg[2:3], windows.channel_mask[2:3])
    for name, part in parts.items():
        np.testing.assert_allclose(one[name], part[2:3], rtol=1e-5, atol=1e-6)


def test_the_readout_ranks_unseen_subjects_windows_and_validation_chooses_its_features(encoder_dir):
    train = alpha_windows([0, 1] * 12, (3.0, 12.0), seed=1)
    validation = alpha_windows([0, 1] * 4, (3.0, 12.0), seed=2, split="dev")
    readout, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)
    held = alpha_windows([0, 1] * 6, (3.0, 12.0), seed=3, split="eval")
    held.subject[:] = "unseen"
    metrics = metrics_of(readout.probabilities(held.eeg, held.channel_mask), held.label, np.array([0.5, 0.5]))
    assert chosen["C"] in linear_fit.C_GRID and chosen["features"] in spectral_stack.READOUT_FEATURES
    assert metrics["auroc"] > 0.9


def test_the_readout_takes_the_covariances_where_only_they_separate_the_classes(encoder_dir):
    train, validation = coherent_windows([0, 1] * 12, 4), coherent_windows([0, 1] * 4, 5, "dev")
    readout, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)
    assert chosen["features"].startswith("embedding+powers+covariances")
    assert readout.features == spectral_stack.READOUT_FEATURES[chosen["features"]]
    held = coherent_windows([0, 1] * 6, 6, "eval")
    probs = readout.probabilities(held.eeg, held.channel_mask)
    assert metrics_of(probs, held.label, np.array([0.5, 0.5]))["auroc"] > 0.95


def test_the_fusion_is_a_normalised_weighted_geometric_mean():
    model = np.array([[0.9, 0.1], [0.2, 0.8], [1.0, 0.0]])
    readout = np.array([[0.5, 0.5], [0.8, 0.2], [0.5, 0.5]])
    np.testing.assert_allclose(fuse([model, readout], [1.0, 0.0]), np.clip(model, 1e-9, 1), atol=1e-8)
    np.testing.assert_allclose(fuse([model, readout], [0.0, 1.0]), readout)
    fused = fuse([model, readout], [0.5, 0.5])
    np.testing.assert_allclose(fused.sum(1), 1.0)
    geometric = np.sqrt(model[1] * readout[1])
    np.testing.assert_allclose(fused[1], geometric / geometric.sum())
    assert fused[2, 1] > 0  # a probability of 0 in one expert does not veto the class


def test_a_fusion_weight_outside_zero_to_one_is_refused():
    half = np.ones((1, 2)) / 2
    with pytest.raises(ValueError, match=r"weights: expected numbers in \[0, 1\] that sum to 1; got \[1.5, -0.5\]"):
        fuse([half, half], [1.5, -0.5])
    with pytest.raises(ValueError, match=r"weights: expected numbers in \[0, 1\] that sum to 1"):
        fuse([half, half], [0.5, 0.6])


def _noisy(target: np.ndarray, sharpness: float, seed: int) -> np.ndarray:
    """Class probabilities that lean towards ``target`` by ``sharpness`` (0: none), with noise."""
    logits = sharpness * target + np.random.default_rng(seed).normal(0, 1, target.shape)
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_validation_gives_the_network_the_share_its_log_loss_earns():
    """choose_share: a network that predicts the validation windows better than the readout takes
    all of the fusion; one that adds nothing keeps the smallest share; each share's loss is the mean
    over the seeds' networks of the fused log loss, recomputed here."""
    target = np.eye(2)[np.random.default_rng(0).integers(0, 2, 400)]
    readout = _noisy(target, 1.0, seed=1)
    strong = [_noisy(target, 4.0, seed=s) for s in (2, 3, 4)]
    share, losses = spectral_stack.choose_share(strong, readout, target, balanced=True)
    assert share == 1.0 and list(losses) == list(spectral_stack.FUSION_SHARES)
    expected = np.mean([linear_fit.log_loss(fuse([n, readout], [0.5, 0.5]), target, True) for n in strong])
    assert losses[0.5] == pytest.approx(expected)
    assert losses[1.0] < losses[0.75] < losses[0.5] < losses[0.25]
    chance = [np.full_like(target, 0.5) for _ in range(3)]  # adds nothing: the readout keeps three quarters
    assert spectral_stack.choose_share(chance, readout, target, balanced=True)[0] == 0.25
    # equal losses (the readout and the network the same) go to the smallest share
    assert spectral_stack.choose_share([readout], readout, target, balanced=False)[0] == 0.25
    # so do losses closer than SHARE_TIE: both near-perfect, the readout a little less sure
    sure, surer = 0.9998 * target + 0.0001, 0.99999 * target + 0.000005
    share, losses = spectral_stack.choose_share([surer], sure, target, balanced=True)
    assert losses[1.0] < losses[0.25] < losses[1.0] + spectral_stack.SHARE_TIE and share == 0.25


def test_the_readout_is_fitted_on_the_training_windows_alone(encoder_dir):
    train = alpha_windows([0, 1] * 12, (3.0, 12.0), seed=7)
    validation = alpha_windows([1, 0] * 4, (3.0, 12.0), seed=8, split="dev")  # its labels contrary
    readout, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)

    def featurize(windows):
        parts = readout.feature_parts(windows.eeg, windows.channel_mask)
        return np.concatenate([parts[name] for name in readout.features], axis=1)

    x, y, weight, _ = linear_fit.soft_rows(featurize(train), baselines.targets(train, 2), train.subject)
    alone = linear_fit.fit_pipeline(x, y, weight, chosen["C"], True)
    held = alpha_windows([0, 1] * 3, (3.0, 12.0), seed=9, split="eval")
    probs = readout.probabilities(held.eeg, held.channel_mask)
    np.testing.assert_allclose(probs, alone.predict_proba(featurize(held)), rtol=1e-6, atol=1e-9)


def test_the_readout_and_the_tangent_space_baseline_share_one_computation_of_the_covariances(encoder_dir):
    """A run's readout and its tangent-space row read each window set's covariances once
    (``row_fits.Context.covariances``), and fit exactly what each fits with its own."""
    train, validation = coherent_windows([0, 1] * 12, 4), coherent_windows([0, 1] * 4, 5, "dev")
    computed = []

    def counted(windows):
        computed.append(len(windows))
        return band_covariances(windows.eeg)

    shared = computed_once(counted)
    readout, chosen = spectral_stack.spectral_readout(encoder_dir, train, 2, validation, shared)
    fit, _ = tangent_space.tangent_space_lr(train, 2, validation, shared)
    assert sorted(computed) == sorted([len(train), len(validation)])  # each set once, for both fits
    alone, chosen_alone = spectral_stack.spectral_readout(encoder_dir, train, 2, validation)
    assert chosen == chosen_alone
    np.testing.assert_array_equal(readout.linear.coef, alone.linear.coef)
    assert fit.c == tangent_space.tangent_space_lr(train, 2, validation)[0].c
