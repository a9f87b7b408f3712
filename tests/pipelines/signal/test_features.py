"""Hand-crafted features against signals whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.pipelines.signal.features import (
    BANDS,
    CHANNEL_FEATURES,
    FEATURE_NAMES,
    compute_features,
    feature_names,
    spectral_features,
    time_domain_features,
    welch_psd,
    window_spectrum,
)

SFREQ = 256.0
N_TIMES = 2560  # 10 s
T = np.arange(N_TIMES) / SFREQ


def _column(name: str) -> int:
    return CHANNEL_FEATURES.index(name)


def test_names_are_fixed_and_channel_major():
    assert CHANNEL_FEATURES == (
        "mean",
        "std",
        "skewness",
        "kurtosis",
        "line_length",
        "hjorth_mobility",
        "hjorth_complexity",
        "rel_delta",
        "rel_theta",
        "rel_alpha",
        "rel_beta",
        "rel_gamma",
        "spectral_entropy",
    )
    assert [b[1:] for b in BANDS] == [(0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 70.0)]
    assert len(FEATURE_NAMES) == 19 * 13
    assert FEATURE_NAMES[:2] == ("Fp1.mean", "Fp1.std") and FEATURE_NAMES[-1] == "O2.spectral_entropy"
    assert feature_names(["A", "B"])[13] == "B.mean"


def test_vector_layout_matches_names():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((19, N_TIMES)) + np.arange(19)[:, None]  # channel c has mean c
    vector = compute_features(x)
    assert vector.dtype == np.float32 and vector.shape == (len(FEATURE_NAMES),)
    for c, ch in enumerate(CANONICAL_CHANNELS):
        assert vector[FEATURE_NAMES.index(f"{ch}.mean")] == pytest.approx(c, abs=0.1)


def test_sine_has_closed_form_statistics():
    amplitude, freq = 30.0, 10.0
    x = (5.0 + amplitude * np.sin(2 * np.pi * freq * T))[None]
    f = time_domain_features(x, SFREQ)[0]
    assert f[_column("mean")] == pytest.approx(5.0, abs=1e-9)
    assert f[_column("std")] == pytest.approx(amplitude / np.sqrt(2), rel=1e-6)
    assert f[_column("skewness")] == pytest.approx(0.0, abs=1e-6)
    assert f[_column("kurtosis")] == pytest.approx(-1.5, abs=1e-6)  # sine: 1.5 - 3
    assert f[_column("line_length")] == pytest.approx(4 * amplitude * freq, rel=0.01)  # mean |x'|
    assert f[_column("hjorth_mobility")] == pytest.approx(2 * np.pi * freq, rel=0.01)
    assert f[_column("hjorth_complexity")] == pytest.approx(1.0, abs=0.01)
    s = spectral_features(x, SFREQ)[0]
    assert s[2] > 0.99  # alpha holds the power
    assert s[:5].sum() == pytest.approx(1.0)
    # A tone on a bin centre fills the Hann main lobe: powers 1/6, 2/3, 1/6 over the 139 bins
    # of 0.5-70 Hz at 0.5 Hz spacing.
    lobe = np.array([1 / 6, 2 / 3, 1 / 6])
    assert s[5] == pytest.approx(-(lobe * np.log(lobe)).sum() / np.log(139), rel=1e-3)


def test_gaussian_noise_statistics_and_entropy():
    rng = np.random.default_rng(1)
    x = 10 * rng.standard_normal((4, 100 * N_TIMES))
    f = time_domain_features(x, SFREQ)
    np.testing.assert_allclose(f[:, _column("skewness")], 0, atol=0.02)
    np.testing.assert_allclose(f[:, _column("kurtosis")], 0, atol=0.05)
    s = spectral_features(x, SFREQ)
    assert np.all(s[:, 5] > 0.98)  # white noise: maximal entropy
    # White noise power is proportional to bandwidth: gamma (40 Hz wide) / total (69.5 Hz).
    np.testing.assert_allclose(s[:, 4], 40 / 69.5, atol=0.02)


def test_flat_channel_gives_finite_neutral_features():
    x = np.zeros((2, N_TIMES))
    x[1] = 7.0
    vector = compute_features(x)
    assert np.all(np.isfinite(vector))
    per_channel = vector.reshape(2, -1)
    assert per_channel[1, _column("mean")] == 7.0
    assert np.all(per_channel[:, _column("std") : _column("rel_delta")] == 0)
    np.testing.assert_allclose(per_channel[:, _column("rel_delta") : _column("spectral_entropy")], 0.2)


def test_welch_matches_scipy():
    rng = np.random.default_rng(2)
    for n_times in (300, 1280, 1001, 2560):
        x = rng.standard_normal((3, n_times))
        freqs, psd = welch_psd(x, SFREQ)
        ref_freqs, ref_psd = welch(x, SFREQ, nperseg=min(n_times, 512))
        np.testing.assert_array_equal(freqs, ref_freqs)
        np.testing.assert_allclose(psd, ref_psd, rtol=1e-10, atol=1e-14)


def test_welch_segment_cap_spreads_over_the_recording():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 60 * 256))
    x[0, 45 * 256 :] += 5 * np.sin(2 * np.pi * 30 * np.arange(15 * 256) / SFREQ)  # last 15 s only
    freqs, full = welch_psd(x, SFREQ)
    _, capped = welch_psd(x, SFREQ, max_segments=4)
    _, uncapped = welch_psd(x, SFREQ, max_segments=1000)
    np.testing.assert_array_equal(uncapped, full)
    tone = np.argmin(np.abs(freqs - 30))
    assert capped[0, tone] > 10 * np.median(capped[0])  # the last segment is among the four


def test_welch_psd_in_float32_is_the_float64_psd_to_float32_rounding():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 60 * 256)) * 20
    _, exact = welch_psd(x, SFREQ, 4.0, max_segments=8)
    freqs, rounded = welch_psd(x.astype(np.float32), SFREQ, 4.0, max_segments=8, dtype=np.float32)
    assert rounded.dtype == np.float32 and rounded.shape == exact.shape == (3, freqs.size)
    np.testing.assert_allclose(rounded, exact, rtol=1e-4)
    with pytest.raises(ValueError, match="dtype: expected numpy.float32 or numpy.float64"):
        welch_psd(x, SFREQ, dtype=np.float16)


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"data: expected shape \(n_chans, n_times\)"):
        compute_features(np.zeros(100))
    with pytest.raises(ValueError, match="sfreq: expected a finite rate > 0 Hz; got -1"):
        compute_features(np.zeros((2, 100)), -1)


def _eeg_like(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """1/f noise plus a 10 Hz rhythm: a steep spectrum, like filtered EEG."""
    spectrum = rng.standard_normal(shape[:-1] + (shape[-1] // 2 + 1,)) * 1j
    spectrum += rng.standard_normal(spectrum.shape)
    freqs = np.fft.rfftfreq(shape[-1], 1 / SFREQ)
    spectrum /= np.maximum(freqs, 0.5)
    x = np.fft.irfft(spectrum, n=shape[-1]) * 200
    return x + 10 * np.sin(2 * np.pi * 10 * np.arange(shape[-1]) / SFREQ)


def test_window_spectrum_float32_matches_float64_welch():
    rng = np.random.default_rng(4)
    x = _eeg_like(rng, (19, N_TIMES)).astype(np.float32)
    x[3] += 40.0  # a DC offset of a few times the signal
    spectrum = window_spectrum(x, SFREQ)
    assert spectrum.psd.dtype == np.float32 and spectrum.n_times == N_TIMES
    freqs, reference = welch_psd(x, SFREQ)  # float64
    np.testing.assert_array_equal(spectrum.freqs, freqs)
    # float32 rounding: relative 1e-6 of each channel's total power, in every bin
    total = reference.sum(axis=1, keepdims=True)
    assert np.all(np.abs(spectrum.psd - reference) <= 1e-6 * total)
    np.testing.assert_allclose(spectrum.psd[:, 1:140], reference[:, 1:140], rtol=1e-4)
    # float64 input (or dtype=float64) is the float64 estimate
    np.testing.assert_allclose(window_spectrum(x, SFREQ, dtype=np.float64).psd, reference, rtol=1e-12)


def test_window_spectrum_large_offsets_flat_channels_and_batches():
    rng = np.random.default_rng(5)
    x = _eeg_like(rng, (3, 19, N_TIMES)).astype(np.float32)
    x[0, 2] += 1e5  # mean far above the signal: the means are removed before the transform
    x[1, 4] = 7.0  # constant: exactly zero power
    x[2, 5, 100:200] = np.nan  # read as zero
    batch = window_spectrum(x, SFREQ)
    assert batch.psd.shape == (3, 19, 257)
    for i in range(3):  # each channel's PSD depends on that channel alone
        np.testing.assert_array_equal(batch.psd[i], window_spectrum(x[i], SFREQ).psd)
    assert np.all(batch.psd[1, 4] == 0)
    _, reference = welch_psd(x[0], SFREQ)
    np.testing.assert_allclose(batch.psd[0, 2, 1:140], reference[2, 1:140], rtol=1e-3)
    zeroed = np.where(np.isfinite(x[2]), x[2], 0.0).astype(np.float32)
    np.testing.assert_array_equal(window_spectrum(x[2], SFREQ).psd, window_spectrum(zeroed, SFREQ).psd)
    with pytest.raises(ValueError, match=r"data: expected shape \(n_chans, n_times\) or"):
        window_spectrum(np.zeros(10), SFREQ)
    with pytest.raises(ValueError, match="dtype: expected numpy.float32, numpy.float64 or None"):
        window_spectrum(x[0], SFREQ, dtype=np.float16)


def test_compute_features_reuses_a_window_spectrum():
    rng = np.random.default_rng(8)
    x = _eeg_like(rng, (19, N_TIMES)).astype(np.float32)
    own = compute_features(x, SFREQ)
    shared = compute_features(x, SFREQ, spectrum=window_spectrum(x, SFREQ))
    np.testing.assert_allclose(shared, own, rtol=1e-5, atol=1e-6)  # float32 PSD rounding
    with pytest.raises(ValueError, match="spectrum: expected the PSD of this window"):
        compute_features(x[:3], SFREQ, spectrum=window_spectrum(x, SFREQ))
