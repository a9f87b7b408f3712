"""Each window's spatial covariance per frequency band, in the tangent space of the training
windows' mean: the Riemannian-geometry features a careful EEG user reaches for (pyRiemann), read
by the ``tangent_space_lr`` baseline and, where validation prefers them, by eegfm's spectral readout.

Per window and band of :data:`baselines.BANDS`: the co-spectral matrix (the real part of the
cross-spectra, ``pyriemann.estimation.CoSpectra``: Hann segments of :data:`baselines.SEGMENT_S`,
50 % overlap, as the band powers' Welch estimate), averaged over the band's bins; shrunk towards
the identity (an interpolated channel is a mix of its neighbours, so the matrix is singular
without it); then mapped to the tangent space at the mean of the training windows' matrices
(``pyriemann.tangentspace.TangentSpace``). A matrix holds both each channel's power and how
channels co-vary, the part per-channel band powers cannot show (a source seen on many electrodes
at once).

Every feature is one window's own; the reference point is a statistic of the training windows
alone, fixed before any validation or test window is read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pyriemann.estimation import CoSpectra, Shrinkage
from pyriemann.tangentspace import TangentSpace

from eegfm.contract.schema import SFREQ
from eegfm.evaluation.benchmark import baselines
from eegfm.evaluation.benchmark.windows import WindowSet, computed_once

# The reference point's geometry. "riemann" (the affine-invariant mean) is pyRiemann's default;
# "logeuclid" (the mean of matrix logarithms) does not whiten by the mean. On eegmat's validation
# subjects the log-Euclidean map read rest vs task far better (AUROC 0.956 against 0.737); on a
# simulated group study both were near perfect: each corpus's validation chooses.
METRICS: tuple[str, ...] = ("riemann", "logeuclid")
SHRINKAGE = 0.01  # of the mean eigenvalue, added to every eigenvalue
_CHUNK = 128  # windows per co-spectra call: bounds the [chunk, C, C, bins] array


def band_cospectra(eeg: np.ndarray, sfreq: float = SFREQ) -> np.ndarray:
    """[N, bands, C, C] co-spectral matrices of ``eeg`` [N, C, T] (uV), one per band of
    :data:`baselines.BANDS`, the mean over the band's frequency bins; non-finite samples read as 0."""
    segment = int(min(round(baselines.SEGMENT_S * sfreq), eeg.shape[-1]))
    estimator = CoSpectra(window=segment, overlap=0.5, fmin=0.0, fmax=sfreq / 2, fs=sfreq)
    out = np.zeros((len(eeg), len(baselines.BANDS), eeg.shape[1], eeg.shape[1]))
    for start in range(0, len(eeg), _CHUNK):
        chunk = np.nan_to_num(eeg[start : start + _CHUNK].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        spectra, freqs = estimator.transform(chunk), estimator.freqs_
        for b, (low, high) in enumerate(baselines.BANDS):
            out[start : start + _CHUNK, b] = spectra[..., (freqs >= low) & (freqs < high)].mean(-1)
    return out


def band_covariances() -> Callable[[WindowSet], np.ndarray]:
    """A reader of window sets' [N, bands, C, C] shrunk co-spectral matrices, each set's computed
    once: one reader can serve several :func:`tangent_space` maps."""
    shrink = Shrinkage(shrinkage=SHRINKAGE)

    def shrunk(windows: WindowSet) -> np.ndarray:
        found = band_cospectra(windows.eeg)
        return np.stack([shrink.transform(found[:, b]) for b in range(len(baselines.BANDS))], axis=1)

    return computed_once(shrunk)


def tangent_space(
    train: WindowSet, metric: str = "riemann", covariances: Callable[[WindowSet], np.ndarray] | None = None
) -> Callable[[WindowSet], np.ndarray]:
    """A featurizer of window sets: [N, bands * C(C+1)/2], each band's shrunk co-spectral matrix
    (read by ``covariances``, default a new :func:`band_covariances`) in the tangent space at the
    ``metric`` mean of ``train``'s matrices, fitted here, once."""
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}; got {metric!r}")
    covariances = covariances or band_covariances()
    reference = covariances(train)
    maps = [TangentSpace(metric=metric).fit(reference[:, b]) for b in range(len(baselines.BANDS))]

    def featurize(windows: WindowSet) -> np.ndarray:
        found = covariances(windows)
        return np.concatenate([tangent.transform(found[:, b]) for b, tangent in enumerate(maps)], axis=1)

    return featurize


def tangent_space_lr(train: WindowSet, n_classes: int, validation: WindowSet):
    """The ``tangent_space_lr`` baseline: :func:`baselines.feature_lr` (class-balanced, C on
    validation) on :func:`tangent_space` features under each metric of :data:`METRICS`, the one
    with the lower class-balanced validation log loss kept; returns ``(predict, {"metric", "C"})``."""
    covariances = band_covariances()
    featurizers = {metric: computed_once(tangent_space(train, metric, covariances)) for metric in METRICS}
    metric, predict, c = baselines.lowest_validation_loss(featurizers, train, n_classes, validation)
    return predict, {"metric": metric, "C": c}  # a tie keeps the first: pyRiemann's default
