"""compute_quality on real windows, against a plain float64 reference, and in batches."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from eegfm.pipelines.quality import (
    RULES,
    QualityConfig,
    QualityReport,
    compute_quality,
    compute_quality_batch,
    validate_window,
)
from eegfm.pipelines.quality.physiology import rhythmic_field
from eegfm.pipelines.signal.features import window_spectrum
from eegfm.pipelines.signal.filters import LINE_FREQUENCIES, line_ratio_db
from tests.pipelines.quality.conftest import N_TIMES, SFREQ


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
            baseline = np.median(x[ch, t0 - pre : t0])
            amplitude = x[ch, t0 + k] - baseline
            if abs(amplitude) < cfg.pop_min_uv / 2:
                continue
            e = (x[ch, t0 + k : t0 + k + early] - baseline).mean() / amplitude
            late_seg = x[ch, t0 + k + early : t0 + k + early + late] - baseline
            lt = late_seg.mean() / amplitude if late_seg.size else e
            if e >= cfg.pop_persist and lt <= e:
                counts[ch] += 1
                spans[ch, t0 : min(n, t0 + k + round(0.5 * sfreq))] = True
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


def _reference_quality(
    data, sfreq=SFREQ, cfg=None, channel_mask=None, unfiltered=None, physical_min=None, physical_max=None
) -> dict:
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
        clipped = _ref_runs(
            ((raw >= hi - tol) | (raw <= lo + tol)) & (hi > lo), max(2, round(cfg.clip_min_duration_s * sfreq))
        )
    pops, pop_spans = _ref_pops(x, sfreq, cfg)
    # rhythmic activity with a field (tests/pipelines/quality/test_physiology.py checks the detector)
    ptp = x.max(axis=1) - x.min(axis=1)
    rhythmic = rhythmic_field(
        x[None],
        sfreq,
        measured[None],
        cfg.field_min_correlation,
        cfg.rhythm_min_autocorrelation,
        cfg.rhythm_lags_s,
        candidates=ptp[None] >= cfg.rhythm_test_min_ptp_uv,
    )[0]
    excursion = (np.abs(x - x.mean(axis=1, keepdims=True)) > cfg.max_abs_uv) & ~rhythmic[:, None]
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
        snr = 10 * np.log10(
            np.maximum(psd[:, band(*cfg.signal_band)].mean(axis=1), tiny)
            / np.maximum(psd[:, band(*cfg.noise_band)].mean(axis=1), tiny)
        )
        total = psd[:, band(*cfg.total_band)].sum(axis=1)
        muscle = np.where(total > 0, psd[:, band(*cfg.muscle_band)].sum(axis=1) / total, 0.0)
        line_db = np.stack([line_ratio_db(freqs, psd, f) for f in LINE_FREQUENCIES], axis=1)
    line_db = np.where(np.isnan(line_db), -np.inf, line_db).max(axis=1)
    line_db = np.where(np.isfinite(line_db), line_db, np.nan)
    ptp = x.max(axis=1) - x.min(axis=1)
    channel = {
        "channel_snr_db": snr,
        "channel_flat_fraction": flat.mean(axis=1),
        "channel_clip_fraction": clipped.mean(axis=1),
        "channel_ptp_uv": ptp,
        "channel_muscle_ratio": muscle,
        "channel_line_noise_db": line_db,
        "channel_pops": pops,
        "channel_rhythmic_field": rhythmic,
    }
    severity = np.stack(
        [
            _ref_severity(snr, cfg.min_snr_db, "min", "db"),
            _ref_severity(flat.mean(axis=1), cfg.max_flat_fraction, "max", "ratio"),
            _ref_severity(clipped.mean(axis=1), cfg.max_clip_fraction, "max", "ratio"),
            np.where(rhythmic, 0.0, _ref_severity(ptp, cfg.max_ptp_uv, "max", "ratio")),
            _ref_severity(ptp, cfg.min_ptp_uv, "min", "ratio"),
            _ref_severity(muscle, cfg.max_muscle_ratio, "max", "ratio"),
            _ref_severity(line_db, cfg.max_line_noise_db, "max", "db"),
            pops.astype(float),
        ],
        axis=1,
    )
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
        "artifact_ptp_uv": float(ptp[measured & ~rhythmic].max(initial=0.0)),
        "rhythmic_ptp_uv": float(ptp[measured & rhythmic].max(initial=0.0)),
    }
    # local rules weigh by the share of measured channels crossing their threshold
    crossing = {
        "muscle": muscle >= cfg.max_muscle_ratio,
        "line_noise": np.nan_to_num(line_db, nan=-np.inf) >= cfg.max_line_noise_db,
        "electrode_pop": pops >= 1,
        "high_amplitude": (ptp >= cfg.max_ptp_uv) & ~rhythmic,
    }
    flags, penalties = [], []
    for rule, (metric, field, direction, kind) in RULES.items():
        s = float(_ref_severity(metrics[metric], getattr(cfg, field), direction, kind))
        extent = (crossing[rule] & measured).sum() / measured.sum() if rule in crossing else 1.0
        penalties.append(min(1.0, s / 2) * min(1.0, extent / cfg.full_extent_fraction))
        if s >= 1:
            flags.append(rule)
    if metrics["rhythmic_ptp_uv"] >= cfg.rhythmic_min_ptp_uv:
        flags.append("rhythmic_high_amplitude")
    metrics["rule_score"] = max(penalties)
    return {**metrics, **channel, "flags": tuple(flags)}


# Spectral metrics (dB and ratios from a float32 PSD) agree to float32 rounding; sample-level
# ones exactly. In dB, a relative rounding error r of a power ratio is 4.3 r: up to 2e-4 dB seen.


_SPECTRAL = {
    "snr_db",
    "muscle_ratio",
    "line_noise_db",
    "channel_quality",
    "rule_score",
    "channel_snr_db",
    "channel_muscle_ratio",
    "channel_line_noise_db",
    "channel_score",
}


def _assert_matches_reference(report: QualityReport, ref: dict, case: str = "") -> None:
    assert report.flags == ref["flags"], case
    for name, expected in ref.items():
        if name == "flags":
            continue
        actual = getattr(report, name)
        if name in _SPECTRAL:
            np.testing.assert_allclose(
                actual, expected, rtol=1e-4, atol=1e-3 if name.endswith("_db") else 1e-4, err_msg=f"{case}: {name}"
            )
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
        f64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.ndim == 2 else v) for k, v in kwargs.items()}
        _assert_matches_reference(compute_quality(window.astype(np.float64), **f64), ref, name)
    assert {
        "flat",
        "clipping",
        "electrode_pop",
        "non_finite",
        "high_amplitude",
        "muscle",
        "line_noise",
        "low_snr",
        "low_amplitude",
    } <= {f for _, w, kw in _dirty_windows(clean_windows) for f in compute_quality(w, **kw).flags}


def test_pop_screen_and_odd_configs_match_the_reference(clean_windows):
    t = np.arange(N_TIMES) / SFREQ
    window = clean_windows[2].astype(np.float32)
    window[6, 900:] += (200 * np.exp(-(t[900:] - t[900]) / 0.5)).astype(np.float32)
    for cfg in (
        QualityConfig(pop_min_uv=0.0),
        QualityConfig(pop_z=3.0),
        QualityConfig(flat_min_duration_s=0.004, flat_tol_uv=2.0),
        QualityConfig(clip_min_duration_s=0.004, clip_tol_rel=0.05),
    ):
        _assert_matches_reference(compute_quality(window, config=cfg), _reference_quality(window, cfg=cfg))
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
    view = buffer[:, 100 : 100 + N_TIMES]
    a = compute_quality(view, unfiltered=view)
    b = compute_quality(np.ascontiguousarray(view), unfiltered=np.ascontiguousarray(view))
    np.testing.assert_array_equal(a.vector(), b.vector())


def test_batch_equals_one_window_at_a_time(clean_windows):
    cases = _dirty_windows(clean_windows)
    windows = np.stack([w for _, w, _ in cases])
    masks = np.ones((len(cases), 19), dtype=int)
    masks[3, 4] = masks[5, 9] = 0
    raw = windows.copy()
    raw[1, 4, 200:700] = 3000.0  # a rail plateau in one window's unfiltered data
    kwargs = dict(unfiltered=raw, physical_min=-5000.0, physical_max=5000.0)
    batch = compute_quality_batch(windows, SFREQ, channel_mask=masks, **kwargs)
    given = compute_quality_batch(
        windows, SFREQ, channel_mask=masks, spectrum=window_spectrum(windows, SFREQ), **kwargs
    )
    assert len(batch) == len(given) == len(windows)
    for i, (a, b) in enumerate(zip(batch, given)):
        one = compute_quality(
            windows[i], SFREQ, channel_mask=masks[i], unfiltered=raw[i], physical_min=-5000.0, physical_max=5000.0
        )
        assert a.flags == one.flags, cases[i][0]
        np.testing.assert_array_equal(a.vector(), one.vector(), err_msg=cases[i][0])
        for name in (
            "channel_measured",
            "channel_flat_fraction",
            "channel_clip_fraction",
            "channel_pops",
            "channel_score",
            "channel_snr_db",
        ):
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
