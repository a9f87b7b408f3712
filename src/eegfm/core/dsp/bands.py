"""Frequency bands over a spectrum's bins: which bins a band holds, and the weights that sum them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def band_mask(freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bins with ``low <= f < high``."""
    return (freqs >= low) & (freqs < high)


def band_weights(freqs: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n_freqs, n_bands) float64: 1 on each band's bins (:func:`band_mask`), so ``psd @ w`` sums
    each band's densities."""
    return np.stack([band_mask(freqs, low, high) for low, high in bands], axis=1).astype(np.float64)
