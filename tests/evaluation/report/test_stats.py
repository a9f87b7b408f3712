"""The report's statistics on real EEG features: the subject bootstrap, MMD and the site probe."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.evaluation.report.stats import (
    median_bandwidth,
    mmd_permutation_p,
    mmd_squared,
    project_2d,
    site_probe,
    subject_bootstrap,
)


@pytest.fixture(scope="module")
def band_powers(three_sites) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log band powers (delta to beta, per channel) of every eegmat window, its site and subject."""
    from eegfm.training.data import EEGLoader, LoaderConfig

    loader = EEGLoader(
        str(three_sites),
        LoaderConfig(batch_size=32, num_workers=0, shuffle=False),
        rank=0,
        world_size=1,
        infinite=False,
    )
    features, sites, subjects = [], [], []
    for batch in loader:
        spectrum = np.abs(np.fft.rfft(batch["eeg"].float().numpy(), axis=-1)) ** 2
        freqs = np.fft.rfftfreq(batch["eeg"].shape[-1], 1 / 256)
        bands = [(1, 4), (4, 8), (8, 13), (13, 30)]
        power = [spectrum[..., (freqs >= lo) & (freqs < hi)].mean(-1) for lo, hi in bands]
        features.append(np.log(np.stack(power, -1) + 1e-6).reshape(len(spectrum), -1))
        sites += batch["site_id"]
        subjects += batch["subject_id"]
    return np.concatenate(features), np.asarray(sites), np.asarray(subjects)


def test_the_bootstrap_resamples_subjects_not_windows():
    # one subject right on 100 windows, another wrong on 100: the windows agree with their subject,
    # so the interval spans the two subjects, not the narrow spread of 200 independent windows
    hits = np.r_[np.ones(100), np.zeros(100)]
    subjects = ["a"] * 100 + ["b"] * 100
    estimate = subject_bootstrap(hits, np.ones(200), subjects, 2000, seed=0)
    assert estimate["value"] == 0.5 and estimate["n_subjects"] == 2
    assert estimate["low"] == 0.0 and estimate["high"] == 1.0
    assert subject_bootstrap(hits, np.ones(200), subjects, 2000, seed=0) == estimate  # seeded
    single = subject_bootstrap(hits[:100], np.ones(100), subjects[:100], 2000, seed=0)
    assert single == {"value": 1.0, "low": None, "high": None, "n_subjects": 1}


def test_the_interval_holds_the_point_estimate_of_a_ratio(band_powers):
    features, _, subjects = band_powers
    top, bottom = features[:, 0], features[:, 5] - features[:, 5].min() + 1.0
    estimate = subject_bootstrap(top, bottom, subjects, 1000, seed=3)
    assert estimate["value"] == pytest.approx(top.sum() / bottom.sum())
    assert estimate["low"] < estimate["value"] < estimate["high"] and estimate["n_subjects"] == 6


def test_mmd_is_zero_for_a_site_with_itself_and_grows_with_shift(band_powers):
    features, sites, _ = band_powers
    first = features[sites == sites[0]]
    others = features[sites != sites[0]]
    assert mmd_squared(first, first) == pytest.approx(0.0, abs=1e-12)
    assert mmd_squared(first, first + 0.1 * first.std(0)) < mmd_squared(first, first + 2.0 * first.std(0))
    shifted = others + 3.0 * others.std(0)
    assert mmd_permutation_p(others, shifted, 50, seed=0) < 0.05
    rng = np.random.default_rng(0)
    order = rng.permutation(len(others))
    halves = others[order[: len(others) // 2]], others[order[len(others) // 2 :]]
    assert mmd_permutation_p(*halves, 50, seed=0) > 0.05  # two random halves of the same windows
    assert median_bandwidth(np.zeros((4, 3))) == 1.0  # all points equal: no zero bandwidth


def test_the_site_probe_reports_accuracy_beside_chance(band_powers):
    features, sites, _ = band_powers
    probe = site_probe(features, sites, seed=0)
    assert probe["n_sites"] == 3 and probe["n_windows"] == len(sites) and probe["folds"] == 5
    assert probe["chance"] == pytest.approx(max(np.unique(sites, return_counts=True)[1]) / len(sites))
    assert 0.0 <= probe["accuracy"] <= 1.0
    # the same windows with the site made obvious in one feature: the probe finds it
    marked = features.copy()
    marked[:, 0] = np.unique(sites, return_inverse=True)[1] * 10.0
    assert site_probe(marked, sites, seed=0)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="expected at least 2 sites"):
        site_probe(features, np.full(len(sites), "one"), seed=0)


def test_both_projections_give_two_coordinates_per_window(band_powers):
    features = band_powers[0][:40]
    for method in ("pca", "tsne"):
        assert project_2d(features, method, seed=0).shape == (40, 2)
