"""benchmarks/recentering.py: re-centering moves each group's mean to the identity and removes
what a group's windows share, on real EEG."""

from __future__ import annotations

import numpy as np
from pyriemann.geometry.mean import mean_riemann

from benchmarks.recentering import recentered
from eegfm.model.spectral_features import band_covariances


def test_each_recording_centres_on_the_identity_and_its_gain_goes(eegmat_recording):
    rest, task = eegmat_recording("Subject00_1")[:12], eegmat_recording("Subject01_2")[:12]
    covariances = band_covariances(np.concatenate([rest, task]), sfreq=500.0)
    groups = np.array(["a"] * len(rest) + ["b"] * len(task))
    moved = recentered(covariances, groups)
    for group in ("a", "b"):
        for band in range(covariances.shape[1]):
            np.testing.assert_allclose(mean_riemann(moved[groups == group, band]), np.eye(19), atol=1e-6)
    # a recording's common gain (4x the amplitude on every channel) is what re-centering removes
    louder = recentered(band_covariances(np.concatenate([rest * 4.0, task]), sfreq=500.0), groups)
    np.testing.assert_allclose(louder, moved, rtol=1e-6, atol=1e-9)
