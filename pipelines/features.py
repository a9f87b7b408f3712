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

The Welch PSD here (:func:`welch`, :func:`welch_psd`, :func:`window_spectrum`) is the one every
stage measures power with (:mod:`pipelines.quality`, :mod:`pipelines.artifact_ae`,
:mod:`pipelines.filters`); a window's :class:`WindowSpectrum` is computed once and shared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.fft as sp_fft
from numpy.lib.stride_tricks import as_strided

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.pipelines.filter_design import hann_periodic

BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 0.5, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 70.0),
)
TIME_FEATURES: tuple[str, ...] = (
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "line_length",
    "hjorth_mobility",
    "hjorth_complexity",
)
CHANNEL_FEATURES: tuple[str, ...] = TIME_FEATURES + tuple(f"rel_{name}" for name, _, _ in BANDS) + ("spectral_entropy",)
# Welch segments of 2 s: 0.5 Hz bins, and several averaged segments in a 5-10 s window.
DEFAULT_SEGMENT_S = 2.0


def feature_names(ch_names: Sequence[str] = CANONICAL_CHANNELS) -> tuple[str, ...]:
    """``"<channel>.<feature>"`` for every channel and feature, channel-major."""
    return tuple(f"{ch}.{feat}" for ch in ch_names for feat in CHANNEL_FEATURES)


FEATURE_NAMES: tuple[str, ...] = feature_names()


def check_sfreq(sfreq: object) -> float:
    """``sfreq`` as a float, or TypeError/ValueError naming it."""
    if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float, np.integer, np.floating)):
        raise TypeError(f"sfreq: expected a sampling rate in Hz; got {sfreq!r}")
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"sfreq: expected a finite rate > 0 Hz; got {sfreq!r}")
    return float(sfreq)


def _check_window(data: np.ndarray, sfreq: float) -> tuple[np.ndarray, float]:
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"data: expected shape (n_chans, n_times) with n_times >= 2; got {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise TypeError(f"data: expected real numbers; got dtype {data.dtype}")
    return data, check_sfreq(sfreq)


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
    return welch(np.asarray(data, dtype=np.float64), sfreq, segment_s, max_segments)


@dataclasses.dataclass(frozen=True, eq=False)
class WindowSpectrum:
    """The Welch PSD of one window (or a batch), computed once and shared by the stages using it.

    ``psd`` has shape (n_chans, n_freqs), or (n_windows, n_chans, n_freqs) for a batch, in uV^2/Hz
    (float32 for float16/float32 input, else float64); ``freqs`` (n_freqs,) in Hz. Made by
    :func:`window_spectrum`; accepted by :func:`pipelines.quality.compute_quality` (``spectrum=``)
    and :func:`pipelines.artifact_ae.band_features_from_psd`, and attached to every
    :class:`pipelines.quality.QualityReport` as ``report.spectrum``.
    """

    freqs: np.ndarray
    psd: np.ndarray
    sfreq: float
    n_times: int
    segment_s: float = DEFAULT_SEGMENT_S


def window_spectrum(
    data: np.ndarray,
    sfreq: float,
    segment_s: float = DEFAULT_SEGMENT_S,
    *,
    dtype: type | None = None,
) -> WindowSpectrum:
    """:func:`welch_psd` of a window (n_chans, n_times) or batch (n_windows, n_chans, n_times).

    Non-finite samples are read as 0 (as the quality and autoencoder stages do). ``dtype`` is the
    precision of the transform: by default float32 for float16/float32 input (about twice as fast
    as float64 and equal to it within float32 rounding, relative 1e-6 of a segment's power) and
    float64 otherwise.
    """
    arr = np.asarray(data)
    if arr.ndim not in (2, 3) or arr.shape[-1] < 2:
        raise ValueError(
            f"data: expected shape (n_chans, n_times) or (n_windows, n_chans, n_times) with "
            f"n_times >= 2; got {arr.shape}"
        )
    _check_window(arr.reshape(-1, arr.shape[-1])[:1], sfreq)
    if dtype is None:
        dtype = np.float32 if arr.dtype in (np.float16, np.float32) else np.float64
    elif np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected numpy.float32, numpy.float64 or None; got {dtype!r}")
    dtype = np.dtype(dtype).type
    x = np.asarray(arr, dtype=dtype)
    if not np.isfinite(x.sum()):  # NaN or inf somewhere (or an overflowing sum): zero them
        x = np.where(np.isfinite(x), x, dtype(0))
    freqs, psd = welch(x, float(sfreq), segment_s)
    return WindowSpectrum(freqs, psd, float(sfreq), int(arr.shape[-1]), float(segment_s))


@lru_cache(maxsize=32)
def _welch_plan(
    n_times: int, sfreq: float, segment_s: float, dtype: type
) -> tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Segment length and step, segment count, Hann window, per-bin density scale, frequencies."""
    nperseg = int(min(n_times, round(segment_s * sfreq)))
    step = nperseg - nperseg // 2
    n_segments = 1 + (n_times - nperseg) // step
    window = _hann(nperseg)
    # One-sided density: double every bin except DC and (for even lengths) Nyquist.
    scale = np.full(nperseg // 2 + 1, 2.0 / (sfreq * (window**2).sum()))
    scale[0] /= 2.0
    if nperseg % 2 == 0:
        scale[-1] /= 2.0
    freqs = np.fft.rfftfreq(nperseg, 1.0 / sfreq)
    arrays = (window.astype(dtype), scale, freqs)
    for arr in arrays:
        arr.setflags(write=False)
    return (nperseg, step, n_segments) + arrays


# The float32 fast path removes segment means after the transform (see _welch_float32); it falls
# back to removing them before when a segment's mean exceeds this many times the channel's RMS,
# where float32 rounding of the un-centred transform would no longer be negligible.
_MAX_DC_TO_RMS = 10.0


# Rows (channels) are transformed in groups whose segment buffer stays about this size (bytes), so
# the buffer, its transform and the squares stay in cache: on whole recordings (line detection)
# this halves the time against one buffer for all channels.
_CHUNK_BYTES = 1 << 20


def welch(
    x: np.ndarray, sfreq: float, segment_s: float = DEFAULT_SEGMENT_S, max_segments: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`welch_psd` along the last axis of a float32/float64 array of any leading shape,
    unchecked and in the array's precision."""
    n_times = x.shape[-1]
    nperseg, step, n_segments, window, scale, freqs = _welch_plan(n_times, sfreq, float(segment_s), x.dtype.type)
    used = n_segments if max_segments is None else min(n_segments, max_segments)
    rows = max(1, _CHUNK_BYTES // (used * nperseg * x.itemsize))
    n_rows = int(np.prod(x.shape[:-1]))
    if n_rows > rows:
        flat = x.reshape(n_rows, n_times)
        psd = np.concatenate(
            [welch(flat[i : i + rows], sfreq, segment_s, max_segments)[1] for i in range(0, n_rows, rows)]
        )
        return freqs, psd.reshape(*x.shape[:-1], -1)
    # (..., n_segments, nperseg) read-only view of the overlapping segments; no copy yet.
    shape = (*x.shape[:-1], n_segments, nperseg)
    strides = (*x.strides[:-1], step * x.strides[-1], x.strides[-1])
    if x.flags.c_contiguous:  # the same view as as_strided, without its Python overhead
        segments = np.ndarray(shape, x.dtype, x, 0, strides)
        segments.flags.writeable = False
    else:
        segments = as_strided(x, shape=shape, strides=strides, writeable=False)
    # (nperseg >= 4: below, bin 1 of a Hann window's transform is not -nperseg / 4.)
    if (
        x.dtype == np.float32
        and nperseg == 2 * step
        and nperseg >= 4
        and (max_segments is None or n_segments <= max_segments)
    ):
        return freqs, _welch_float32(x, segments, window, scale, freqs[1] - freqs[0])
    if max_segments is not None and n_segments > max_segments:
        chosen = np.linspace(0, n_segments - 1, max_segments).round().astype(int)
        segments = segments[..., chosen, :]
    return freqs, _welch_centred(segments, window, scale)


def _welch_centred(segments: np.ndarray, window: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Welch PSD from segments (..., n_segments, nperseg): each segment's mean removed, Hann
    weighted, transformed."""
    buf = segments - segments.mean(axis=-1, keepdims=True)
    buf *= window
    return _density(sp_fft.rfft(buf, axis=-1, overwrite_x=True, workers=1), scale)


def _density(spectrum: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Mean |X|^2 over the segment axis (-2) times the per-bin density scale."""
    # Square the interleaved (re, im) pairs, sum over segments, then add each pair: faster than
    # squaring the strided .real and .imag views.
    pairs = spectrum.view(spectrum.real.dtype)
    pairs *= pairs
    summed = pairs.sum(axis=-2)
    psd = summed[..., 0::2] + summed[..., 1::2]
    psd *= (scale / spectrum.shape[-2]).astype(psd.dtype, copy=False)
    return psd


def _welch_float32(x: np.ndarray, segments: np.ndarray, window: np.ndarray, scale: np.ndarray, df: float) -> np.ndarray:
    """Welch PSD of float32 ``x`` whose segments are two half-segment blocks (the default).

    A segment's mean is removed after the transform rather than before, which saves a pass: for
    the periodic Hann window ``w``, ``rfft(w * (s - m))`` is ``rfft(w * s)`` minus ``m * N / 2`` in
    bin 0 and plus ``m * N / 4`` in bin 1. The means come from sums over the half-segment blocks.
    Rows (channels) whose mean is large next to their signal (see ``_MAX_DC_TO_RMS``) are redone
    with the means removed first. Each row's result depends on that row alone, so a batch gives
    the same PSDs as its windows one at a time.
    """
    n_segments, nperseg = segments.shape[-2:]
    step = nperseg // 2
    blocks = x[..., : (n_segments + 1) * step].reshape(*x.shape[:-1], n_segments + 1, step)
    block_sums = blocks.sum(axis=-1).astype(np.float64)
    means = (block_sums[..., :-1] + block_sums[..., 1:]) / nperseg  # (..., n_segments)
    spectrum = sp_fft.rfft(segments * window, axis=-1, overwrite_x=True, workers=1)
    spectrum[..., 0] -= (means * (nperseg / 2.0)).astype(np.float32)
    spectrum[..., 1] += (means * (nperseg / 4.0)).astype(np.float32)
    psd = _density(spectrum, scale)
    mean_sq = (means * means).max(axis=-1)
    redo = mean_sq > _MAX_DC_TO_RMS**2 * psd.sum(axis=-1, dtype=np.float64) * df
    if redo.any():
        rows = np.nonzero(redo)
        psd[rows] = _welch_centred(segments[rows], window, scale)
    return psd


@lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    window = hann_periodic(n)  # as scipy.signal.welch uses
    window.setflags(write=False)
    return window


def band_mask(freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bins with ``low <= f < high``."""
    return (freqs >= low) & (freqs < high)


def band_weights(freqs: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n_freqs, n_bands) float64: 1 on each band's bins (:func:`band_mask`), so ``psd @ w`` sums
    each band's densities."""
    return np.stack([band_mask(freqs, low, high) for low, high in bands], axis=1).astype(np.float64)


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


def compute_features(data: np.ndarray, sfreq: float = 256.0, *, spectrum: WindowSpectrum | None = None) -> np.ndarray:
    """All :data:`CHANNEL_FEATURES` for every channel, flattened channel-major, float32.

    For a (19, n_times) window in canonical order the entries line up with :data:`FEATURE_NAMES`;
    for other channel sets use :func:`feature_names` with the same channel list. ``spectrum``:
    the window's :func:`window_spectrum` (e.g. ``QualityReport.spectrum``) to reuse its PSD.
    """
    data, sfreq = _check_window(data, sfreq)
    psd = None
    if spectrum is not None:
        if spectrum.psd.shape != (data.shape[0], spectrum.freqs.size) or spectrum.sfreq != sfreq:
            raise ValueError(
                f"spectrum: expected the PSD of this window (shape ({data.shape[0]}, n_freqs) at "
                f"{sfreq} Hz); got shape {spectrum.psd.shape} at {spectrum.sfreq} Hz"
            )
        psd = (spectrum.freqs, spectrum.psd.astype(np.float64))
    per_channel = np.concatenate([time_domain_features(data, sfreq), spectral_features(data, sfreq, psd=psd)], axis=1)
    return per_channel.astype(np.float32).reshape(-1)
