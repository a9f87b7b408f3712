"""Per-window and per-channel signal-quality metrics, rule-based artifact flags and a keep/drop rule.

Input: one window ``data`` (n_chans, n_times) in microvolts after resampling and filtering (19
canonical channels at 256 Hz in the pipeline, but any shape and rate works). Output: a
:class:`QualityReport` with per-channel arrays and the window-level metrics :data:`QUALITY_NAMES`,
whose order is the order of the TFRecord ``quality`` vector (the manifest records the names).

Window-level metrics, in order:

``nonfinite_fraction``
    Fraction of samples (measured channels) that are NaN or infinite; they are zeroed before the
    other metrics are computed.
``snr_db``
    Median over channels of ``10 log10(mean PSD in signal_band / mean PSD in noise_band)``
    (defaults 1-30 Hz vs 30-70 Hz, mains bins excluded). A density ratio: white noise (a loose
    electrode, amplifier noise) reads 0 dB, EMG pushes it down, clean EEG's 1/f spectrum reads
    13-24 dB (1st-99th percentile of eegmat windows). ``noise_band`` must lie inside the
    band-pass, or filtering inflates the ratio.
``flat_fraction``
    Worst channel's fraction of samples inside runs of at least ``flat_min_duration_s`` where the
    sample-to-sample change is at most ``flat_tol_uv`` (disconnected or saturated amplifier).
``clip_fraction``
    Worst channel's fraction of clipped samples: samples within ``clip_tol_rel`` of the declared
    physical range if one is given, else samples in runs of at least ``clip_min_duration_s`` at
    the channel's own extreme value in the window (a plateau at the maximum or minimum). Smooth
    waves never dwell there that long: within 0.1 % of the range a sine at f Hz stays about
    0.02 / f s, so a 50 ms run needs a wave below 0.4 Hz, which the 0.5 Hz high-pass removed.
``ptp_uv``, ``ptp_uv_median``
    Largest and median channel peak-to-peak amplitude (uV).
``muscle_ratio``
    Worst channel's power in ``muscle_band`` (20-100 Hz, capped at Nyquist; mains bins excluded)
    over its power in ``total_band`` (0.5 Hz to Nyquist). EMG is broadband above 20 Hz.
``line_noise_db``
    Worst channel's residual mains ratio: the larger of the 50 and 60 Hz ratios of
    :func:`pipelines.filters.line_ratio_db` (peak vs same-width neighbouring windows; about 0 dB
    when absent, negative after a notch).
``pop_channels``
    Number of channels with an electrode pop: a sudden step (over ``pop_step_s``, at least
    ``pop_min_uv`` and ``pop_z`` robust SDs of that channel's steps) on that channel alone (no other
    channel steps at half that z at the same moment), after which the signal stays displaced (mean
    over the next 0.2 s at least ``pop_persist`` of the step) and relaxes rather than grows (the
    following 0.3 s is no further from baseline). A spike returns within tens of ms; an eye blink
    rises over ~100 ms on both frontal channels; a movement steps on many channels at once.
``bad_channel_fraction``
    Fraction of measured channels whose channel score is at most 0.5 (see below).
``channel_quality``
    Mean channel score over measured channels.
``artifact_ratio``
    Fraction of channel-samples covered by a sample-level detector: flat runs, clipped samples,
    pop spans (step to 0.5 s after) and excursions beyond ``max_abs_uv`` from the channel mean.
``rule_score``
    The largest rule penalty (below), in [0, 1]; 0.5 or more means at least one rule fired.

Scores share one convention. Each metric with a threshold has a *severity*: its value over the
threshold for "higher is worse" metrics, the threshold over the value for "lower is worse" ones, and
for dB metrics the same ratio in power units (``10 ** (excess_dB / 10)``). A rule fires when severity
reaches 1. Its penalty is ``min(1, severity / 2)``: 0 for a perfect value, 0.5 at the threshold, 1 at
twice it. A channel's score is ``1 - max(penalty)`` over its channel metrics (SNR, flat, clip,
high and low amplitude, muscle, mains, pops), so a channel is bad exactly when one of its metrics
reaches its threshold. The window's ``rule_score`` is the largest penalty over the window rules.

:func:`validate_window` keeps a window unless a rule named in ``QualityConfig.reject_on`` fires
(by default the ones that make a window unusable rather than merely noisy: non-finite samples,
a flat or clipped channel, extreme or vanishing amplitude) or the artifact score exceeds
``max_artifact_score``. Muscle, pops, mains, low SNR and many bad channels are scored but kept:
models should see realistic artifacts, and ``artifact_score`` and the ``quality`` vector let
training weight or filter windows later without re-running the pipeline.

Flat and clipping look for plateaus, which a high-pass filter bends into decays, so pass the same
window before notch/band-pass as ``unfiltered`` when plateaus at amplifier rails matter; those two
metrics (and the physical-range check) then use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.config import Config, ConfigError, check_range
from pipelines.features import band_mask, welch_psd
from pipelines.filters import LINE_FREQUENCIES, line_ratio_db

QUALITY_NAMES: tuple[str, ...] = (
    "nonfinite_fraction",
    "snr_db",
    "flat_fraction",
    "clip_fraction",
    "ptp_uv",
    "ptp_uv_median",
    "muscle_ratio",
    "line_noise_db",
    "pop_channels",
    "bad_channel_fraction",
    "channel_quality",
    "artifact_ratio",
    "rule_score",
)

# Window rules: flag name -> (metric, config threshold field, direction, kind).
# direction "max": the metric must stay below the threshold; "min": above it.
# kind "ratio": severity value/threshold; "db": severity 10**(excess/10).
RULES: dict[str, tuple[str, str, str, str]] = {
    "non_finite": ("nonfinite_fraction", "max_nonfinite_fraction", "max", "ratio"),
    "low_snr": ("snr_db", "min_snr_db", "min", "db"),
    "flat": ("flat_fraction", "max_flat_fraction", "max", "ratio"),
    "clipping": ("clip_fraction", "max_clip_fraction", "max", "ratio"),
    "high_amplitude": ("ptp_uv", "max_ptp_uv", "max", "ratio"),
    "low_amplitude": ("ptp_uv_median", "min_ptp_uv", "min", "ratio"),
    "muscle": ("muscle_ratio", "max_muscle_ratio", "max", "ratio"),
    "line_noise": ("line_noise_db", "max_line_noise_db", "max", "db"),
    "electrode_pop": ("pop_channels", "max_pop_channels", "max", "ratio"),
    "bad_channels": ("bad_channel_fraction", "max_bad_channel_fraction", "max", "ratio"),
    "artifact_ratio": ("artifact_ratio", "max_artifact_ratio", "max", "ratio"),
}
DEFAULT_REJECT_ON: tuple[str, ...] = (
    "non_finite", "flat", "clipping", "high_amplitude", "low_amplitude",
)


def _check_band(name: str, band: Any) -> None:
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise ConfigError(f"{name}: expected a (low, high) pair in Hz; got {band!r}")
    low, high = band
    check_range(f"{name}[0]", low, 0.0, None)
    check_range(f"{name}[1]", high, 0.0, None, low_inclusive=False)
    if low >= high:
        raise ConfigError(f"{name}: expected low < high; got {band!r}")


@dataclasses.dataclass
class QualityConfig(Config):
    """Thresholds and bands for :func:`compute_quality` / :func:`validate_window`.

    Defaults were checked on the 1,515 5 s windows of the 64 eegmat recordings (resting and task
    EEG, 50 Hz notch, 0.5-70 Hz): 1,511 are kept; the 4 rejected are 2 data dropouts where all 19
    channels are exactly constant for 1.4-1.8 s and 2 windows above 500 uV peak-to-peak. About 2 %
    carry a scored flag, mostly genuine electrode pops (step and slow decay on one channel). Injected
    flat, clipped, popping, EMG-laden and mains-laden channels cross their thresholds
    (tests/pipelines/test_quality.py).
    """

    signal_band: tuple[float, float] = (1.0, 30.0)
    noise_band: tuple[float, float] = (30.0, 70.0)
    muscle_band: tuple[float, float] = (20.0, 100.0)
    total_band: tuple[float, float] = (0.5, 128.0)
    # sample-level detectors
    flat_tol_uv: float = 0.1
    flat_min_duration_s: float = 0.1
    clip_tol_rel: float = 1e-3
    clip_min_duration_s: float = 0.05
    max_abs_uv: float = 250.0
    pop_step_s: float = 0.012
    pop_z: float = 10.0
    pop_min_uv: float = 50.0
    pop_persist: float = 0.3
    # window rules (see RULES)
    max_nonfinite_fraction: float = 1e-9
    min_snr_db: float = 3.0
    max_flat_fraction: float = 0.2
    max_clip_fraction: float = 0.01
    # Hard rejection only for amplitudes no scalp EEG or eye blink reaches: blinks on Fp1/Fp2
    # routinely give 500-800 uV peak-to-peak (PhysioNet eegmmi S001: 720 uV after band-pass), and
    # they are scored as artifacts, not discarded.
    max_ptp_uv: float = 1000.0
    min_ptp_uv: float = 2.0
    max_muscle_ratio: float = 0.5
    max_line_noise_db: float = 10.0
    max_pop_channels: float = 1.0
    max_bad_channel_fraction: float = 0.25
    max_artifact_ratio: float = 0.2
    # keep/drop
    reject_on: tuple[str, ...] = DEFAULT_REJECT_ON
    max_artifact_score: float = 1.0

    def validate(self) -> None:
        for name in ("signal_band", "noise_band", "muscle_band", "total_band"):
            _check_band(name, getattr(self, name))
        check_range("flat_tol_uv", self.flat_tol_uv, 0.0, None)
        check_range("flat_min_duration_s", self.flat_min_duration_s, 0.0, 10.0, low_inclusive=False)
        check_range("clip_tol_rel", self.clip_tol_rel, 0.0, 0.1)
        check_range("clip_min_duration_s", self.clip_min_duration_s, 0.0, 10.0, low_inclusive=False)
        check_range("max_abs_uv", self.max_abs_uv, 0.0, None, low_inclusive=False)
        check_range("pop_step_s", self.pop_step_s, 0.0, 0.2, low_inclusive=False)
        check_range("pop_z", self.pop_z, 0.0, None, low_inclusive=False)
        check_range("pop_min_uv", self.pop_min_uv, 0.0, None)
        check_range("pop_persist", self.pop_persist, 0.0, 1.0)
        for rule, (_, field, direction, kind) in RULES.items():
            value = getattr(self, field)
            if kind == "db":
                check_range(field, value, -100.0, 100.0)
            else:
                check_range(field, value, 0.0, None, low_inclusive=False)
        if not isinstance(self.reject_on, (tuple, list)):
            raise ConfigError(f"reject_on: expected a list of rule names; got {self.reject_on!r}")
        unknown = [r for r in self.reject_on if r not in RULES]
        if unknown:
            raise ConfigError(
                f"reject_on: expected names from {', '.join(RULES)}; "
                f"got unknown {', '.join(map(repr, unknown))}"
            )
        self.reject_on = tuple(self.reject_on)
        check_range("max_artifact_score", self.max_artifact_score, 0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class QualityReport:
    """Quality of one window. Window metrics are attributes named as in :data:`QUALITY_NAMES`.

    Per-channel arrays (length n_chans, channel order of the input) start with ``channel_``;
    ``channel_measured`` is the mask the window metrics were computed over. ``flags`` lists the
    window rules that fired, ``artifact_score`` is ``rule_score`` unless combined with a learned
    score by :meth:`with_ae_score`.
    """

    nonfinite_fraction: float
    snr_db: float
    flat_fraction: float
    clip_fraction: float
    ptp_uv: float
    ptp_uv_median: float
    muscle_ratio: float
    line_noise_db: float
    pop_channels: float
    bad_channel_fraction: float
    channel_quality: float
    artifact_ratio: float
    rule_score: float
    artifact_score: float
    flags: tuple[str, ...]
    channel_measured: np.ndarray
    channel_snr_db: np.ndarray
    channel_flat_fraction: np.ndarray
    channel_clip_fraction: np.ndarray
    channel_ptp_uv: np.ndarray
    channel_muscle_ratio: np.ndarray
    channel_line_noise_db: np.ndarray
    channel_pops: np.ndarray
    channel_score: np.ndarray
    ae_score: float | None = None

    def vector(self) -> np.ndarray:
        """The window metrics as float32 in :data:`QUALITY_NAMES` order (the TFRecord ``quality``)."""
        return np.array([getattr(self, name) for name in QUALITY_NAMES], dtype=np.float32)

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in QUALITY_NAMES}

    def with_ae_score(self, ae_score: float) -> QualityReport:
        """A copy whose ``artifact_score`` is ``max(rule_score, ae_score)``.

        The maximum, not a mean: each detector is calibrated so that clean windows score low, and
        an artifact one of them sees should not be diluted by the other's silence.
        """
        if not 0.0 <= float(ae_score) <= 1.0 or math.isnan(float(ae_score)):
            raise ValueError(f"ae_score: expected a value in [0, 1]; got {ae_score!r}")
        return dataclasses.replace(
            self, ae_score=float(ae_score), artifact_score=max(self.rule_score, float(ae_score))
        )


# --------------------------------------------------------------------------------------------
# Sample-level detectors
# --------------------------------------------------------------------------------------------


def _runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    """Per row, True where ``mask`` is inside a run of at least ``min_len`` consecutive True."""
    n_rows, n = mask.shape
    if mask.sum(axis=1).max(initial=0) < min_len:  # the common, clean case: no run can qualify
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


def flat_mask(x: np.ndarray, sfreq: float, tol_uv: float, min_duration_s: float) -> np.ndarray:
    """Samples inside runs of >= min_duration_s where every sample-to-sample change is <= tol_uv."""
    small = np.abs(np.diff(x, axis=1)) <= tol_uv  # small[t]: change from t to t+1
    min_steps = max(1, int(round(min_duration_s * sfreq)) - 1)
    step_runs = _runs(small, min_steps)
    # A run of k small steps covers k + 1 samples.
    mask = np.zeros(x.shape, dtype=bool)
    mask[:, :-1] |= step_runs
    mask[:, 1:] |= step_runs
    return mask


def clip_mask(
    x: np.ndarray,
    sfreq: float,
    tol_rel: float,
    min_duration_s: float,
    physical_min: np.ndarray | None = None,
    physical_max: np.ndarray | None = None,
) -> np.ndarray:
    """Clipped samples: at the declared physical range if given, else plateaus at the extremes."""
    if physical_min is not None and physical_max is not None:
        span = (physical_max - physical_min)[:, None]
        tol = tol_rel * span
        return (x >= physical_max[:, None] - tol) | (x <= physical_min[:, None] + tol)
    high = x.max(axis=1, keepdims=True)
    low = x.min(axis=1, keepdims=True)
    tol = tol_rel * (high - low)
    at_extreme = ((x >= high - tol) | (x <= low + tol)) & (high > low)
    return _runs(at_extreme, max(2, int(round(min_duration_s * sfreq))))


def detect_pops(
    x: np.ndarray, sfreq: float, config: QualityConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Electrode pops per channel: (counts (n_chans,), span mask (n_chans, n_times)).

    See the module docstring for the criteria (step, single channel, persistence, relaxation).
    """
    n_chans, n = x.shape
    counts = np.zeros(n_chans, dtype=np.int64)
    spans = np.zeros(x.shape, dtype=bool)
    k = max(1, int(round(config.pop_step_s * sfreq)))
    pre_len = max(1, int(round(0.1 * sfreq)))
    early_len = int(round(0.2 * sfreq))
    late_len = int(round(0.3 * sfreq))
    if n <= k + pre_len + early_len:
        return counts, spans
    step = x[:, k:] - x[:, :-k]
    # Robust SD of the steps (they are centred on zero: 1.4826 * median |step|).
    scale = np.maximum(1.4826 * np.median(np.abs(step), axis=1, keepdims=True), 1e-6)
    z = np.abs(step) / scale
    # Largest and second-largest z across channels at each time, to ask whether any *other*
    # channel stepped at the same moment.
    cols = np.arange(z.shape[1])
    top_idx = z.argmax(axis=0)
    top = z[top_idx, cols]
    rest = z.copy()
    rest[top_idx, cols] = 0.0
    second = rest.max(axis=0)
    candidates = (z >= config.pop_z) & (np.abs(step) >= config.pop_min_uv)
    for ch in range(n_chans):
        times = np.flatnonzero(candidates[ch])
        if times.size == 0:
            continue
        # one event per cluster of consecutive candidate samples: its largest step
        clusters = np.split(times, np.flatnonzero(np.diff(times) > k) + 1)
        for cluster in clusters:
            t0 = int(cluster[np.argmax(z[ch, cluster])])
            lo, hi = max(0, t0 - k), min(z.shape[1], t0 + k + 1)
            other = np.where(z[ch, lo:hi] >= top[lo:hi], second[lo:hi], top[lo:hi])
            if other.max() >= config.pop_z / 2.0:
                continue  # several channels step together: movement or reference, not a pop
            if t0 < pre_len or t0 + k + early_len > n:
                continue  # cannot see the baseline or the decay inside this window
            baseline = np.median(x[ch, t0 - pre_len: t0])
            amplitude = x[ch, t0 + k] - baseline
            if abs(amplitude) < config.pop_min_uv / 2.0:
                continue  # the "step" only returned towards baseline (end of a ramp or a spike)
            after = x[ch, t0 + k: t0 + k + early_len] - baseline
            early = after.mean() / amplitude
            late_seg = x[ch, t0 + k + early_len: t0 + k + early_len + late_len] - baseline
            late = late_seg.mean() / amplitude if late_seg.size else early
            if early >= config.pop_persist and late <= early:
                counts[ch] += 1
                spans[ch, t0: min(n, t0 + k + int(round(0.5 * sfreq)))] = True
    return counts, spans


# --------------------------------------------------------------------------------------------
# Spectral metrics
# --------------------------------------------------------------------------------------------


def _line_bins(freqs: np.ndarray) -> np.ndarray:
    """Bins within 1 Hz of any mains frequency or harmonic."""
    mask = np.zeros(freqs.shape, dtype=bool)
    for base in LINE_FREQUENCIES:
        for harmonic in np.arange(base, freqs[-1] + 1.0, base):
            mask |= np.abs(freqs - harmonic) <= 1.0
    return mask


def _mean_density(psd: np.ndarray, sel: np.ndarray) -> np.ndarray:
    if not sel.any():
        return np.full(psd.shape[0], np.nan)
    return psd[:, sel].mean(axis=1)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _severity(value: np.ndarray | float, threshold: float, direction: str, kind: str) -> np.ndarray:
    """Severity of ``value`` against ``threshold`` (1 at the threshold; NaN counts as 0)."""
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if kind == "db":
            excess = value - threshold if direction == "max" else threshold - value
            out = 10.0 ** (np.clip(excess, -300.0, 300.0) / 10.0)
        elif direction == "max":
            out = value / threshold
        else:
            out = np.where(value > 0, threshold / value, np.inf)
    return np.where(np.isnan(value), 0.0, out)


def _penalty(severity: np.ndarray | float) -> np.ndarray | float:
    return np.minimum(1.0, np.asarray(severity, dtype=np.float64) / 2.0)


def _per_physical(name: str, value: Any, n_chans: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n_chans,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values; got {value!r}")
    return arr


def compute_quality(
    data: np.ndarray,
    sfreq: float = 256.0,
    config: QualityConfig | None = None,
    *,
    channel_mask: Sequence[int] | np.ndarray | None = None,
    unfiltered: np.ndarray | None = None,
    physical_min: float | Sequence[float] | None = None,
    physical_max: float | Sequence[float] | None = None,
) -> QualityReport:
    """Quality metrics of one window; see the module docstring for every definition.

    channel_mask: 1 for measured channels, 0 for interpolated ones (the data contract's
        ``channel_mask``); window metrics use measured channels only. Default: all measured.
    unfiltered: the same window before notch/band-pass, for the flat and clipping detectors.
    physical_min, physical_max: the recording's declared physical range (scalar or per channel,
        in uV), for exact clipping detection; both or neither.
    """
    config = QualityConfig() if config is None else config
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(
            f"data: expected shape (n_chans, n_times) with n_times >= 2; got {data.shape}"
        )
    if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float, np.integer, np.floating)):
        raise TypeError(f"sfreq: expected a sampling rate in Hz; got {sfreq!r}")
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sfreq: expected a finite rate > 0 Hz; got {sfreq!r}")
    sfreq = float(sfreq)
    n_chans, n_times = data.shape
    if channel_mask is None:
        measured = np.ones(n_chans, dtype=bool)
    else:
        measured = np.asarray(channel_mask).astype(bool).reshape(-1)
        if measured.shape != (n_chans,):
            raise ValueError(f"channel_mask: expected {n_chans} entries; got {measured.shape[0]}")
        if not measured.any():
            raise ValueError("channel_mask: expected at least one measured channel (1); got all 0")
    if (physical_min is None) != (physical_max is None):
        raise ValueError("physical_min, physical_max: expected both or neither")
    pmin = _per_physical("physical_min", physical_min, n_chans)
    pmax = _per_physical("physical_max", physical_max, n_chans)
    if pmin is not None and np.any(pmax <= pmin):
        raise ValueError(f"physical_max: expected values above physical_min; got {physical_max!r}")

    finite = np.isfinite(data)
    nonfinite_fraction = float(1.0 - finite[measured].mean())
    x = np.where(finite, data, 0.0).astype(np.float64)
    if unfiltered is not None:
        raw = np.asarray(unfiltered)
        if raw.shape != data.shape:
            raise ValueError(f"unfiltered: expected shape {data.shape} like data; got {raw.shape}")
        raw = np.where(np.isfinite(raw), raw, 0.0).astype(np.float64)
    else:
        raw = x

    # Sample-level detectors.
    flat = flat_mask(raw, sfreq, config.flat_tol_uv, config.flat_min_duration_s)
    clipped = clip_mask(raw, sfreq, config.clip_tol_rel, config.clip_min_duration_s, pmin, pmax)
    pops, pop_spans = detect_pops(x, sfreq, config)
    excursion = np.abs(x - x.mean(axis=1, keepdims=True)) > config.max_abs_uv
    artifact_mask = flat | clipped | pop_spans | excursion | ~finite

    # Spectral metrics.
    nyquist = sfreq / 2.0
    freqs, psd = welch_psd(x, sfreq)
    line = _line_bins(freqs)
    signal = _mean_density(psd, band_mask(freqs, *config.signal_band) & ~line)
    noise = _mean_density(psd, band_mask(freqs, *config.noise_band) & ~line)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(invalid="ignore"):
        snr = 10.0 * np.log10(np.maximum(signal, tiny) / np.maximum(noise, tiny))
    muscle_sel = band_mask(freqs, config.muscle_band[0], min(config.muscle_band[1], nyquist + 1e-9))
    total_sel = band_mask(freqs, config.total_band[0], min(config.total_band[1], nyquist + 1e-9))
    muscle_power = psd[:, muscle_sel & ~line].sum(axis=1)
    total_power = psd[:, total_sel & ~line].sum(axis=1)
    muscle = np.divide(muscle_power, total_power, out=np.zeros(n_chans), where=total_power > 0)
    line_db = np.stack([line_ratio_db(freqs, psd, f) for f in LINE_FREQUENCIES], axis=1)
    line_db = np.where(np.isnan(line_db), -np.inf, line_db).max(axis=1)
    line_db = np.where(np.isfinite(line_db), line_db, np.nan)

    ptp = x.max(axis=1) - x.min(axis=1)
    flat_frac = flat.mean(axis=1)
    clip_frac = clipped.mean(axis=1)

    # Channel scores.
    def sev(values: np.ndarray, field: str, direction: str, kind: str) -> np.ndarray:
        return _severity(values, getattr(config, field), direction, kind)

    channel_severity = np.stack([
        sev(snr, "min_snr_db", "min", "db"),
        sev(flat_frac, "max_flat_fraction", "max", "ratio"),
        sev(clip_frac, "max_clip_fraction", "max", "ratio"),
        sev(ptp, "max_ptp_uv", "max", "ratio"),
        sev(ptp, "min_ptp_uv", "min", "ratio"),
        sev(muscle, "max_muscle_ratio", "max", "ratio"),
        sev(line_db, "max_line_noise_db", "max", "db"),
        pops.astype(np.float64),  # one pop reaches the threshold
    ], axis=1)
    channel_score = 1.0 - _penalty(channel_severity).max(axis=1)
    bad = channel_score <= 0.5

    def worst(values: np.ndarray) -> float:
        vals = values[measured]
        vals = vals[~np.isnan(vals)]
        return float(vals.max()) if vals.size else math.nan

    def median(values: np.ndarray) -> float:
        vals = values[measured]
        vals = vals[~np.isnan(vals)]
        return float(np.median(vals)) if vals.size else math.nan

    metrics: dict[str, float] = {
        "nonfinite_fraction": nonfinite_fraction,
        "snr_db": median(snr),
        "flat_fraction": worst(flat_frac),
        "clip_fraction": worst(clip_frac),
        "ptp_uv": worst(ptp),
        "ptp_uv_median": median(ptp),
        "muscle_ratio": worst(muscle),
        "line_noise_db": worst(line_db),
        "pop_channels": float((pops[measured] > 0).sum()),
        "bad_channel_fraction": float(bad[measured].mean()),
        "channel_quality": float(channel_score[measured].mean()),
        "artifact_ratio": float(artifact_mask[measured].mean()),
    }
    flags = []
    penalties = []
    for rule, (metric, field, direction, kind) in RULES.items():
        severity = float(_severity(metrics[metric], getattr(config, field), direction, kind))
        penalties.append(float(_penalty(severity)))
        if severity >= 1.0:
            flags.append(rule)
    rule_score = max(penalties)
    return QualityReport(
        **metrics,
        rule_score=rule_score,
        artifact_score=rule_score,
        flags=tuple(flags),
        channel_measured=measured,
        channel_snr_db=snr,
        channel_flat_fraction=flat_frac,
        channel_clip_fraction=clip_frac,
        channel_ptp_uv=ptp,
        channel_muscle_ratio=muscle,
        channel_line_noise_db=line_db,
        channel_pops=pops,
        channel_score=channel_score,
    )


def _format(value: float) -> str:
    return f"{value:.4g}"


def validate_window(
    report: QualityReport, config: QualityConfig | None = None
) -> tuple[bool, list[str]]:
    """Whether to keep a window, and human-readable reasons when not.

    A reason names the rule, the metric, its value and the threshold, e.g.
    ``"flat: flat_fraction=0.62 >= max_flat_fraction=0.2"``.
    """
    config = QualityConfig() if config is None else config
    reasons = []
    for rule in config.reject_on:
        metric, field, direction, kind = RULES[rule]
        value = float(getattr(report, metric))
        threshold = getattr(config, field)
        if _severity(value, threshold, direction, kind) >= 1.0:
            op = ">=" if direction == "max" else "<="
            reasons.append(f"{rule}: {metric}={_format(value)} {op} {field}={_format(threshold)}")
    if report.artifact_score > config.max_artifact_score:
        reasons.append(
            f"artifact_score: artifact_score={_format(report.artifact_score)} > "
            f"max_artifact_score={_format(config.max_artifact_score)}"
        )
    return not reasons, reasons
