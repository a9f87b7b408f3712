"""The named statistics of the realism report, computed identically for every corpus.

They take the pipeline's preprocessed windows (``process_recording``: 19 canonical channels in
µV at 256 Hz, the recording's reference kept, notch and 0.5-70 Hz band-pass) of one group (one
file, or one file's windows in one eyes-open/closed state) and return plain numbers:

============================  ==================================================================
``abs_uv_median``             median over channels of each channel's median |µV|
``abs_uv_p95``                median over channels of each channel's 95th percentile |µV|
``slope_1f``                  slope of log10 power vs log10 frequency, 2-40 Hz without 7-14 Hz
                              (the alpha band), on the channel-averaged Welch spectrum
``delta_rel`` ...             ``delta`` 1-4, ``theta`` 4-8, ``alpha`` 8-13, ``beta`` 13-30 Hz
                              power over 1-30 Hz power, all channels
``alpha_peak_hz``             frequency of the largest 7-13 Hz rise of the posterior (O1, O2,
                              P3, P4) spectrum above its 1/f line
``alpha_share``               posterior 8-13 Hz power over 1-30 Hz power
``corr_near`` ...             mean Pearson correlation of channel pairs whose electrodes lie
                              < 0.8 (``near``), 0.8-1.4 (``mid``), >= 1.4 (``far``) apart on the
                              unit head sphere (neighbours in the 10-20 grid are 0.5-0.7 apart)
============================  ==================================================================

Welch spectra use 4 s Hann segments (0.25 Hz bins) with 50 % overlap inside each 10 s window.
Channels the pipeline interpolated (``channel_mask`` 0) are left out of every statistic.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.bands import band_power, bands_within

# The clinical bands (core.dsp.bands) within the 1-30 Hz total: delta from 1 Hz, no gamma.
TOTAL_BAND = (1.0, 30.0)
BANDS = {name: (low, high) for name, low, high in bands_within(*TOTAL_BAND)}
SLOPE_FIT = (2.0, 40.0)
SLOPE_EXCLUDE = (7.0, 14.0)
ALPHA_SEARCH = (7.0, 13.0)
POSTERIOR = ("O1", "O2", "P3", "P4")
DISTANCE_BINS = {"near": (0.0, 0.8), "mid": (0.8, 1.4), "far": (1.4, 2.01)}
NPERSEG = 1024
# Statistics of every group, then those only of groups with a known eyes-open/closed state.
GENERAL_STATS = (
    "abs_uv_median",
    "abs_uv_p95",
    "slope_1f",
    *(f"{band}_rel" for band in BANDS),
    *(f"corr_{name}" for name in DISTANCE_BINS),
)
STATE_STATS = ("alpha_peak_hz", "alpha_share")
_POSTERIOR_ROWS = [CANONICAL_CHANNELS.index(c) for c in POSTERIOR]


def electrode_distances() -> np.ndarray:
    """(19, 19) distances between the canonical electrodes on the unit sphere."""
    pos = canonical_positions()
    return np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)


def welch(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the (n, 19, F) Welch power spectral density (µV²/Hz) of (n, 19, T) windows."""
    return signal.welch(windows, fs=SFREQ, nperseg=min(NPERSEG, windows.shape[-1]), axis=-1)


def spectral_slope(freqs: np.ndarray, psd: np.ndarray) -> float:
    """The 1/f slope: least-squares slope of log10 PSD against log10 frequency over
    :data:`SLOPE_FIT` Hz without :data:`SLOPE_EXCLUDE` Hz (negative for EEG; -2 for a random walk)."""
    keep = (freqs >= SLOPE_FIT[0]) & (freqs <= SLOPE_FIT[1])
    keep &= ~((freqs >= SLOPE_EXCLUDE[0]) & (freqs <= SLOPE_EXCLUDE[1]))
    return float(np.polyfit(np.log10(freqs[keep]), np.log10(psd[keep]), 1)[0])


def alpha_peak(freqs: np.ndarray, psd: np.ndarray) -> float:
    """Frequency of the largest rise of ``psd`` above its 1/f line within :data:`ALPHA_SEARCH` Hz:
    the line fitted as in :func:`spectral_slope`, so a blocked alpha rhythm is still found at its
    own frequency rather than at the band's lower edge, where the 1/f background is largest."""
    keep = (freqs >= SLOPE_FIT[0]) & (freqs <= SLOPE_FIT[1])
    keep &= ~((freqs >= SLOPE_EXCLUDE[0]) & (freqs <= SLOPE_EXCLUDE[1]))
    line = np.polyfit(np.log10(freqs[keep]), np.log10(psd[keep]), 1)
    band = (freqs >= ALPHA_SEARCH[0]) & (freqs <= ALPHA_SEARCH[1])
    rise = np.log10(psd[band]) - np.polyval(line, np.log10(freqs[band]))
    return float(freqs[band][np.argmax(rise)])


def correlation_by_distance(windows: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean Pearson correlation of channel pairs in each :data:`DISTANCE_BINS` bin (pairs where a
    channel is masked in a window are left out of that window)."""
    dist = electrode_distances()
    upper = np.triu(np.ones_like(dist, dtype=bool), k=1)
    sums, counts = np.zeros(len(DISTANCE_BINS)), np.zeros(len(DISTANCE_BINS))
    for x, valid in zip(windows, mask):
        x = x - x.mean(axis=-1, keepdims=True)
        norm = np.sqrt((x**2).sum(axis=-1))
        ok = valid & (norm > 0)
        corr = (x @ x.T) / np.maximum(np.outer(norm, norm), 1e-12)
        pairs = upper & np.outer(ok, ok)
        for i, (low, high) in enumerate(DISTANCE_BINS.values()):
            sel = pairs & (dist >= low) & (dist < high)
            sums[i] += corr[sel].sum()
            counts[i] += sel.sum()
    return {f"corr_{name}": float(s / c) if c else float("nan") for name, s, c in zip(DISTANCE_BINS, sums, counts)}


def channel_spectrum(windows: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the (19, F) mean PSD per channel over the windows where it is not masked
    (NaN rows for a channel masked everywhere)."""
    freqs, psd = welch(windows)
    weights = mask[:, :, None].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (psd * weights).sum(axis=0) / weights.sum(axis=0)
    return freqs, mean


def group_statistics(windows: np.ndarray, mask: np.ndarray) -> dict:
    """All statistics of one group of (n, 19, T) µV windows with their (n, 19) channel mask.

    Returns the named statistics (module docstring), ``per_channel`` medians and 95th percentiles
    of |µV| (None where a channel is always masked) and the spectra for the figure.
    """
    windows = np.asarray(windows, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    magnitude = np.abs(windows)
    med, p95 = [], []
    for c in range(windows.shape[1]):
        values = magnitude[mask[:, c], c].ravel()
        med.append(float(np.median(values)) if values.size else float("nan"))
        p95.append(float(np.percentile(values, 95)) if values.size else float("nan"))
    freqs, spectrum = channel_spectrum(windows, mask)
    overall = np.nanmean(spectrum, axis=0)
    posterior = np.nanmean(spectrum[_POSTERIOR_ROWS], axis=0)
    total = band_power(freqs, overall, *TOTAL_BAND)
    stats = {
        "abs_uv_median": float(np.nanmedian(med)),
        "abs_uv_p95": float(np.nanmedian(p95)),
        "slope_1f": spectral_slope(freqs, overall),
        **{f"{band}_rel": float(band_power(freqs, overall, *edges) / total) for band, edges in BANDS.items()},
        **correlation_by_distance(windows, mask),
        "alpha_peak_hz": alpha_peak(freqs, posterior),
        "alpha_share": float(band_power(freqs, posterior, *BANDS["alpha"]) / band_power(freqs, posterior, *TOTAL_BAND)),
    }
    per_channel = {
        "abs_uv_median": dict(zip(CANONICAL_CHANNELS, med)),
        "abs_uv_p95": dict(zip(CANONICAL_CHANNELS, p95)),
    }
    return {"stats": stats, "per_channel": per_channel, "freqs": freqs, "overall": overall, "posterior": posterior}
