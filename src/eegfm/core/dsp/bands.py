"""The EEG frequency bands and band power over a spectrum's bins: :data:`BANDS` is the one band
table (every other band list is a view of it, :func:`bands_within`), :func:`band_power` the one
sum of a PSD over a band."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The bands clinical EEG reads power in (name, low Hz, high Hz; a band holds low <= f < high). Gamma
# stops at 70 Hz: the pipeline's band-pass edge.
BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 0.5, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 70.0),
)


def bands_within(
    low: float, high: float, bands: Sequence[tuple[str, float, float]] = BANDS
) -> tuple[tuple[str, float, float], ...]:
    """``bands`` clipped to ``[low, high)``: each edge moved inside, a band left empty dropped (a
    0.5-45 Hz feature set keeps delta to low gamma, with gamma cut at 45 Hz)."""
    clipped = ((name, max(lo, low), min(hi, high)) for name, lo, hi in bands)
    return tuple((name, lo, hi) for name, lo, hi in clipped if lo < hi)


def band_edges(bands: Sequence[tuple[str, float, float]] = BANDS) -> tuple[tuple[float, float], ...]:
    """The ``(low, high)`` pairs of named ``bands``, in order."""
    return tuple((lo, hi) for _, lo, hi in bands)


def band_mask(freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bins with ``low <= f < high``."""
    return (freqs >= low) & (freqs < high)


def band_weights(freqs: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n_freqs, n_bands) float64: 1 on each band's bins (:func:`band_mask`), so ``psd @ w`` sums
    each band's densities."""
    return np.stack([band_mask(freqs, low, high) for low, high in bands], axis=1).astype(np.float64)


def band_power(freqs: np.ndarray, psd: np.ndarray, low: float, high: float) -> np.ndarray:
    """Power in ``[low, high)`` along the last axis of a density ``psd`` (µV²/Hz gives µV²): the
    band's bins summed, times the bin width."""
    df = freqs[1] - freqs[0] if freqs.size > 1 else 1.0
    return psd[..., band_mask(freqs, low, high)].sum(axis=-1) * df
