"""model.band_powers: the in-graph Welch band powers are the benchmark's band-power features."""

from __future__ import annotations

import mne
import numpy as np
import torch

from eegfm.model.band_powers import welch_band_features
from eegfm.model.spectral_features import BANDS, band_power_features


def _real_windows(shared_data, seconds: float) -> np.ndarray:
    """Four consecutive windows of 19 channels of a real eegmat recording at 256 Hz, in uV."""
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick(raw.ch_names[:19]).resample(256.0, verbose="error")
    n = int(seconds * 256)
    data = raw.get_data(units="uV")[:, : 4 * n]
    return np.stack([data[:, i * n : (i + 1) * n] for i in range(4)]).astype(np.float32)


def test_welch_band_powers_match_the_benchmarks_features_on_real_eeg_up_to_one_scale(shared_data):
    eeg = _real_windows(shared_data, 5.0)
    mask = torch.ones(4, 19)
    mask[2, 5] = 0.0
    found = welch_band_features(torch.as_tensor(eeg), 256.0, mask).numpy()
    expected = band_power_features(eeg).reshape(4, 19, 2, len(BANDS)) * np.log(10.0)  # log10 -> ln
    offset = found[..., : len(BANDS)] - expected[:, :, 0]
    present = mask.numpy().astype(bool)
    assert np.ptp(offset[present]) < 1e-3  # the absolute powers: one constant (the PSD's density scale)
    np.testing.assert_allclose(found[..., len(BANDS) :][present], expected[:, :, 1][present], atol=1e-3)
    assert not found[2, 5].any()  # an absent channel reads zero


def test_a_window_shorter_than_a_segment_still_gives_finite_powers(shared_data):
    eeg = _real_windows(shared_data, 1.0)
    found = welch_band_features(torch.as_tensor(eeg), 256.0, torch.ones(4, 19))
    assert found.shape == (4, 19, 2 * len(BANDS)) and torch.isfinite(found).all()
