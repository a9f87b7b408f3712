"""Quality metrics on real clean windows and on windows with injected, known artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from pipelines.channels import CANONICAL_CHANNELS
from pipelines.config import ConfigError
from pipelines.filters import filter_data
from pipelines.quality import (
    QUALITY_NAMES,
    RULES,
    QualityConfig,
    QualityReport,
    compute_quality,
    validate_window,
)
from pipelines.resample import resample

SFREQ = 256.0
N_TIMES = 1280  # 5 s windows
T3 = CANONICAL_CHANNELS.index("T3")


@pytest.fixture(scope="module")
def clean_windows(shared_data) -> np.ndarray:
    """5 s windows of eegmat Subject00_1 (resting EEG) through resample + filter, canonical order."""
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True,
                              verbose="error")
    x = raw.get_data(picks=[f"EEG {name}" for name in CANONICAL_CHANNELS]) * 1e6
    y, _ = filter_data(resample(x, raw.info["sfreq"]), SFREQ)
    n = y.shape[1] // N_TIMES
    return y[:, : n * N_TIMES].reshape(19, n, N_TIMES).transpose(1, 0, 2).copy()


@pytest.fixture()
def window(clean_windows) -> np.ndarray:
    return clean_windows[3].astype(np.float64).copy()


def test_quality_names_are_the_pinned_contract():
    # The manifest records these names and the TFRecord `quality` vector follows this order:
    # changing them is a data-contract change.
    assert QUALITY_NAMES == (
        "nonfinite_fraction", "snr_db", "flat_fraction", "clip_fraction", "ptp_uv",
        "ptp_uv_median", "muscle_ratio", "line_noise_db", "pop_channels",
        "bad_channel_fraction", "channel_quality", "artifact_ratio", "rule_score",
    )


def test_vector_follows_names(window):
    report = compute_quality(window)
    vector = report.vector()
    assert vector.dtype == np.float32 and vector.shape == (len(QUALITY_NAMES),)
    for i, name in enumerate(QUALITY_NAMES):
        assert vector[i] == np.float32(getattr(report, name))
    assert list(report.as_dict()) == list(QUALITY_NAMES)


def test_clean_real_windows_are_kept(clean_windows):
    reports = [compute_quality(w) for w in clean_windows]
    assert all(validate_window(r)[0] for r in reports)
    assert all(r.flat_fraction == 0 and r.clip_fraction == 0 for r in reports)
    assert all(r.nonfinite_fraction == 0 for r in reports)
    assert np.median([r.snr_db for r in reports]) > 10
    assert np.median([r.rule_score for r in reports]) < 0.3
    assert np.median([r.channel_quality for r in reports]) > 0.8
    for r in reports:
        assert 0 <= r.artifact_score <= 1 and np.all((r.channel_score >= 0) & (r.channel_score <= 1))


def test_flat_segment_fraction_matches_injection(window, clean_windows):
    flat_samples = 512  # 2 s of a 5 s window
    window[5, 300:300 + flat_samples] = window[5, 300]
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
    spike[t0:t0 + 5] = 150
    spike[t0 + 5:t0 + 12] = -60
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


def test_rule_score_reaches_half_exactly_when_a_rule_fires(clean_windows):
    rng = np.random.default_rng(3)
    reports = [compute_quality(w) for w in clean_windows[:12]]
    reports.append(compute_quality(clean_windows[0] * 8))  # high amplitude
    reports.append(compute_quality(20 * rng.standard_normal((19, N_TIMES))))
    reports.append(compute_quality(np.zeros((19, N_TIMES))))
    assert any(r.flags for r in reports) and any(not r.flags for r in reports)
    for r in reports:
        assert (r.rule_score >= 0.5) == bool(r.flags)
        assert 0.0 <= r.rule_score <= 1.0
        measured_bad = r.channel_score[r.channel_measured] <= 0.5
        assert r.bad_channel_fraction == pytest.approx(measured_bad.mean())


def test_high_amplitude_reason_names_metric_threshold_and_value(window):
    report = compute_quality(window * 20)
    keep, reasons = validate_window(report)
    assert not keep
    reason = next(r for r in reasons if r.startswith("high_amplitude"))
    assert f"ptp_uv={report.ptp_uv:.4g}" in reason and "max_ptp_uv=1000" in reason


def test_learned_score_combines_by_maximum(window):
    report = compute_quality(window)
    combined = report.with_ae_score(0.93)
    assert combined.artifact_score == 0.93 and combined.ae_score == 0.93
    assert report.with_ae_score(0.0).artifact_score == report.rule_score
    keep, reasons = validate_window(combined, QualityConfig(max_artifact_score=0.9))
    assert not keep and reasons == ["artifact_score: artifact_score=0.93 > max_artifact_score=0.9"]
    with pytest.raises(ValueError, match=r"ae_score: expected a value in \[0, 1\]; got 1.5"):
        report.with_ae_score(1.5)


def test_config_validation_and_round_trip():
    config = QualityConfig(reject_on=["flat", "muscle"])
    assert config.reject_on == ("flat", "muscle")
    assert QualityConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"reject_on: expected names from non_finite, .*got unknown 'blink'"):
        QualityConfig(reject_on=("blink",))
    with pytest.raises(ConfigError, match=r"noise_band: expected low < high; got \(70.0, 30.0\)"):
        QualityConfig(noise_band=(70.0, 30.0))
    with pytest.raises(ConfigError, match=r"max_ptp_uv: expected a value in \(0.0, inf\]; got -1"):
        QualityConfig(max_ptp_uv=-1)
    assert set(QualityConfig().reject_on) <= set(RULES)


def test_report_is_a_frozen_dataclass(window):
    report = compute_quality(window)
    assert isinstance(report, QualityReport)
    with pytest.raises(AttributeError):
        report.rule_score = 0.0  # type: ignore[misc]
