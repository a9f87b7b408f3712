"""Optional hand-crafted EEG features per window, as one flat float32 vector in a fixed order.

Per channel, in this order (:data:`CHANNEL_FEATURES`):

- ``mean`` (uV), ``std`` (uV), ``skewness``, ``kurtosis`` (excess: 0 for a Gaussian),
- ``line_length``: mean absolute sample-to-sample change, in uV per second (independent of window
  length and close to independent of the sampling rate),
- ``hjorth_mobility`` (1/s): ``sqrt(var(x') / var(x))`` with the derivative in uV/s; divided by
  2 pi it is the signal's RMS frequency in Hz,
- ``hjorth_complexity``: mobility of ``x'`` over mobility of ``x`` (1 for a pure sine),
- ``rel_delta`` (0.5-4 Hz), ``rel_theta`` (4-8), ``rel_alpha`` (8-13), ``rel_beta`` (13-30),
  ``rel_gamma`` (30-70): band power over the 0.5-70 Hz total, so they sum to 1,
- ``spectral_entropy``: Shannon entropy of the 0.5-70 Hz PSD normalized to a distribution, divided
  by the log of the number of bins: 0 for a pure tone, 1 for white noise.

Names are ``"<channel>.<feature>"``, channel-major (all features of Fp1, then F3, ...), so
:data:`FEATURE_NAMES` for the 19 canonical channels has 19 * 13 = 247 entries. A flat channel
(zero variance) has zero skewness, kurtosis and Hjorth parameters and uniform relative powers rather
than NaN, so vectors stay finite for downstream models.

The PSD helpers here (:func:`welch_psd`, :func:`band_power`) are shared by
:mod:`pipelines.quality` and :mod:`pipelines.artifact_ae` so every stage measures power the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.signal import get_window

from pipelines.channels import CANONICAL_CHANNELS

BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 0.5, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 70.0),
)
TIME_FEATURES: tuple[str, ...] = (
    "mean", "std", "skewness", "kurtosis", "line_length", "hjorth_mobility", "hjorth_complexity",
)
CHANNEL_FEATURES: tuple[str, ...] = (
    TIME_FEATURES + tuple(f"rel_{name}" for name, _, _ in BANDS) + ("spectral_entropy",)
)
# Welch segments of 2 s: 0.5 Hz bins, and several averaged segments in a 5-10 s window.
DEFAULT_SEGMENT_S = 2.0


def feature_names(ch_names: Sequence[str] = CANONICAL_CHANNELS) -> tuple[str, ...]:
    """``"<channel>.<feature>"`` for every channel and feature, channel-major."""
    return tuple(f"{ch}.{feat}" for ch in ch_names for feat in CHANNEL_FEATURES)


FEATURE_NAMES: tuple[str, ...] = feature_names()


def _check_window(data: np.ndarray, sfreq: float) -> tuple[np.ndarray, float]:
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(
            f"data: expected shape (n_chans, n_times) with n_times >= 2; got {data.shape}"
        )
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise TypeError(f"data: expected real numbers; got dtype {data.dtype}")
    if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float, np.integer, np.floating)):
        raise TypeError(f"sfreq: expected a sampling rate in Hz; got {sfreq!r}")
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sfreq: expected a finite rate > 0 Hz; got {sfreq!r}")
    return data, float(sfreq)


def welch_psd(
    data: np.ndarray,
    sfreq: float,
    segment_s: float = DEFAULT_SEGMENT_S,
    *,
    max_segments: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD (uV^2/Hz): Hann segments of ``segment_s`` (the whole window if shorter), 50 %
    overlap, each segment's mean removed, one-sided density. Returns ``(freqs, psd)`` with ``psd``
    (n_chans, n_freqs), float64.

    ``max_segments`` bounds the cost on long recordings: when there are more segments, that many
    are averaged, spread evenly over the whole recording.

    Numerically the same estimate as ``scipy.signal.welch`` with its defaults (a test pins this);
    written out because windows are short and many, and scipy's general STFT machinery costs
    several times more per call than the few array operations needed here.
    """
    data, sfreq = _check_window(data, sfreq)
    x = np.asarray(data, dtype=np.float64)
    n_times = x.shape[1]
    nperseg = int(min(n_times, round(segment_s * sfreq)))
    step = nperseg - nperseg // 2
    n_segments = 1 + (n_times - nperseg) // step
    starts = step * np.arange(n_segments)
    if max_segments is not None and n_segments > max_segments:
        starts = starts[np.linspace(0, n_segments - 1, max_segments).round().astype(int)]
    segments = x[:, starts[:, None] + np.arange(nperseg)[None, :]]  # (n_chans, n_seg, nperseg)
    segments -= segments.mean(axis=-1, keepdims=True)
    window = _hann(nperseg)
    spectrum = np.fft.rfft(segments * window, axis=-1)
    psd = (spectrum.real**2 + spectrum.imag**2).mean(axis=1) / (sfreq * (window**2).sum())
    # One-sided: double every bin except DC and (for even lengths) Nyquist.
    psd[:, 1: None if nperseg % 2 else -1] *= 2.0
    return np.fft.rfftfreq(nperseg, 1.0 / sfreq), psd


@lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    window = get_window("hann", n)  # periodic, as scipy.signal.welch uses
    window.setflags(write=False)
    return window


def band_mask(freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bins with ``low <= f < high``."""
    return (freqs >= low) & (freqs < high)


def band_power(freqs: np.ndarray, psd: np.ndarray, low: float, high: float) -> np.ndarray:
    """Power (uV^2) in ``[low, high)`` per channel: PSD summed over the band's bins times the bin width."""
    df = freqs[1] - freqs[0] if freqs.size > 1 else 1.0
    return psd[:, band_mask(freqs, low, high)].sum(axis=1) * df


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def time_domain_features(data: np.ndarray, sfreq: float) -> np.ndarray:
    """(n_chans, 7) array of :data:`TIME_FEATURES`; see the module docstring for units."""
    data, sfreq = _check_window(data, sfreq)
    x = np.asarray(data, dtype=np.float64)
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    squared = centred * centred  # explicit products: float powers are several times slower
    var = squared.mean(axis=1)
    std = np.sqrt(var)
    skewness = _safe_ratio((squared * centred).mean(axis=1), var * std)
    kurtosis = np.where(var > 0, _safe_ratio((squared * squared).mean(axis=1), var * var) - 3.0, 0.0)
    dx = np.diff(x, axis=1) * sfreq
    ddx = np.diff(dx, axis=1) * sfreq
    line_length = np.abs(dx).mean(axis=1)
    var_dx = dx.var(axis=1)
    var_ddx = ddx.var(axis=1) if ddx.shape[1] else np.zeros_like(var_dx)
    mobility = np.sqrt(_safe_ratio(var_dx, var))
    complexity = _safe_ratio(np.sqrt(_safe_ratio(var_ddx, var_dx)), mobility)
    return np.stack([mean, std, skewness, kurtosis, line_length, mobility, complexity], axis=1)


def spectral_features(
    data: np.ndarray, sfreq: float, *, psd: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """(n_chans, 6) array: relative power in each of :data:`BANDS`, then spectral entropy.

    Bands above Nyquist are empty (zero power). Pass ``psd=(freqs, psd)`` to reuse a PSD.
    """
    data, sfreq = _check_window(data, sfreq)
    freqs, pxx = welch_psd(data, sfreq) if psd is None else psd
    low, high = BANDS[0][1], BANDS[-1][2]
    powers = np.stack([band_power(freqs, pxx, lo, hi) for _, lo, hi in BANDS], axis=1)
    total = powers.sum(axis=1, keepdims=True)
    n_bands = len(BANDS)
    relative = np.where(total > 0, _safe_ratio(powers, total), 1.0 / n_bands)
    in_band = pxx[:, band_mask(freqs, low, high)]
    n_bins = in_band.shape[1]
    dist = _safe_ratio(in_band, in_band.sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(dist > 0, dist * np.log(dist), 0.0)
    entropy = -plogp.sum(axis=1) / np.log(n_bins) if n_bins > 1 else np.zeros(len(pxx))
    entropy = np.where(in_band.sum(axis=1) > 0, entropy, 1.0)
    return np.concatenate([relative, entropy[:, None]], axis=1)


def compute_features(data: np.ndarray, sfreq: float = 256.0) -> np.ndarray:
    """All :data:`CHANNEL_FEATURES` for every channel, flattened channel-major, float32.

    For a (19, n_times) window in canonical order the entries line up with :data:`FEATURE_NAMES`;
    for other channel sets use :func:`feature_names` with the same channel list.
    """
    data, sfreq = _check_window(data, sfreq)
    per_channel = np.concatenate(
        [time_domain_features(data, sfreq), spectral_features(data, sfreq)], axis=1
    )
    return per_channel.astype(np.float32).reshape(-1)
