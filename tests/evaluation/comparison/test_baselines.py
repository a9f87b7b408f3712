"""The band-power baseline: per-window absolute and relative log band powers, C chosen on the
validation split while the model is fitted on training alone, and above chance on real eegmat
subjects it never saw."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from eegfm.evaluation.comparison import baselines
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.windows import WindowSet, load_windows
from eegfm.model import linear_fit
from eegfm.model.spectral_features import band_power_features
from tests.evaluation.comparison.test_eegmat import tiny_data

T = 1280  # 5 s at 256 Hz, eegmat's windows


def alpha_windows(labels, alpha_uv, seed: int, *, subjects: int = 4, split: str = "train") -> WindowSet:
    """Windows of white noise (5 uV) plus a 10 Hz rhythm on every channel, ``alpha_uv[label]`` uV."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n = len(labels)
    rhythm = np.sin(2 * np.pi * 10 * np.arange(T) / 256.0 + rng.uniform(0, 2 * np.pi, (n, 19, 1)))
    eeg = 5 * rng.standard_normal((n, 19, T)) + np.asarray(alpha_uv)[labels][:, None, None] * rhythm
    return WindowSet(
        eeg=eeg.astype(np.float32),
        channel_mask=np.ones((n, 19), np.float32),
        label=labels.astype(np.int64),
        votes=np.zeros((n, 2), np.float32),
        subject=np.array([f"s{i % subjects}" for i in range(n)]),
        site=np.array(["a"] * n),
        recording=np.array([f"s{i % subjects}-r{labels[i]}" for i in range(n)]),
        split=np.array([split] * n),
    )


def test_features_are_absolute_and_relative_log_powers_of_each_window_alone():
    eeg = alpha_windows([0, 1, 0], (2.0, 20.0), seed=0).eeg
    features = band_power_features(eeg)
    assert features.shape == (3, 19 * 5 * 2) and np.isfinite(features).all()
    # one window alone gives the same features as in a batch: nothing spans windows
    np.testing.assert_allclose(band_power_features(eeg[1:2])[0], features[1], rtol=1e-10)
    per_channel = features.reshape(3, 19, 2, 5)  # [window, channel, absolute/relative, band]
    np.testing.assert_allclose((10 ** per_channel[:, :, 1]).sum(-1), 1.0, rtol=1e-6)  # shares of 0.5-45 Hz
    # a flat channel gives finite features (the floor), not -inf or NaN
    assert np.isfinite(band_power_features(np.zeros((1, 19, T)))).all()


def test_a_10_hz_sine_lands_in_alpha_absolute_and_relative():
    t = np.arange(T) / 256.0
    sine = np.tile(10 * np.sin(2 * np.pi * 10 * t), (19, 1))[None]
    absolute, relative = band_power_features(sine).reshape(19, 2, 5)[0]
    # 10 uV amplitude: 50 uV^2 of power, all of it in 8-13 Hz
    assert absolute[2] == pytest.approx(np.log10(50.0), abs=0.02)
    assert relative[2] == pytest.approx(0.0, abs=1e-3)
    assert (np.delete(relative, 2) < -3).all() and (np.delete(absolute, 2) < -1).all()


def test_c_is_chosen_on_validation_and_the_model_fitted_on_training_alone():
    labels = np.tile([0, 1], 20)
    train = alpha_windows(labels, (2.0, 8.0), seed=1)
    agreeing = alpha_windows(labels, (2.0, 8.0), seed=2, split="dev")
    contrary = dataclasses.replace(agreeing, label=1 - labels)  # the same windows, labels swapped
    c_agreeing = baselines.band_power_lr(train, 2, agreeing).c
    predict = baselines.band_power_lr(train, 2, contrary)
    c_contrary = predict.c
    # Separable validation rewards confidence; validation that contradicts training rewards the
    # weakest model the grid has.
    assert c_agreeing >= 1.0 and c_contrary == linear_fit.C_GRID[0]
    # Validation chose C only: the model still says training's direction (alpha means class 1).
    probs = predict(contrary)
    assert probs.shape == (len(contrary), 2) and (probs[labels == 1, 1].min() > probs[labels == 0, 1].max())


def test_vote_distributions_still_train_it_with_or_without_validation():
    labels = np.tile([0, 1], 20)
    train = alpha_windows(labels, (2.0, 8.0), seed=3)
    votes = np.where(labels[:, None] == np.arange(2), 3.0, 1.0).astype(np.float32)  # 3 of 4 votes
    train = dataclasses.replace(train, votes=votes, label=np.full(len(labels), -1))
    for validation in (None, train):
        predict = baselines.band_power_lr(train, 2, validation, balanced=False)
        c, probs = predict.c, predict(train)
        assert c in linear_fit.C_GRID and np.allclose(probs.sum(1), 1.0)
        assert probs[labels == 1, 1].mean() > 0.6 > 0.4 > probs[labels == 0, 1].mean()


@pytest.fixture(scope="module")
def eegmat_windows(shared_data, tmp_path_factory):
    """Real windows: training subjects 00-02, validation subjects 28 and 29."""
    data = tiny_data(tmp_path_factory.mktemp("eegmat-baseline"), shared_data, ("00", "01", "02", "28", "29"))
    return load_windows(str(data), "eegmat_rest_task")


def test_real_windows_give_per_window_features_and_a_baseline_above_chance(eegmat_windows):
    windows = eegmat_windows
    features = band_power_features(windows.eeg[:3])
    assert features.shape == (3, 19 * 5 * 2) and np.isfinite(features).all()
    np.testing.assert_allclose(band_power_features(windows.eeg[1:2])[0], features[1], rtol=1e-10)
    # C chosen on one validation subject, scored on the other (a subject that tuned nothing), both ways
    # round: the pseudonyms, and so which comes first, follow the test's random key
    dev, train = windows.of_split("dev"), windows.of_split("train")
    for chooser, held in itertools.permutations(sorted(set(dev.subject.tolist()))):
        predict = baselines.band_power_lr(train, 2, dev.where(dev.subject == chooser))
        c = predict.c
        scored = dev.where(dev.subject == held)
        metrics = metrics_of(predict(scored), scored.label, baselines.targets(train, 2).mean(0))
        assert c in linear_fit.C_GRID
        assert metrics["auroc"] > 0.7 and metrics["balanced_accuracy"] > 0.6, metrics
