"""Notch/band-pass filter designs: configuration, responses, real data, MNE fidelity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import sosfiltfilt, welch

from eegfm.contract.schema import SFREQ
from eegfm.core.config import ConfigError
from eegfm.core.dsp.resample import resample
from eegfm.pipelines.signal.filters import (
    FilterConfig,
    apply_filters,
    bandpass_filter,
    design_filters,
    filter_data,
    notch_filter,
)


def _assert_matches_sosfiltfilt(y: np.ndarray, x: np.ndarray, design) -> None:
    """``y`` is float64 ``sosfiltfilt`` of ``x`` (same odd padding) to 1e-4 of its spread, but in
    the last ``padlen`` samples, where the two extrapolate past the end differently: 1e-2 there."""
    reference = sosfiltfilt(design.sos, x.astype(np.float64) - x[:, :1], axis=1, padlen=design.padlen)
    error = np.abs(y - reference) / reference.std()
    assert error[:, : -design.padlen].max() < 1e-4
    assert error[:, -design.padlen :].max() < 1e-2


def _read(path, prefix: str = "EEG ") -> tuple[np.ndarray, float, list[str]]:
    """EEG channels in uV (eegmat: the 19 'EEG Xx' channels; eegmmi: all 64)."""
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    picks = [n for n in raw.ch_names if n.startswith(prefix) and "A2-A1" not in n]
    return raw.get_data(picks=picks) * 1e6, raw.info["sfreq"], picks


def _pink_noise(rng: np.random.Generator, n_chans: int, n_times: int, scale: float = 10.0) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal((n_chans, n_times)), axis=1)
    freqs = np.fft.rfftfreq(n_times, 1 / SFREQ)
    spectrum[:, 1:] /= np.sqrt(freqs[1:])
    spectrum[:, 0] = 0
    x = np.fft.irfft(spectrum, n=n_times, axis=1)
    return scale * x / x.std()


def _tone_amplitude(x: np.ndarray, freq: float, sfreq: float = SFREQ) -> np.ndarray:
    """Per-channel amplitude of the component at ``freq`` (lock-in projection)."""
    t = np.arange(x.shape[1]) / sfreq
    return 2 * np.abs(x @ np.exp(-2j * np.pi * freq * t)) / x.shape[1]


# ------------------------------------------------------------------ config


def test_config_defaults_and_round_trip():
    config = FilterConfig()
    assert (config.line_freq, config.l_freq, config.h_freq) == ("auto", 0.5, 70.0)
    assert FilterConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"line_freq": 55}, r"line_freq: expected one of 'auto', 50, 60, None; got 55"),
        ({"line_freq": True}, r"line_freq: expected one of 'auto', 50, 60, None; got True"),
        ({"h_freq": 130.0}, r"h_freq: expected a value in \(0, 128\) Hz, below the Nyquist"),
        ({"h_freq": 128}, r"h_freq: .*got 128"),
        ({"l_freq": 40.0, "h_freq": 30.0}, r"l_freq: expected a value below h_freq=30.0; got 40.0"),
        ({"l_freq": 0.0}, r"l_freq: expected a value in \(0.0, 128.0\); got 0.0"),
        ({"order": 0}, r"order: expected an integer in \[1, 8\]; got 0"),
        ({"notch_width_hz": -1}, r"notch_width_hz"),
    ],
)
def test_config_errors_name_field_allowed_and_received(changes, message):
    with pytest.raises(ConfigError, match=message):
        FilterConfig(**changes)


def test_design_rejects_edges_above_the_data_nyquist():
    with pytest.raises(ValueError, match=r"h_freq: expected a value below the Nyquist frequency 50 Hz"):
        design_filters(100.0, FilterConfig(h_freq=70.0), None)


# ------------------------------------------------------------------ design and response


def test_default_design_notches_only_what_the_lowpass_leaves():
    design = design_filters(SFREQ, FilterConfig(), 50)
    assert design.notch_freqs == (50.0,)
    assert design.response_db(np.array([100.0]))[0] < -40  # the low-pass handles the harmonic
    assert design_filters(SFREQ, FilterConfig(h_freq=None), 60).notch_freqs == (60.0, 120.0)
    assert design_filters(SFREQ, FilterConfig(h_freq=110.0), 50).notch_freqs == (50.0, 100.0)
    no_harmonics = FilterConfig(h_freq=None, notch_harmonics=False)
    assert design_filters(SFREQ, no_harmonics, 60).notch_freqs == (60.0,)
    assert design_filters(SFREQ, FilterConfig(), None).notch_freqs == ()


def test_bandpass_response_matches_the_documented_edges():
    design = design_filters(SFREQ, FilterConfig(), None)
    assert (design.l_cutoff, design.h_cutoff) == (0.25, 78.75)
    freqs = np.array([0.1, 0.25, 0.5, 1.0, 10.0, 40.0, 70.0, 78.75, 100.0, 120.0])
    db = dict(zip(freqs.tolist(), design.response_db(freqs)))
    assert db[0.25] == pytest.approx(-6.02, abs=0.05) and db[78.75] == pytest.approx(-6.02, abs=0.05)
    assert db[0.5] > -0.1 and db[1.0] > -0.01 and db[10.0] > -0.01 and db[40.0] > -0.05
    assert -1.5 < db[70.0] < -0.5  # a Butterworth knee is softer than a FIR's
    assert db[0.1] < -60 and db[100.0] < -40 and db[120.0] < -100
    # The filter does what the design says: tones in and out of band.
    t = np.arange(int(60 * SFREQ)) / SFREQ
    tones = (5.0, 20.0, 0.08, 110.0)
    x = np.stack([30 * np.sin(2 * np.pi * f * t) for f in tones])
    y = bandpass_filter(x, SFREQ, 0.5, 70.0)
    inner = slice(int(20 * SFREQ), int(40 * SFREQ))
    gain = [_tone_amplitude(y[i : i + 1, inner], f)[0] / 30 for i, f in enumerate(tones)]
    assert gain[0] == pytest.approx(1, abs=0.01) and gain[1] == pytest.approx(1, abs=0.01)
    assert gain[2] < 1e-3 and gain[3] < 1e-3


def test_lowpass_only_keeps_dc_offset_and_highpass_removes_it():
    x = np.full((2, 2048), 5000.0) + _pink_noise(np.random.default_rng(0), 2, 2048)
    lowpassed = apply_filters(x, design_filters(SFREQ, FilterConfig(l_freq=None), None))
    assert np.abs(lowpassed.mean(axis=1) - x.mean(axis=1)).max() < 0.5
    bandpassed = apply_filters(x, design_filters(SFREQ, FilterConfig(), None))
    assert np.abs(bandpassed[:, 512:-512].mean(axis=1)).max() < 1.0
    assert bandpassed.dtype == np.float32


def test_float32_matches_float64_reference_on_offset_data():
    rng = np.random.default_rng(1)
    x = (20_000.0 + _pink_noise(rng, 4, int(120 * SFREQ))).astype(np.float32)
    design = design_filters(SFREQ, FilterConfig(), 50)
    _assert_matches_sosfiltfilt(apply_filters(x, design), x, design)


# ------------------------------------------------------------------ notch


@pytest.mark.parametrize(("line", "offset_hz"), [(50, 0.0), (60, 0.0), (50, 0.2), (60, -0.15)])
def test_notch_removes_line_power_by_more_than_20_db(line, offset_hz):
    rng = np.random.default_rng(line)
    n_times = int(60 * SFREQ)
    t = np.arange(n_times) / SFREQ
    eeg = _pink_noise(rng, 4, n_times) + 20 * np.sin(2 * np.pi * 10 * t)
    x = eeg + 30 * np.sin(2 * np.pi * (line + offset_hz) * t + 1.0)
    y = notch_filter(x, SFREQ, line)
    inner = slice(int(10 * SFREQ), int(50 * SFREQ))
    before = _tone_amplitude(x[:, inner], line + offset_hz)
    after = _tone_amplitude(y[:, inner], line + offset_hz)
    assert np.all(20 * np.log10(before / after) > 20)
    alpha_kept = _tone_amplitude(y[:, inner], 10.0) / _tone_amplitude(x[:, inner], 10.0)
    np.testing.assert_allclose(alpha_kept, 1.0, atol=0.01)


def test_notch_on_real_60_hz_recording(shared_data):
    x, sfreq, _ = _read(shared_data / "eegmmi" / "S001R03.edf", prefix="")
    x = resample(x, sfreq, SFREQ)
    y = notch_filter(x, SFREQ, 60)
    freqs, before = welch(x, SFREQ, nperseg=1024)
    _, after = welch(y, SFREQ, nperseg=1024)
    line_bin = np.argmin(np.abs(freqs - 60.0))
    reduction_db = 10 * np.log10(before[:, line_bin] / after[:, line_bin])
    assert np.median(reduction_db) > 20


# ------------------------------------------------------------------ MNE fidelity


def test_fidelity_against_mne(shared_data):
    """Our order (resample, notch, band-pass) vs MNE (notch_filter, filter, resample).

    MNE's reference resampling uses ``npad=0``: with its default ``npad='auto'`` MNE's FFT
    resampler shifts a pure 8 Hz sine by about half an output sample (1.95 ms) in the middle of a
    recording, which alone caps the correlation near 0.99; without padding its FFT resampler is
    exact for this length (91000 * 256 / 500 samples is an integer) and an independent check.
    """
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([n for n in raw.ch_names if n.startswith("EEG ") and "A2-A1" not in n])
    assert len(raw.ch_names) == 19
    x = raw.get_data() * 1e6
    ours, design = filter_data(
        resample(x, raw.info["sfreq"], SFREQ), SFREQ, FilterConfig(line_freq=50, l_freq=0.5, h_freq=70.0)
    )
    assert design.notch_freqs == (50.0,)
    theirs = (
        raw.copy()
        .notch_filter(50.0, verbose="error")
        .filter(0.5, 70.0, verbose="error")
        .resample(SFREQ, npad=0, verbose="error")
        .get_data()
        * 1e6
    )
    assert ours.shape == theirs.shape
    start = ours.shape[1] // 2 - int(5 * SFREQ)
    window = slice(start, start + int(10 * SFREQ))
    corr = [np.corrcoef(ours[c, window], theirs[c, window])[0, 1] for c in range(19)]
    print(f"worst per-channel correlation vs MNE: {min(corr):.5f}")
    assert min(corr) >= 0.99
    rms = np.sqrt(np.mean((ours[:, window] - theirs[:, window]) ** 2) / np.mean(theirs[:, window] ** 2))
    assert rms < 0.05


def test_designs_are_computed_once_per_configuration():
    a = design_filters(SFREQ, FilterConfig(h_freq=60.0), 50)
    assert design_filters(SFREQ, FilterConfig(h_freq=60.0), 50) is a
    assert design_filters(SFREQ, FilterConfig(h_freq=61.0), 50) is not a
    assert design_filters(SFREQ, FilterConfig(h_freq=60.0), 60) is not a
