"""A window's spectral features, as a careful EEG user computes them: per-channel band powers and
each band's spatial covariance in a tangent space. Numpy, one window at a time: the benchmark's
baselines and readout fit on them, and an exported readout (``model.fused``) computes them again
on new EEG with the same code.

- :func:`band_power_features`: each channel's Welch PSD (Hann segments of :data:`SEGMENT_S`, 50 %
  overlap), log10 absolute power in the bands of :data:`BANDS` and log10 relative power (band over
  0.5-45 Hz).
- :func:`band_covariances`: each band's co-spectral matrix (pyRiemann's ``CoSpectra``, the same
  segments), the mean over the band's bins, shrunk by :data:`SHRINKAGE` of its mean eigenvalue (an
  interpolated channel is a mix of its neighbours, so the matrix is singular without it).
- :class:`TangentMap`: those matrices in the tangent space at a reference point per band (the
  ``metric`` mean of the training windows' matrices, pyRiemann's ``TangentSpace``), fixed before any
  held-out window is read. Its state is plain arrays, saved and loaded without pickle.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pyriemann.estimation import CoSpectra, Shrinkage
from pyriemann.geometry.base import ddexpm
from pyriemann.geometry.tangentspace import tangent_space, unupper, upper
from pyriemann.tangentspace import TangentSpace
from scipy.signal import welch

from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.bands import band_weights
from eegfm.model.band_powers import COVARIANCE_BANDS
from eegfm.model.spd import SHRINKAGE as SPD_SHRINKAGE

# delta, theta, alpha, beta, low gamma: core.dsp.bands.BANDS cut at 45 Hz, the bands the network's
# covariance branch reads too (model.band_powers says why not higher).
BANDS: tuple[tuple[float, float], ...] = COVARIANCE_BANDS
SEGMENT_S = 2.0  # Welch segments: 0.5 Hz bins, and 4 averaged segments (50 % overlap) in a 5 s window
# The reference point's geometry. "riemann" (the affine-invariant mean) is pyRiemann's default;
# "logeuclid" (the mean of matrix logarithms) does not whiten by the mean. On eegmat's validation
# subjects the log-Euclidean map read rest vs task far better (AUROC 0.956 against 0.737); on a
# simulated group study both were near perfect: each corpus's validation chooses.
METRICS: tuple[str, ...] = ("riemann", "logeuclid")
SHRINKAGE = SPD_SHRINKAGE  # of the mean eigenvalue, added to every eigenvalue (the covariance branch's too)
_FLOOR = 1e-6  # uV^2: a flat (or zeroed) channel gives finite logs, and uniform relative powers
_POWER_CHUNK = 256  # windows per Welch call: bounds the float64 copy and scipy's segment buffers
_COVARIANCE_CHUNK = 128  # windows per co-spectra call: bounds the [chunk, C, C, bins] array


def _finite(eeg: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(eeg, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _segment(n_times: int, sfreq: float) -> int:
    return int(min(round(SEGMENT_S * sfreq), n_times))


def band_power_features(eeg: np.ndarray, sfreq: float = SFREQ) -> np.ndarray:
    """[N, channels * 2 * bands] features of ``eeg`` [N, channels, T] (uV): per channel, log10
    absolute power (uV^2) in each of :data:`BANDS`, then log10 relative power (band over the
    0.5-45 Hz total). Non-finite samples read as 0."""
    eeg = np.asarray(eeg)
    nperseg = _segment(eeg.shape[-1], sfreq)
    parts = []
    for start in range(0, len(eeg), _POWER_CHUNK):
        x = _finite(eeg[start : start + _POWER_CHUNK])
        freqs, psd = welch(x, fs=sfreq, window="hann", nperseg=nperseg, noverlap=nperseg // 2, axis=-1)
        parts.append(psd @ band_weights(freqs, BANDS) * (freqs[1] - freqs[0]))
    absolute = np.concatenate(parts) if parts else np.zeros((0, eeg.shape[1], len(BANDS)))
    # The bands tile 0.5-45 Hz, so their sum is the total: relative powers sum to 1 per channel.
    relative = (absolute + _FLOOR) / (absolute.sum(-1, keepdims=True) + len(BANDS) * _FLOOR)
    return np.stack([np.log10(absolute + _FLOOR), np.log10(relative)], axis=-2).reshape(len(eeg), -1)


def band_covariances(eeg: np.ndarray, sfreq: float = SFREQ) -> np.ndarray:
    """[N, bands, C, C] shrunk co-spectral matrices of ``eeg`` [N, C, T] (uV), one per band of
    :data:`BANDS`; non-finite samples read as 0."""
    eeg = np.asarray(eeg)
    estimator = CoSpectra(window=_segment(eeg.shape[-1], sfreq), overlap=0.5, fmin=0.0, fmax=sfreq / 2, fs=sfreq)
    shrink = Shrinkage(shrinkage=SHRINKAGE)
    out = np.zeros((len(eeg), len(BANDS), eeg.shape[1], eeg.shape[1]))
    for start in range(0, len(eeg), _COVARIANCE_CHUNK):
        spectra = estimator.transform(_finite(eeg[start : start + _COVARIANCE_CHUNK]))
        freqs = estimator.freqs_
        for b, (low, high) in enumerate(BANDS):
            out[start : start + _COVARIANCE_CHUNK, b] = shrink.transform(
                spectra[..., (freqs >= low) & (freqs < high)].mean(-1)
            )
    return out


@dataclasses.dataclass(frozen=True)
class TangentMap:
    """Each band's matrices in the tangent space at ``reference`` [bands, C, C] under ``metric``."""

    metric: str
    reference: np.ndarray

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric: expected one of {', '.join(METRICS)}; got {self.metric!r}")
        if self.reference.ndim != 3 or self.reference.shape[0] != len(BANDS):
            raise ValueError(f"reference: expected [{len(BANDS)} bands, C, C]; got {self.reference.shape}")

    @classmethod
    def fit(cls, covariances: np.ndarray, metric: str) -> TangentMap:
        """The map at the ``metric`` mean of ``covariances`` [N, bands, C, C] (the training windows')."""
        reference = [TangentSpace(metric=metric).fit(covariances[:, b]).reference_ for b in range(len(BANDS))]
        return cls(metric, np.stack(reference))

    def transform(self, covariances: np.ndarray) -> np.ndarray:
        """[N, bands * C(C+1)/2]: each band's matrices mapped at its reference point."""
        parts = [tangent_space(covariances[:, b], self.reference[b], metric=self.metric) for b in range(len(BANDS))]
        return np.concatenate(parts, axis=1)


def log_euclidean_chart(vectors: np.ndarray, n_bands: int = len(BANDS)) -> np.ndarray:
    """[F, F] the linear map ``chart`` with ``vectors @ chart`` = pyRiemann's log-Euclidean tangent
    vectors at the vectors' mean (``TangentMap`` with ``"logeuclid"``), up to one constant row.

    ``vectors`` [N, F]: each band's matrix logarithm as an upper triangle, the bands side by side
    (``model.band_powers.welch_tangent_features``, at the identity). pyRiemann maps
    ``log X - log M`` through the derivative of the matrix exponential at ``log M``: a fixed
    linear map of ``log X``, which a linear model on these vectors can read as well, but which
    decides what an L2 penalty on standardized features favours (the strong rhythms' directions).
    On eegmat's validation people a regression on the identity's vectors read rest vs arithmetic
    at 0.796 AUROC, on the same vectors through this map at 0.956 (docs/model-quality.md).
    """
    width = vectors.shape[1] // n_bands
    chart = np.zeros((vectors.shape[1], vectors.shape[1]))
    for band in range(n_bands):
        columns = slice(band * width, (band + 1) * width)
        mean_log = unupper(vectors[:, columns]).mean(0)
        chart[columns, columns] = upper(ddexpm(unupper(np.eye(width)), mean_log))  # row i: the map of e_i
    return chart
