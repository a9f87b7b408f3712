"""The measurements of :mod:`pipelines.quality`: sample-level detectors (flat runs, clipping,
electrode pops) and spectral metrics (SNR, muscle ratio, residual mains).

Detectors run on float32 windows as they come: float64 thresholds become the nearest float32 on
the safe side, so every comparison decides as on float64 values. Expensive parts run only after a
cheap test shows they can find something.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from eegfm.core.dsp.bands import band_weights
from eegfm.pipelines.quality.rules import QualityConfig
from eegfm.pipelines.signal.line_noise import LINE_FREQUENCIES, line_windows


def _ge_threshold(threshold: np.ndarray | float, dtype: np.dtype) -> np.ndarray:
    """``t`` such that ``x >= t`` equals ``x >= threshold`` for every ``x`` of ``dtype``."""
    return _float32_threshold(threshold, dtype, np.inf)


def _le_threshold(threshold: np.ndarray | float, dtype: np.dtype) -> np.ndarray:
    """``t`` such that ``x <= t`` equals ``x <= threshold`` for every ``x`` of ``dtype``."""
    return _float32_threshold(threshold, dtype, -np.inf)


def _float32_threshold(threshold: np.ndarray | float, dtype: np.dtype, safe_side: float) -> np.ndarray:
    threshold = np.asarray(threshold, dtype=np.float64)
    if dtype != np.float32:
        return threshold
    t = threshold.astype(np.float32)
    beyond = t < threshold if safe_side > 0 else t > threshold
    return np.where(beyond, np.nextafter(t, np.float32(safe_side)), t)


@lru_cache(maxsize=64)
def _scalar_le_threshold(threshold: float, dtype_char: str) -> np.ndarray:
    return _le_threshold(threshold, np.dtype(dtype_char))  # cached: the flat tolerance of every window


def as_work(x: np.ndarray) -> np.ndarray:
    """float32 and float64 as they are, float16 exactly as float32, anything else as float64."""
    if x.dtype == np.float32 or x.dtype == np.float64:
        return x
    return x.astype(np.float32 if x.dtype == np.float16 else np.float64)


def _has_run(mask: np.ndarray, min_len: int) -> bool:
    """Whether ``mask`` holds ``min_len`` consecutive True along its last axis (a few ANDs)."""
    if min_len > mask.shape[-1]:
        return False
    span = 1  # window[..., t]: mask[..., t : t + span] all True
    window = mask
    while 2 * span <= min_len:
        window = window[..., :-span] & window[..., span:]
        span *= 2
    if span < min_len:
        shift = min_len - span
        window = window[..., : window.shape[-1] - shift] & window[..., shift:]
    return bool(window.any())


def _lagged_abs_diff(x: np.ndarray, lag: int, fill: float) -> np.ndarray:
    """(n_rows, n) C-contiguous: ``|x[:, t + lag] - x[:, t]|`` in columns ``t < n - lag``, ``fill``
    in the last ``lag`` columns. One subtraction over the flattened array: several times faster
    than numpy's 2-D loop over shifted rows, and the fill separates the rows."""
    flat = x.reshape(-1)
    out = np.empty(flat.size, dtype=x.dtype)
    np.subtract(flat[lag:], flat[:-lag], out=out[:-lag])
    out[-lag:] = 0
    np.abs(out, out=out)
    out = out.reshape(x.shape)
    out[:, -lag:] = fill
    return out


def _runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    """Per row, True where ``mask`` is inside a run of at least ``min_len`` consecutive True."""
    n_rows, n = mask.shape
    if not _has_run(mask, min_len):  # the common, clean case: no run can qualify
        return np.zeros(mask.shape, dtype=bool)
    padded = np.zeros((n_rows, n + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    # Row-major order pairs each run's start with its stop.
    rows, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)
    keep = stops - starts >= min_len
    if not keep.any():
        return np.zeros(mask.shape, dtype=bool)
    marks = np.zeros((n_rows, n + 1), dtype=np.int32)
    np.add.at(marks, (rows[keep], starts[keep]), 1)
    np.add.at(marks, (rows[keep], stops[keep]), -1)
    return np.cumsum(marks, axis=1)[:, :n] > 0


def find_flat(x: np.ndarray, sfreq: float, tol_uv: float, min_duration_s: float) -> np.ndarray | None:
    """:func:`flat_mask` of a C-contiguous window, or None when no sample is flat."""
    # small[:, t]: the change from t to t+1 is small; the last column (no next sample) is False,
    # so runs cannot continue from one row into the next and the flattened mask can be searched.
    small = _lagged_abs_diff(x, 1, np.inf) <= _scalar_le_threshold(float(tol_uv), x.dtype.char)
    min_steps = max(1, int(round(min_duration_s * sfreq)) - 1)
    if not _has_run(small.reshape(-1), min_steps):
        return None
    step_runs = _runs(small[:, :-1], min_steps)
    # A run of k small steps covers k + 1 samples.
    mask = np.zeros(x.shape, dtype=bool)
    mask[:, :-1] |= step_runs
    mask[:, 1:] |= step_runs
    return mask


def flat_mask(x: np.ndarray, sfreq: float, tol_uv: float, min_duration_s: float) -> np.ndarray:
    """Samples inside runs of >= min_duration_s where every sample-to-sample change is <= tol_uv."""
    mask = find_flat(np.ascontiguousarray(as_work(np.asarray(x))), sfreq, tol_uv, min_duration_s)
    return np.zeros(np.shape(x), dtype=bool) if mask is None else mask


def find_clipped(
    x: np.ndarray,
    sfreq: float,
    tol_rel: float,
    min_duration_s: float,
    physical_min: np.ndarray | None = None,
    physical_max: np.ndarray | None = None,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
) -> np.ndarray | None:
    """:func:`clip_mask`, or None when no sample is clipped; ``high``/``low``: row max/min of x."""
    if physical_min is not None and physical_max is not None:
        tol = tol_rel * (physical_max - physical_min)
        mask = x >= _ge_threshold(physical_max - tol, x.dtype)[:, None]
        mask |= x <= _le_threshold(physical_min + tol, x.dtype)[:, None]
        return mask if mask.any() else None
    high = (x.max(axis=1) if high is None else high).astype(np.float64)
    low = (x.min(axis=1) if low is None else low).astype(np.float64)
    tol = tol_rel * (high - low)
    n = x.shape[1]
    # Row thresholds repeated along the row: a flat comparison is faster than a broadcast one.
    flat = x.reshape(-1)
    at_extreme = flat >= np.repeat(_ge_threshold(high - tol, x.dtype), n)
    at_extreme |= flat <= np.repeat(_le_threshold(low + tol, x.dtype), n)
    min_len = max(2, int(round(min_duration_s * sfreq)))
    if not _has_run(at_extreme, min_len):  # a screen: a run may cross into the next row
        return None
    at_extreme = at_extreme.reshape(x.shape)
    if not (high > low).all():
        at_extreme &= (high > low)[:, None]
    mask = _runs(at_extreme, min_len)
    return mask if mask.any() else None


def clip_mask(
    x: np.ndarray,
    sfreq: float,
    tol_rel: float,
    min_duration_s: float,
    physical_min: np.ndarray | None = None,
    physical_max: np.ndarray | None = None,
) -> np.ndarray:
    """Clipped samples: at the declared physical range if given, else plateaus at the extremes."""
    x = np.ascontiguousarray(as_work(np.asarray(x)))
    mask = find_clipped(x, sfreq, tol_rel, min_duration_s, physical_min, physical_max)
    return np.zeros(np.shape(x), dtype=bool) if mask is None else mask


def _robust_scale(abs_step: np.ndarray) -> np.ndarray:
    """Robust SD of steps centred on zero, per row: ``max(1.4826 * median |step|, 1e-6)``."""
    return np.maximum(1.4826 * np.median(abs_step, axis=1), 1e-6)


def _pop_lengths(sfreq: float, config: QualityConfig) -> tuple[int, int, int, int]:
    """Samples in a step, the baseline before it, and the early and late spans after it."""
    step, pre, early, late = (int(round(seconds * sfreq)) for seconds in (config.pop_step_s, 0.1, 0.2, 0.3))
    return max(1, step), max(1, pre), early, late


def pop_screen(rows: np.ndarray, sfreq: float, config: QualityConfig) -> np.ndarray | None:
    """Per row (C-contiguous (n_rows, n_times)), whether it has a step of ``pop_min_uv`` and so
    may hold a pop; None when windows are too short for any."""
    k, pre_len, early_len, _ = _pop_lengths(sfreq, config)
    if rows.shape[1] <= k + pre_len + early_len:
        return None
    # float32 steps are within a relative 2**-24 of the float64 ones: screen with a margin.
    margin = 1.0 - 1e-6 if rows.dtype == np.float32 else 1.0
    return _lagged_abs_diff(rows, k, 0.0).max(axis=1) >= config.pop_min_uv * margin


def find_pops(
    x: np.ndarray, sfreq: float, config: QualityConfig, screen: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`detect_pops`, with None for an empty span mask; ``screen``: :func:`pop_screen` of the
    rows of ``x`` if already computed. Other channels' steps are computed only once a channel has a
    candidate; decisions use float64 steps, as if ``x`` were float64."""
    n_chans, n = x.shape
    counts = np.zeros(n_chans, dtype=np.int64)
    k, pre_len, early_len, late_len = _pop_lengths(sfreq, config)
    screen = pop_screen(x, sfreq, config) if screen is None else screen
    if screen is None or not screen.any():
        return counts, None
    maybe = np.flatnonzero(screen)
    # From here on float64 steps, exactly as if x were float64.
    abs_maybe = _lagged_abs_diff(x[maybe].astype(np.float64), k, 0.0)[:, :-k]
    scale_maybe = _robust_scale(abs_maybe)
    z_maybe = abs_maybe / scale_maybe[:, None]
    candidates = (z_maybe >= config.pop_z) & (abs_maybe >= config.pop_min_uv)
    if not candidates.any():
        return counts, None
    # Every channel's steps, to ask whether any *other* channel stepped at the same moment.
    abs_step = np.empty((n_chans, n - k))
    scale = np.empty(n_chans)
    abs_step[maybe], scale[maybe] = abs_maybe, scale_maybe
    rest = np.setdiff1d(np.arange(n_chans), maybe, assume_unique=True)
    if rest.size:
        abs_step[rest] = _lagged_abs_diff(x[rest].astype(np.float64), k, 0.0)[:, :-k]
        scale[rest] = _robust_scale(abs_step[rest])
    spans = np.zeros(x.shape, dtype=bool)
    for row in np.flatnonzero(candidates.any(axis=1)):
        ch = int(maybe[row])
        signal = x[ch].astype(np.float64)
        others = np.arange(n_chans) != ch
        times = np.flatnonzero(candidates[row])
        # one event per cluster of consecutive candidate samples: its largest step
        clusters = np.split(times, np.flatnonzero(np.diff(times) > k) + 1)
        for cluster in clusters:
            t0 = int(cluster[np.argmax(z_maybe[row, cluster])])
            lo, hi = max(0, t0 - k), min(n - k, t0 + k + 1)
            # the largest z of any other channel around the step
            other = (abs_step[others, lo:hi] / scale[others, None]).max() if n_chans > 1 else 0.0
            if other >= config.pop_z / 2.0:
                continue  # several channels step together: movement or reference, not a pop
            if t0 < pre_len or t0 + k + early_len > n:
                continue  # cannot see the baseline or the decay inside this window
            baseline = np.median(signal[t0 - pre_len : t0])
            amplitude = signal[t0 + k] - baseline
            if abs(amplitude) < config.pop_min_uv / 2.0:
                continue  # the "step" only returned towards baseline (end of a ramp or a spike)
            early = (signal[t0 + k : t0 + k + early_len] - baseline).mean() / amplitude
            late_seg = signal[t0 + k + early_len : t0 + k + early_len + late_len] - baseline
            late = late_seg.mean() / amplitude if late_seg.size else early
            if early >= config.pop_persist and late <= early:
                counts[ch] += 1
                spans[ch, t0 : min(n, t0 + k + int(round(0.5 * sfreq)))] = True
    return counts, (spans if counts.any() else None)


def detect_pops(x: np.ndarray, sfreq: float, config: QualityConfig) -> tuple[np.ndarray, np.ndarray]:
    """Electrode pops per channel (:mod:`pipelines.quality` gives the criteria): (counts (n_chans,),
    span mask (n_chans, n_times))."""
    counts, spans = find_pops(np.ascontiguousarray(as_work(np.asarray(x))), sfreq, config)
    return counts, (np.zeros(np.shape(x), dtype=bool) if spans is None else spans)


def _line_bins(freqs: np.ndarray) -> np.ndarray:
    """Bins within 1 Hz of any mains frequency or harmonic."""
    mask = np.zeros(freqs.shape, dtype=bool)
    for base in LINE_FREQUENCIES:
        for harmonic in np.arange(base, freqs[-1] + 1.0, base):
            mask |= np.abs(freqs - harmonic) <= 1.0
    return mask


@dataclasses.dataclass(frozen=True)
class _SpectralPlan:
    weights: np.ndarray  # (n_freqs, 4): signal mean, noise mean, muscle sum, total sum
    nan_columns: tuple[int, ...]  # signal or noise band without bins: the SNR is NaN
    # bin indices of the peak and reference windows of the mains frequencies inside the
    # spectrum, (n_lines, 1 + n_refs, width), grouped by layout; the others read NaN
    line_groups: tuple[np.ndarray, ...]


@lru_cache(maxsize=32)
def _spectral_plan(
    freqs_bytes: bytes, sfreq: float, signal_band: tuple, noise_band: tuple, muscle_band: tuple, total_band: tuple
) -> _SpectralPlan:
    freqs = np.frombuffer(freqs_bytes, dtype=np.float64)
    nyquist = sfreq / 2.0
    line = _line_bins(freqs)
    bands = (
        signal_band,
        noise_band,
        (muscle_band[0], min(muscle_band[1], nyquist + 1e-9)),
        (total_band[0], min(total_band[1], nyquist + 1e-9)),
    )
    weights = band_weights(freqs, bands) * ~line[:, None]
    counts = weights[:, :2].sum(axis=0)
    weights[:, :2] /= np.maximum(1, counts)  # mean densities
    weights.setflags(write=False)
    nan_columns = tuple(col for col in (0, 1) if counts[col] == 0)
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for freq in LINE_FREQUENCIES:
        windows = line_windows(freqs, freq)
        if windows is not None:
            groups.setdefault(windows.shape, []).append(windows)
    return _SpectralPlan(weights, nan_columns, tuple(np.stack(g) for g in groups.values()))


def spectral_metrics(
    freqs: np.ndarray, psd: np.ndarray, sfreq: float, config: QualityConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel SNR (dB), muscle ratio and worst :func:`pipelines.signal.line_noise.line_ratio_db` from
    PSDs (..., n_freqs); callers silence floating-point warnings (empty bands, zero power)."""
    bands = (config.signal_band, config.noise_band, config.muscle_band, config.total_band)
    plan = _spectral_plan(freqs.tobytes(), sfreq, *map(tuple, bands))
    psd = psd.astype(np.float64)
    sums = psd @ plan.weights  # (..., 4)
    for col in plan.nan_columns:
        sums[..., col] = np.nan
    # Every ratio reported in dB: signal over noise, then each mains peak over its reference.
    numerators, denominators = [sums[..., :1]], [sums[..., 1:2]]
    for windows in plan.line_groups:
        maxima = psd[..., windows].max(axis=-1)  # (..., n_lines, 1 + n_refs)
        refs = np.sort(maxima[..., 1:], axis=-1)
        numerators.append(maxima[..., 0])
        denominators.append(median_of_sorted(refs))
    tiny = np.finfo(np.float64).tiny
    numerators = np.concatenate(numerators, axis=-1)
    denominators = np.concatenate(denominators, axis=-1)
    db = 10.0 * np.log10(np.maximum(numerators, tiny) / np.maximum(denominators, tiny))
    snr = db[..., 0]
    muscle_power, total_power = sums[..., 2], sums[..., 3]
    muscle = np.divide(muscle_power, total_power, out=np.zeros(total_power.shape), where=total_power > 0)
    # Worst mains ratio: NaN ratios (frequency outside the spectrum) and infinite ones are NaN.
    if db.shape[-1] > 1:
        line_db = np.where(np.isnan(db[..., 1:]), -np.inf, db[..., 1:]).max(axis=-1)
        line_db[~np.isfinite(line_db)] = np.nan
    else:
        line_db = np.full(snr.shape, np.nan)
    return snr, muscle, line_db


def median_of_sorted(ordered: np.ndarray) -> np.ndarray:
    """Median along the last axis of sorted values, as ``np.median`` computes it."""
    half = ordered.shape[-1] // 2
    if ordered.shape[-1] % 2:
        return ordered[..., half]
    return (ordered[..., half - 1] + ordered[..., half]) / 2.0
