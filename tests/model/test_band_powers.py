"""model.band_powers: the in-graph Welch band powers and tangent vectors are the benchmark's
band-power and log-Euclidean covariance features."""

from __future__ import annotations

import mne
import numpy as np
import torch

from eegfm.model.band_powers import (
    head_spectral_features,
    welch_band_covariances,
    welch_band_features,
    welch_tangent_features,
)
from eegfm.model.spd import shrink, tangent_vectors
from eegfm.model.spectral_features import (
    BANDS,
    TangentMap,
    band_covariances,
    band_power_features,
    log_euclidean_chart,
)


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


def test_welch_co_spectra_are_the_benchmarks_covariances_on_real_eeg_up_to_one_scale_per_band(shared_data):
    eeg = _real_windows(shared_data, 5.0)
    found = shrink(welch_band_covariances(torch.as_tensor(eeg), 256.0)).double().numpy()
    expected = band_covariances(eeg)  # pyRiemann's CoSpectra, band means, shrunk
    for band in range(len(BANDS)):
        scale = (found[:, band] * expected[:, band]).sum() / np.square(expected[:, band]).sum()
        error = np.linalg.norm(found[:, band] - scale * expected[:, band]) / np.linalg.norm(found[:, band])
        # delta's few bins feel the segments' mean removal, which CoSpectra does not do
        assert error < (0.05 if band == 0 else 2e-3), (BANDS[band], error)


def test_tangent_vectors_are_pyriemanns_log_euclidean_map_at_the_identity_plus_one_constant(shared_data):
    """The benchmark's readout maps at the training windows' mean (``TangentMap``): a fixed linear
    map of these vectors, minus a constant (pyRiemann's ``log_map_logeuclid``)."""
    eeg = np.concatenate([_real_windows(shared_data, 5.0), _real_windows(shared_data, 7.0)[:, :, :1280]])
    found = welch_tangent_features(torch.as_tensor(eeg), 256.0, torch.ones(len(eeg), 19)).double().numpy()
    expected = TangentMap("logeuclid", np.stack([np.eye(19)] * len(BANDS))).transform(band_covariances(eeg))
    shift = (found - expected)[:, 190:]  # theta to gamma (delta: the test above)
    assert np.abs(shift - shift.mean(0)).max() < 0.01 * np.abs(expected[:, 190:]).max()
    assert found.shape == (8, len(BANDS) * 190) and np.isfinite(found).all()


def test_an_absent_channel_sits_at_the_floor_and_moves_nothing_else(shared_data):
    eeg = torch.as_tensor(_real_windows(shared_data, 5.0))
    mask = torch.ones(4, 19)
    mask[1, 7] = 0.0
    noisy = eeg.clone()
    noisy[1, 7] = 1e4 * torch.randn(eeg.shape[-1])  # an absent channel's samples are never read
    torch.testing.assert_close(welch_tangent_features(noisy, 256.0, mask), welch_tangent_features(eeg, 256.0, mask))
    noisy[1, 7, ::3] = float("nan")
    both = head_spectral_features(noisy, 256.0, mask, powers=True, covariances=True)
    assert torch.isfinite(both).all()
    torch.testing.assert_close(both, head_spectral_features(eeg, 256.0, mask, powers=True, covariances=True))


def test_the_log_euclidean_chart_turns_tangent_vectors_at_the_identity_into_the_readouts(shared_data):
    """``vectors @ chart`` is pyRiemann's log-Euclidean map at the vectors' mean, up to a constant."""
    eeg = np.concatenate([_real_windows(shared_data, 5.0), _real_windows(shared_data, 7.0)[:, :, :1280]])
    covariances = welch_band_covariances(torch.as_tensor(eeg), 256.0).double()
    vectors = tangent_vectors(covariances).flatten(1).numpy()  # shrunk inside
    shrunk = shrink(covariances).numpy()
    expected = TangentMap.fit(shrunk, "logeuclid").transform(shrunk)
    shift = vectors @ log_euclidean_chart(vectors) - expected
    np.testing.assert_allclose(shift - shift.mean(0), 0.0, atol=1e-6 * np.abs(expected).max())
