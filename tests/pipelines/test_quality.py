"""Quality metrics on real clean windows and on windows with injected, known artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.core.config import ConfigError
from eegfm.pipelines.filters import filter_data
from eegfm.pipelines.quality import (
    QUALITY_NAMES,
    RULES,
    QualityConfig,
    QualityReport,
    compute_quality,
    validate_window,
)
from eegfm.pipelines.resample import resample

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


# --------------------------------------------------------------------------------------------
# The fast implementation against a plain float64 reference
# --------------------------------------------------------------------------------------------
# compute_quality screens before it searches (runs, pop candidates), works on float32 windows as
# they come and shares one PSD: the reference below is the straightforward float64 computation of
# every definition in the module docstring, with scipy's Welch and filters.line_ratio_db.


def _ref_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    out = np.zeros(mask.shape, dtype=bool)
    for r, row in enumerate(mask):
        start = None
        for t, value in enumerate(list(row) + [False]):
            if value and start is None:
                start = t
            elif not value and start is not None:
                if t - start >= min_len:
                    out[r, start:t] = True
                start = None
    return out


def _ref_pops(x: np.ndarray, sfreq: float, cfg: QualityConfig) -> tuple[np.ndarray, np.ndarray]:
    n_chans, n = x.shape
    counts, spans = np.zeros(n_chans, dtype=int), np.zeros(x.shape, dtype=bool)
    k = max(1, round(cfg.pop_step_s * sfreq))
    pre, early, late = max(1, round(0.1 * sfreq)), round(0.2 * sfreq), round(0.3 * sfreq)
    if n <= k + pre + early:
        return counts, spans
    step = x[:, k:] - x[:, :-k]
    z = np.abs(step) / np.maximum(1.4826 * np.median(np.abs(step), axis=1, keepdims=True), 1e-6)
    candidates = (z >= cfg.pop_z) & (np.abs(step) >= cfg.pop_min_uv)
    for ch in range(n_chans):
        times = np.flatnonzero(candidates[ch])
        clusters = np.split(times, np.flatnonzero(np.diff(times) > k) + 1) if times.size else []
        for cluster in clusters:
            t0 = int(cluster[np.argmax(z[ch, cluster])])
            lo, hi = max(0, t0 - k), min(z.shape[1], t0 + k + 1)
            other = np.delete(z[:, lo:hi], ch, axis=0)
            if (other.max() if other.size else 0.0) >= cfg.pop_z / 2:
                continue
            if t0 < pre or t0 + k + early > n:
                continue
            baseline = np.median(x[ch, t0 - pre:t0])
            amplitude = x[ch, t0 + k] - baseline
            if abs(amplitude) < cfg.pop_min_uv / 2:
                continue
            e = (x[ch, t0 + k:t0 + k + early] - baseline).mean() / amplitude
            late_seg = x[ch, t0 + k + early:t0 + k + early + late] - baseline
            lt = late_seg.mean() / amplitude if late_seg.size else e
            if e >= cfg.pop_persist and lt <= e:
                counts[ch] += 1
                spans[ch, t0:min(n, t0 + k + round(0.5 * sfreq))] = True
    return counts, spans


def _ref_severity(value, threshold: float, direction: str, kind: str) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(all="ignore"):
        if kind == "db":
            excess = value - threshold if direction == "max" else threshold - value
            out = 10.0 ** (np.clip(excess, -300, 300) / 10)
        elif direction == "max":
            out = value / threshold
        else:
            out = np.where(value > 0, threshold / value, np.inf)
    return np.where(np.isnan(value), 0.0, out)


def _reference_quality(data, sfreq=SFREQ, cfg=None, channel_mask=None, unfiltered=None,
                       physical_min=None, physical_max=None) -> dict:
    from scipy.signal import welch

    from eegfm.pipelines.filters import LINE_FREQUENCIES, line_ratio_db

    cfg = cfg or QualityConfig()
    n_chans, n_times = data.shape
    measured = np.ones(n_chans, bool) if channel_mask is None else np.asarray(channel_mask, bool)
    finite = np.isfinite(data)
    x = np.where(finite, data, 0.0).astype(np.float64)
    raw = x
    if unfiltered is not None:
        raw = np.where(np.isfinite(unfiltered), unfiltered, 0.0).astype(np.float64)
    small = np.abs(np.diff(raw, axis=1)) <= cfg.flat_tol_uv
    runs = _ref_runs(small, max(1, round(cfg.flat_min_duration_s * sfreq) - 1))
    flat = np.zeros(x.shape, bool)
    flat[:, :-1] |= runs
    flat[:, 1:] |= runs
    if physical_min is not None:
        pmin = np.broadcast_to(np.asarray(physical_min, float), (n_chans,))[:, None]
        pmax = np.broadcast_to(np.asarray(physical_max, float), (n_chans,))[:, None]
        tol = cfg.clip_tol_rel * (pmax - pmin)
        clipped = (raw >= pmax - tol) | (raw <= pmin + tol)
    else:
        hi, lo = raw.max(axis=1, keepdims=True), raw.min(axis=1, keepdims=True)
        tol = cfg.clip_tol_rel * (hi - lo)
        clipped = _ref_runs(((raw >= hi - tol) | (raw <= lo + tol)) & (hi > lo),
                            max(2, round(cfg.clip_min_duration_s * sfreq)))
    pops, pop_spans = _ref_pops(x, sfreq, cfg)
    excursion = np.abs(x - x.mean(axis=1, keepdims=True)) > cfg.max_abs_uv
    artifact = flat | clipped | pop_spans | excursion | ~finite

    freqs, psd = welch(x, sfreq, nperseg=min(n_times, round(2.0 * sfreq)))
    line = np.zeros(freqs.shape, bool)
    for base in LINE_FREQUENCIES:
        for harmonic in np.arange(base, freqs[-1] + 1.0, base):
            line |= np.abs(freqs - harmonic) <= 1.0

    def band(lo, hi):
        return (freqs >= lo) & (freqs < min(hi, sfreq / 2 + 1e-9)) & ~line

    tiny = np.finfo(float).tiny
    with np.errstate(all="ignore"):
        snr = 10 * np.log10(np.maximum(psd[:, band(*cfg.signal_band)].mean(axis=1), tiny)
                            / np.maximum(psd[:, band(*cfg.noise_band)].mean(axis=1), tiny))
        total = psd[:, band(*cfg.total_band)].sum(axis=1)
        muscle = np.where(total > 0, psd[:, band(*cfg.muscle_band)].sum(axis=1) / total, 0.0)
        line_db = np.stack([line_ratio_db(freqs, psd, f) for f in LINE_FREQUENCIES], axis=1)
    line_db = np.where(np.isnan(line_db), -np.inf, line_db).max(axis=1)
    line_db = np.where(np.isfinite(line_db), line_db, np.nan)
    ptp = x.max(axis=1) - x.min(axis=1)
    channel = {
        "channel_snr_db": snr, "channel_flat_fraction": flat.mean(axis=1),
        "channel_clip_fraction": clipped.mean(axis=1), "channel_ptp_uv": ptp,
        "channel_muscle_ratio": muscle, "channel_line_noise_db": line_db, "channel_pops": pops,
    }
    severity = np.stack([
        _ref_severity(snr, cfg.min_snr_db, "min", "db"),
        _ref_severity(flat.mean(axis=1), cfg.max_flat_fraction, "max", "ratio"),
        _ref_severity(clipped.mean(axis=1), cfg.max_clip_fraction, "max", "ratio"),
        _ref_severity(ptp, cfg.max_ptp_uv, "max", "ratio"),
        _ref_severity(ptp, cfg.min_ptp_uv, "min", "ratio"),
        _ref_severity(muscle, cfg.max_muscle_ratio, "max", "ratio"),
        _ref_severity(line_db, cfg.max_line_noise_db, "max", "db"),
        pops.astype(float),
    ], axis=1)
    channel["channel_score"] = 1 - np.minimum(1, severity / 2).max(axis=1)

    def over_measured(values, fn):
        vals = values[measured]
        vals = vals[~np.isnan(vals)]
        return float(fn(vals)) if vals.size else np.nan

    metrics = {
        "nonfinite_fraction": 1 - finite[measured].mean(),
        "snr_db": over_measured(snr, np.median),
        "flat_fraction": over_measured(flat.mean(axis=1), np.max),
        "clip_fraction": over_measured(clipped.mean(axis=1), np.max),
        "ptp_uv": over_measured(ptp, np.max),
        "ptp_uv_median": over_measured(ptp, np.median),
        "muscle_ratio": over_measured(muscle, np.max),
        "line_noise_db": over_measured(line_db, np.max),
        "pop_channels": float((pops[measured] > 0).sum()),
        "bad_channel_fraction": (channel["channel_score"][measured] <= 0.5).mean(),
        "channel_quality": channel["channel_score"][measured].mean(),
        "artifact_ratio": artifact[measured].mean(),
    }
    flags, penalties = [], []
    for rule, (metric, field, direction, kind) in RULES.items():
        s = float(_ref_severity(metrics[metric], getattr(cfg, field), direction, kind))
        penalties.append(min(1.0, s / 2))
        if s >= 1:
            flags.append(rule)
    metrics["rule_score"] = max(penalties)
    return {**metrics, **channel, "flags": tuple(flags)}


# Spectral metrics (dB and ratios from a float32 PSD) agree to float32 rounding; sample-level
# ones exactly. In dB, a relative rounding error r of a power ratio is 4.3 r: up to 2e-4 dB seen.
_SPECTRAL = {"snr_db", "muscle_ratio", "line_noise_db", "channel_quality", "rule_score",
             "channel_snr_db", "channel_muscle_ratio", "channel_line_noise_db", "channel_score"}


def _assert_matches_reference(report: QualityReport, ref: dict, case: str = "") -> None:
    assert report.flags == ref["flags"], case
    for name, expected in ref.items():
        if name == "flags":
            continue
        actual = getattr(report, name)
        if name in _SPECTRAL:
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-3 if name.endswith("_db") else 1e-4,
                                       err_msg=f"{case}: {name}")
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=f"{case}: {name}")


def _dirty_windows(clean_windows: np.ndarray) -> list[tuple[str, np.ndarray, dict]]:
    """(name, float32 window, compute_quality keyword arguments) with every detector firing."""
    rng = np.random.default_rng(7)
    t = np.arange(N_TIMES) / SFREQ
    base = clean_windows[5].astype(np.float32)
    cases = [("clean", clean_windows[i].astype(np.float32), {}) for i in (0, 9, 17)]
    w = base.copy()
    w[5, 300:812] = w[5, 300]
    w[2, 600:664] = w[2].max() + 30
    cases.append(("flat+clip", w, {"unfiltered": w.copy()}))
    w = base.copy()  # runs of exactly the minimum length, and one sample shorter
    w[8, 1000:1026] = w[8, 1000]  # 26 samples: 25 small steps = flat_min_duration_s
    w[12, 200:225] = w[12, 200]  # 25 samples: too short
    w[10, 700:713] = w[10].max() + 30  # 13 samples = clip_min_duration_s
    w[13, 400:412] = w[13].max() + 30  # 12 samples: too short
    cases.append(("threshold runs", w, {}))
    w = base.copy()
    w[11, 640:] += (150 * np.exp(-(t[640:] - t[640]) / 0.5)).astype(np.float32)
    w[3, 200:] += (-120 * np.exp(-(t[200:] - t[200]) / 0.4)).astype(np.float32)
    cases.append(("pops", w, {"channel_mask": (np.arange(19) != 4).astype(int)}))
    cases.append(("movement", base + (np.arange(N_TIMES) >= 700) * np.float32(90), {}))
    w = base.copy()
    w[0, 100:110] = np.nan
    w[1, 5] = np.inf
    w[7, rng.choice(N_TIMES, 30, replace=False)] = 400.0
    cases.append(("nonfinite+range", w, {"physical_min": -400.0, "physical_max": 400.0}))
    w = base * np.float32(12)
    w[9] = 0.0
    cases.append(("loud+dead", w, {"channel_mask": (np.arange(19) != 9).astype(int)}))
    noise = 10 * np.sin(2 * np.pi * 60 * t) + 30 * rng.standard_normal((19, N_TIMES))
    cases.append(("mains+emg", base + noise.astype(np.float32), {}))
    cases.append(("white", (20 * rng.standard_normal((19, N_TIMES))).astype(np.float32), {}))
    cases.append(("zeros", np.zeros((19, N_TIMES), np.float32), {}))
    return cases


def test_fast_path_matches_the_float64_reference(clean_windows):
    for name, window, kwargs in _dirty_windows(clean_windows):
        ref = _reference_quality(window, **kwargs)
        _assert_matches_reference(compute_quality(window, **kwargs), ref, name)  # float32
        f64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.ndim == 2 else v)
               for k, v in kwargs.items()}
        _assert_matches_reference(compute_quality(window.astype(np.float64), **f64), ref, name)
    assert {"flat", "clipping", "electrode_pop", "non_finite", "high_amplitude", "muscle",
            "line_noise", "low_snr", "low_amplitude"} <= {
        f for _, w, kw in _dirty_windows(clean_windows) for f in compute_quality(w, **kw).flags}


def test_pop_screen_and_odd_configs_match_the_reference(clean_windows):
    t = np.arange(N_TIMES) / SFREQ
    window = clean_windows[2].astype(np.float32)
    window[6, 900:] += (200 * np.exp(-(t[900:] - t[900]) / 0.5)).astype(np.float32)
    for cfg in (QualityConfig(pop_min_uv=0.0), QualityConfig(pop_z=3.0),
                QualityConfig(flat_min_duration_s=0.004, flat_tol_uv=2.0),
                QualityConfig(clip_min_duration_s=0.004, clip_tol_rel=0.05)):
        _assert_matches_reference(compute_quality(window, config=cfg),
                                  _reference_quality(window, cfg=cfg))
    # Pop thresholds around the injected pop's z (about 24.6): the step statistics decide.
    found = []
    for pop_z in (15.0, 18.0, 21.0, 23.0, 24.0, 26.0, 30.0):
        cfg = QualityConfig(pop_z=pop_z)
        report = compute_quality(window, config=cfg)
        expected = _ref_pops(window.astype(float), SFREQ, cfg)[0]
        np.testing.assert_array_equal(report.channel_pops, expected)
        found.append(int(report.channel_pops[6]))
    assert found[0] == 1 and found[-1] == 0
    short = window[:, :200]  # shorter than one Welch segment and the pop look-ahead
    _assert_matches_reference(compute_quality(short), _reference_quality(short))
    one = window[:1]  # a single channel: no "other" channel for the pop test
    _assert_matches_reference(compute_quality(one), _reference_quality(one))


def test_non_contiguous_views_give_the_same_report(clean_windows):
    # process.py passes views into a wider rolling buffer.
    buffer = np.concatenate([clean_windows[3], clean_windows[4]], axis=1).astype(np.float32)
    view = buffer[:, 100:100 + N_TIMES]
    a = compute_quality(view, unfiltered=view)
    b = compute_quality(np.ascontiguousarray(view), unfiltered=np.ascontiguousarray(view))
    np.testing.assert_array_equal(a.vector(), b.vector())


def test_the_spectrum_is_shared_and_can_be_passed_in(window):
    from eegfm.pipelines.features import WindowSpectrum, window_spectrum

    w32 = window.astype(np.float32)
    report = compute_quality(w32)
    assert isinstance(report.spectrum, WindowSpectrum) and report.spectrum.psd.dtype == np.float32
    spectrum = window_spectrum(w32, SFREQ)
    np.testing.assert_array_equal(report.spectrum.psd, spectrum.psd)
    np.testing.assert_array_equal(report.spectrum.freqs, spectrum.freqs)
    again = compute_quality(w32, spectrum=spectrum)
    assert np.shares_memory(again.spectrum.psd, spectrum.psd)  # used, not recomputed
    np.testing.assert_array_equal(again.vector(), report.vector())
    assert report.with_ae_score(0.2).spectrum is report.spectrum
    with pytest.raises(ValueError, match=r"spectrum: expected the spectrum of this window"):
        compute_quality(w32[:, :1000], spectrum=spectrum)
    with pytest.raises(TypeError, match="spectrum: expected a pipelines.features.WindowSpectrum"):
        compute_quality(w32, spectrum=(spectrum.freqs, spectrum.psd))


def test_public_detectors_agree_with_the_report(window):
    from eegfm.pipelines.quality import clip_mask, detect_pops, flat_mask

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


def test_batch_equals_one_window_at_a_time(clean_windows):
    from eegfm.pipelines.features import window_spectrum
    from eegfm.pipelines.quality import compute_quality_batch

    cases = _dirty_windows(clean_windows)
    windows = np.stack([w for _, w, _ in cases])
    masks = np.ones((len(cases), 19), dtype=int)
    masks[3, 4] = masks[5, 9] = 0
    raw = windows.copy()
    raw[1, 4, 200:700] = 3000.0  # a rail plateau in one window's unfiltered data
    kwargs = dict(unfiltered=raw, physical_min=-5000.0, physical_max=5000.0)
    batch = compute_quality_batch(windows, SFREQ, channel_mask=masks, **kwargs)
    given = compute_quality_batch(windows, SFREQ, channel_mask=masks,
                                  spectrum=window_spectrum(windows, SFREQ), **kwargs)
    assert len(batch) == len(given) == len(windows)
    for i, (a, b) in enumerate(zip(batch, given)):
        one = compute_quality(windows[i], SFREQ, channel_mask=masks[i], unfiltered=raw[i],
                              physical_min=-5000.0, physical_max=5000.0)
        assert a.flags == one.flags, cases[i][0]
        np.testing.assert_array_equal(a.vector(), one.vector(), err_msg=cases[i][0])
        for name in ("channel_measured", "channel_flat_fraction", "channel_clip_fraction",
                     "channel_pops", "channel_score", "channel_snr_db"):
            np.testing.assert_array_equal(getattr(a, name), getattr(one, name))
        np.testing.assert_array_equal(a.spectrum.psd, one.spectrum.psd)
        np.testing.assert_allclose(b.vector(), one.vector(), rtol=1e-4, atol=1e-4)
    # One channel mask for every window; errors name the argument.
    same = compute_quality_batch(windows[:2], SFREQ, channel_mask=masks[3])
    assert all(not r.channel_measured[4] for r in same)
    with pytest.raises(ValueError, match=r"windows: expected shape \(n_windows, n_chans,"):
        compute_quality_batch(windows[0], SFREQ)
    with pytest.raises(ValueError, match="channel_mask: expected at least one measured channel"):
        compute_quality_batch(windows[:2], SFREQ, channel_mask=np.zeros((2, 19)))
