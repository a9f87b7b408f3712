"""Sample-level and spectral detectors on real windows with injected, known artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from eegfm.pipelines.quality import QualityConfig, clip_mask, compute_quality, detect_pops, flat_mask, validate_window
from tests.pipelines.quality.conftest import N_TIMES, SFREQ, T3


def test_flat_segment_fraction_matches_injection(window, clean_windows):
    flat_samples = 512  # 2 s of a 5 s window
    window[5, 300 : 300 + flat_samples] = window[5, 300]
    report = compute_quality(window)
    assert abs(report.channel_flat_fraction[5] - flat_samples / N_TIMES) <= 2 / N_TIMES
    assert report.flat_fraction == report.channel_flat_fraction[5]
    assert report.channel_score[5] <= 0.5 and "flat" in report.flags
    keep, reasons = validate_window(report)
    assert not keep
    assert any(r.startswith("flat: flat_fraction=0.4") and "max_flat_fraction=0.2" in r for r in reasons)
    # A short flat run (under flat_min_duration_s) is not flat.
    short = compute_quality(np.where(np.arange(N_TIMES) < 10, 0.0, clean_windows[3]))
    assert short.channel_flat_fraction.max() < 20 / N_TIMES


def test_clipping_plateau_at_the_extreme(window):
    level = window[2].max() + 30.0
    window[2, 600:664] = level  # 250 ms at the rail
    report = compute_quality(window)
    assert report.channel_clip_fraction[2] == pytest.approx(64 / N_TIMES)
    assert report.clip_fraction == pytest.approx(64 / N_TIMES)
    assert "clipping" in report.flags
    assert any("clip_fraction=0.05 >= max_clip_fraction=0.01" in r for r in validate_window(report)[1])


def test_clipping_at_declared_physical_range(window):
    rng = np.random.default_rng(0)
    idx = rng.choice(N_TIMES, 30, replace=False)
    window[7, idx[:15]] = 400.0
    window[7, idx[15:]] = -400.0
    with_range = compute_quality(window, physical_min=-400.0, physical_max=400.0)
    assert with_range.channel_clip_fraction[7] == pytest.approx(30 / N_TIMES)
    assert with_range.channel_clip_fraction[np.arange(19) != 7].max() == 0
    # Without the declared range isolated samples are not a plateau.
    assert compute_quality(window).channel_clip_fraction[7] == 0


def test_unfiltered_window_is_used_for_plateaus(window):
    raw = window.copy()
    raw[4, 200:700] = 3000.0  # a rail plateau that a high-pass would bend
    report = compute_quality(window, unfiltered=raw)
    assert report.channel_flat_fraction[4] == pytest.approx(500 / N_TIMES, abs=2 / N_TIMES)
    assert report.channel_clip_fraction[4] == pytest.approx(500 / N_TIMES)


def test_peak_to_peak_and_snr_on_known_signals():
    rng = np.random.default_rng(1)
    t = np.arange(N_TIMES) / SFREQ
    sine = 40 * np.sin(2 * np.pi * 10 * t)
    x = np.tile(sine, (19, 1)) + 0.01 * rng.standard_normal((19, N_TIMES))
    report = compute_quality(x)
    assert report.ptp_uv == pytest.approx(80, abs=0.5) and report.ptp_uv_median == pytest.approx(80, abs=0.5)
    assert report.snr_db > 40
    white = compute_quality(20 * rng.standard_normal((19, N_TIMES)))
    assert abs(white.snr_db) < 1.0  # equal densities in both bands
    assert "low_snr" in white.flags and "muscle" in white.flags  # white noise is mostly > 20 Hz


def test_muscle_burst_on_temporal_channel(window):
    rng = np.random.default_rng(2)
    sos = butter(4, [20, 70], "bandpass", fs=SFREQ, output="sos")
    emg = sosfiltfilt(sos, rng.standard_normal(N_TIMES))
    window[T3] += 40 * emg / emg.std()
    report = compute_quality(window)
    assert report.channel_muscle_ratio[T3] > 0.8
    assert np.median(report.channel_muscle_ratio) < 0.3
    assert report.muscle_ratio == report.channel_muscle_ratio[T3]
    assert "muscle" in report.flags and report.channel_score[T3] < 0.5
    assert validate_window(report)[0]  # scored, not rejected by default


def test_line_noise_is_measured_and_kept(window):
    t = np.arange(N_TIMES) / SFREQ
    window += 10 * np.sin(2 * np.pi * 60 * t)
    report = compute_quality(window)
    assert report.line_noise_db > 15 and "line_noise" in report.flags
    assert validate_window(report)[0]


def test_electrode_pop_on_one_channel(window):
    t = np.arange(N_TIMES) / SFREQ
    t0 = 640
    pop = np.zeros(N_TIMES)
    pop[t0:] = 150 * np.exp(-(t[t0:] - t[t0]) / 0.5)
    popped = window.copy()
    popped[11] += pop
    report = compute_quality(popped)
    assert report.pop_channels == 1 and report.channel_pops[11] == 1
    assert "electrode_pop" in report.flags and report.channel_score[11] <= 0.5
    assert report.artifact_ratio > 0
    # The same step on every channel is a movement/reference event, not an electrode pop.
    assert compute_quality(window + pop).pop_channels == 0
    # A brief biphasic spike returns to baseline: not a pop.
    spike = np.zeros(N_TIMES)
    spike[t0 : t0 + 5] = 150
    spike[t0 + 5 : t0 + 12] = -60
    assert compute_quality(window + spike * (np.arange(19) == 11)[:, None]).pop_channels == 0


def test_non_finite_samples_reject_the_window(window):
    window[0, 100:110] = np.nan
    window[1, 5] = np.inf
    report = compute_quality(window)
    assert report.nonfinite_fraction == pytest.approx(11 / (19 * N_TIMES))
    assert np.isfinite(report.vector()).all()
    keep, reasons = validate_window(report)
    assert not keep and reasons[0].startswith("non_finite: nonfinite_fraction=")


def test_interpolated_channels_are_left_out(window):
    window[9] = 0.0  # an all-zero channel the harmonizer filled in
    mask = np.ones(19, dtype=int)
    assert compute_quality(window).flat_fraction == 1.0
    mask[9] = 0
    report = compute_quality(window, channel_mask=mask)
    assert report.flat_fraction == 0.0 and report.bad_channel_fraction == 0.0
    assert report.channel_flat_fraction[9] == 1.0  # still reported per channel
    with pytest.raises(ValueError, match="channel_mask: expected 19 entries; got 3"):
        compute_quality(window, channel_mask=[1, 1, 1])


def test_public_detectors_agree_with_the_report(window):
    w = window.astype(np.float32)
    w[5, 300:500] = w[5, 300]
    w[2, 600:664] = w[2].max() + 30
    t = np.arange(N_TIMES) / SFREQ
    w[11, 640:] += (150 * np.exp(-(t[640:] - t[640]) / 0.5)).astype(np.float32)
    cfg = QualityConfig()
    report = compute_quality(w)
    for x in (w, w.astype(np.float64)):
        flat = flat_mask(x, SFREQ, cfg.flat_tol_uv, cfg.flat_min_duration_s)
        clipped = clip_mask(x, SFREQ, cfg.clip_tol_rel, cfg.clip_min_duration_s)
        counts, spans = detect_pops(x, SFREQ, cfg)
        assert flat.shape == clipped.shape == spans.shape == w.shape
        np.testing.assert_array_equal(flat.mean(axis=1), report.channel_flat_fraction)
        np.testing.assert_array_equal(clipped.mean(axis=1), report.channel_clip_fraction)
        np.testing.assert_array_equal(counts, report.channel_pops)
    assert report.channel_pops[11] == 1
    np.testing.assert_array_equal(spans.any(axis=1), counts > 0)
