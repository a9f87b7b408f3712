"""Optional hand-crafted EEG features per window, as one flat float32 vector in a fixed order.

Per channel (:data:`CHANNEL_FEATURES`): mean and std (uV), skewness, excess kurtosis, line length
(mean absolute change, uV/s), Hjorth mobility (1/s; over 2 pi, the RMS frequency in Hz) and
complexity, the relative power of each of :data:`BANDS` over 0.5-70 Hz, and the spectral entropy
of the 0.5-70 Hz PSD normalized to [0, 1]. Names are ``"<channel>.<feature>"``, channel-major
(``feature_names``); a
flat channel gives zeros and uniform powers rather than NaN. The Welch PSD here is the one every
stage measures power with; a window's :class:`WindowSpectrum` is computed once and shared.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import scipy.fft as sp_fft
from numpy.lib.stride_tricks import as_strided

from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.bands import BANDS, band_mask, band_power
from eegfm.core.dsp.filter_design import hann_periodic
from eegfm.core.dsp.signal_checks import check_sfreq

# The names, in their own module (light for command lines); re-exported here beside the features.
from eegfm.pipelines.signal.feature_names import (  # noqa: F401
    CHANNEL_FEATURES,
    FEATURE_NAMES,
    TIME_FEATURES,
    feature_names,
)

# Welch segments of 2 s: 0.5 Hz bins, and several averaged segments in a 5-10 s window.
DEFAULT_SEGMENT_S = 2.0


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
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD (uV^2/Hz) as ``scipy.signal.welch``'s defaults compute it (tested), several times
    cheaper on short windows: Hann segments of ``segment_s`` (the whole window if shorter), 50 %
    overlap, means removed, one-sided. Returns ``(freqs, psd)``, psd (n_chans, n_freqs) in
    ``dtype`` (float64, or float32: about twice as fast, within float32 rounding), the precision
    of the transform. ``max_segments``: average that many segments spread evenly over a long recording."""
    data, sfreq = _check_window(data, sfreq)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected numpy.float32 or numpy.float64; got {dtype!r}")
    return welch(np.asarray(data, dtype=dtype), sfreq, segment_s, max_segments)


@dataclasses.dataclass(frozen=True, eq=False)
class WindowSpectrum:
    """The Welch PSD of one window or a batch, computed once and shared (``QualityReport.spectrum``):
    ``psd`` (n_chans, n_freqs) or (n_windows, n_chans, n_freqs) in uV^2/Hz, ``freqs`` in Hz."""

    freqs: np.ndarray
    psd: np.ndarray
    sfreq: float
    n_times: int
    segment_s: float = DEFAULT_SEGMENT_S


def window_spectrum(
    data: np.ndarray, sfreq: float, segment_s: float = DEFAULT_SEGMENT_S, *, dtype: type | None = None
) -> WindowSpectrum:
    """:func:`welch_psd` of a window (n_chans, n_times) or batch (n_windows, n_chans, n_times), with
    non-finite samples read as 0. ``dtype``: the transform's precision; by default float32 for
    float16/float32 input (twice as fast, within float32 rounding) and float64 otherwise."""
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
    window = hann_periodic(nperseg)  # as scipy.signal.welch uses
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


# _welch_float32 removes segment means after the transform, unless a mean exceeds this many times
# the channel's RMS (float32 rounding of the un-centred transform would then matter).
_MAX_DC_TO_RMS = 10.0
# Rows are transformed in groups whose segment buffer (bytes) stays in cache.
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

    Segment means are removed after the transform, saving a pass: for the periodic Hann window,
    ``rfft(w * (s - m))`` is ``rfft(w * s)`` minus ``m * N / 2`` in bin 0 and plus ``m * N / 4`` in
    bin 1. Rows with a large mean (``_MAX_DC_TO_RMS``) are redone with the means removed first."""
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


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


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

    Bands above Nyquist are empty (zero power). Pass ``psd=(freqs, psd)`` to reuse a PSD."""
    data, sfreq = _check_window(data, sfreq)
    freqs, pxx = welch_psd(data, sfreq) if psd is None else psd
    low, high = BANDS[0][1], BANDS[-1][2]
    powers = np.stack([band_power(freqs, pxx, lo, hi) for _, lo, hi in BANDS], axis=1)
    total = powers.sum(axis=1, keepdims=True)
    relative = np.where(total > 0, _safe_ratio(powers, total), 1.0 / len(BANDS))
    in_band = pxx[:, band_mask(freqs, low, high)]
    n_bins = in_band.shape[1]
    dist = _safe_ratio(in_band, in_band.sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(dist > 0, dist * np.log(dist), 0.0)
    entropy = -plogp.sum(axis=1) / np.log(n_bins) if n_bins > 1 else np.zeros(len(pxx))
    entropy = np.where(in_band.sum(axis=1) > 0, entropy, 1.0)
    return np.concatenate([relative, entropy[:, None]], axis=1)


def compute_features(data: np.ndarray, sfreq: float = SFREQ, *, spectrum: WindowSpectrum | None = None) -> np.ndarray:
    """All :data:`CHANNEL_FEATURES` for every channel, flattened channel-major (:func:`feature_names`),
    float32. ``spectrum``: the window's :func:`window_spectrum`, to reuse its PSD."""
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
