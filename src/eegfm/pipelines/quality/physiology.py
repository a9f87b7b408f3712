"""Telling large brain activity from large artifacts, channel by channel.

Seizures, periodic discharges and rhythmic delta, the events the six-class model exists to find,
reach 100-500 µV and more, as electrode pops and movement do. Two properties of cerebral
activity that artifacts lack decide which is which (criteria as in the clinical artifact literature:
Tatum, Dworetzky & Schomer, *J Clin Neurophysiol* 2011; Hirsch et al., *ACNS Standardized Critical
Care EEG Terminology*, 2021):

- **A field.** A cortical generator large enough to be seen on the scalp (some 6-10 cm² of cortex)
  reaches the neighbouring electrodes too, with the same waveform at a lower amplitude. An electrode
  pop, a loose contact or a single-lead movement is confined to one electrode. Measured as the
  largest correlation of the channel with a *measured* neighbour within :data:`NEIGHBOUR_DISTANCE`
  (the 10-20 system's adjacent electrodes; interpolated channels would correlate by construction).
- **Rhythmicity or periodicity.** ACNS seizures are evolving rhythmic discharges, PDs recur at
  nearly regular intervals (0.5-3 Hz), RDA is a uniform rhythm (>0.5-4 Hz). Movement, sweat and
  electrode artifacts are irregular. Measured as the peak of the channel's autocorrelation after
  its first zero crossing, at lags of ``rhythm_lags_s`` (0.1-2.5 s: 0.4-10 Hz), on the signal and
  on its 0.1 s amplitude envelope (a train of narrow discharges with a jittered period keeps a
  periodic envelope although the discharges no longer overlap sample for sample).

A channel with both carries *rhythmic activity with a field*: its amplitude is not held against
the window (``high_amplitude``, the excursion part of ``artifact_ratio``, the channel's score), and
the window is marked ``rhythmic_high_amplitude`` where it is large, a physiological sign the
quality report records without penalty. The quality step tests only channels whose peak-to-peak
reaches ``QualityConfig.rhythm_test_min_ptp_uv``, the smallest amplitude any of those rules weighs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft
from scipy.ndimage import uniform_filter1d

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions

# Unit-sphere distance of the 10-20 system's adjacent electrodes (0.49-0.93): a channel's neighbours.
NEIGHBOUR_DISTANCE = 0.95
ENVELOPE_S = 0.1
SEGMENT_S = 2.5


@lru_cache(maxsize=1)
def neighbours() -> np.ndarray:
    """(19, 19) bool: electrode pairs of the canonical montage within :data:`NEIGHBOUR_DISTANCE`."""
    pos = canonical_positions()
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    near = (dist <= NEIGHBOUR_DISTANCE) & ~np.eye(len(pos), dtype=bool)
    near.setflags(write=False)
    return near


def field_support(x: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(n_windows, 19): each channel's largest correlation with a measured neighbour (0 without
    one) in windows ``x`` (n_windows, 19, n_times)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    norms = np.sqrt(np.einsum("wct,wct->wc", centred, centred))
    corr = np.einsum("wct,wdt->wcd", centred, centred)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr /= norms[:, :, None] * norms[:, None, :]
    corr = np.nan_to_num(corr, nan=0.0)
    allowed = neighbours()[None, :, :] & measured[:, None, :]
    return np.where(allowed, corr, -1.0).max(axis=-1).clip(0.0, 1.0)


def _envelope(x: np.ndarray, sfreq: float) -> np.ndarray:
    """|x| averaged over :data:`ENVELOPE_S`."""
    return uniform_filter1d(np.abs(x), max(1, int(round(ENVELOPE_S * sfreq))), axis=-1, mode="nearest")


def autocorrelation_peak(x: np.ndarray, sfreq: float, lags_s: tuple[float, float]) -> np.ndarray:
    """(...,) per row of ``x`` (..., n_times): the largest unbiased autocorrelation (lag 0 = 1) at
    lags in ``lags_s`` after its first zero crossing; 0 where it never crosses zero in that range
    (a drift) or the row is constant."""
    n = x.shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    max_lag = min(n - 1, int(round(lags_s[1] * sfreq)))
    # Padding to n + max_lag is enough: no circular wrap reaches the lags kept.
    size = next_fast_len(n + max_lag, real=True)
    spectrum = rfft(centred.astype(np.float32), size, axis=-1)  # float32: half the time, ample for a 0-1 score
    acf = irfft(spectrum.real**2 + spectrum.imag**2, size, axis=-1)[..., : max_lag + 1]
    acf = acf / (n - np.arange(max_lag + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        acf = np.nan_to_num(acf / acf[..., :1], nan=0.0)
    crossed = np.maximum.accumulate(acf <= 0.0, axis=-1)
    crossed[..., : int(round(lags_s[0] * sfreq))] = False
    return np.where(crossed, acf, 0.0).max(axis=-1).clip(0.0, 1.0)


def rhythmicity(x: np.ndarray, sfreq: float, lags_s: tuple[float, float]) -> np.ndarray:
    """(...,) how rhythmic or periodic each row of ``x`` (..., n_times) is, in [0, 1]: the largest
    :func:`autocorrelation_peak` of the row and of its amplitude envelope, over the whole row and
    as the median over its :data:`SEGMENT_S` pieces (an evolving seizure rhythm changes frequency
    too fast to correlate with itself across 10 s, yet is regular over a few seconds)."""
    envelope = _envelope(x, sfreq)
    found = np.maximum(autocorrelation_peak(x, sfreq, lags_s), autocorrelation_peak(envelope, sfreq, lags_s))
    size = int(round(SEGMENT_S * sfreq))
    n_pieces = x.shape[-1] // size
    if n_pieces >= 2:
        short_lags = (lags_s[0], min(lags_s[1], SEGMENT_S / 2))
        shape = (*x.shape[:-1], n_pieces, size)
        pieces = np.maximum(
            autocorrelation_peak(x[..., : n_pieces * size].reshape(shape), sfreq, short_lags),
            autocorrelation_peak(envelope[..., : n_pieces * size].reshape(shape), sfreq, short_lags),
        )
        found = np.maximum(found, np.median(pieces, axis=-1))
    return found


def rhythmic_field(
    x: np.ndarray,
    sfreq: float,
    measured: np.ndarray,
    min_correlation: float,
    min_rhythm: float,
    lags_s: tuple,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """(n_windows, n_chans) bool: measured channels carrying rhythmic or periodic activity with a
    field (see the module docstring); all False unless the channels are the canonical 19. Only
    ``candidates`` (n_windows, n_chans) are tested where given: the autocorrelations are the job's
    largest cost per window, and wasted on a channel too small for its amplitude to count."""
    found = measured.astype(bool) if candidates is None else measured.astype(bool) & candidates
    if x.shape[1] != len(CANONICAL_CHANNELS) or not found.any():
        return np.zeros(x.shape[:2], dtype=bool)
    rows = np.flatnonzero(found.any(axis=1))
    part = x[rows].astype(np.float64, copy=False)
    tested = found[rows] & (field_support(part, measured[rows]) >= min_correlation)
    if tested.any():
        tested[tested] = rhythmicity(part[tested], sfreq, lags_s) >= min_rhythm
    found[:] = False
    found[rows] = tested
    return found
