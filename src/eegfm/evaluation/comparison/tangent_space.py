"""Each window's spatial covariance per frequency band, in the tangent space of the training
windows' mean: the Riemannian-geometry features a careful EEG user reaches for (pyRiemann), read
by the ``tangent_space_lr`` baseline and, where validation prefers them, by eegfm's spectral readout.

The features themselves are ``model.spectral_features`` (one definition, which an exported model
computes again on new EEG): per band of ``BANDS`` the shrunk co-spectral matrix, mapped to the
tangent space at the ``metric`` mean of the training windows' matrices. A matrix holds both each
channel's power and how channels co-vary, the part per-channel band powers cannot show (a source
seen on many electrodes at once).

Every feature is one window's own; the reference point is a statistic of the training windows
alone, fixed before any validation or test window is read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from eegfm.evaluation.comparison import baselines
from eegfm.evaluation.comparison.windows import WindowSet, computed_once
from eegfm.model.spectral_features import METRICS, TangentMap, band_covariances

__all__ = ["METRICS", "band_covariances_of", "tangent_space", "tangent_space_lr"]


def band_covariances_of() -> Callable[[WindowSet], np.ndarray]:
    """A reader of window sets' [N, bands, C, C] shrunk co-spectral matrices, each set's computed
    once: one reader can serve several :func:`tangent_space` maps."""
    return computed_once(lambda windows: band_covariances(windows.eeg))


def tangent_space(
    train: WindowSet, metric: str = "riemann", covariances: Callable[[WindowSet], np.ndarray] | None = None
) -> tuple[TangentMap, Callable[[WindowSet], np.ndarray]]:
    """The :class:`TangentMap` at the ``metric`` mean of ``train``'s matrices (read by
    ``covariances``, default a new :func:`band_covariances_of`) and a featurizer of window sets
    through it: [N, bands * C(C+1)/2]."""
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}; got {metric!r}")
    covariances = covariances or band_covariances_of()
    tangent = TangentMap.fit(covariances(train), metric)
    return tangent, lambda windows: tangent.transform(covariances(windows))


def tangent_space_lr(
    train: WindowSet,
    n_classes: int,
    validation: WindowSet,
    covariances: Callable[[WindowSet], np.ndarray] | None = None,
):
    """The ``tangent_space_lr`` baseline: :func:`baselines.feature_lr` (class-balanced, C on
    validation) on :func:`tangent_space` features under each metric of :data:`METRICS`, the one
    with the lower class-balanced validation log loss kept; returns ``(fit, tangent map)``.
    ``covariances``: a :func:`band_covariances_of` reader other fits share (default: a new one)."""
    covariances = covariances or band_covariances_of()
    maps = {metric: tangent_space(train, metric, covariances) for metric in METRICS}
    featurizers = {metric: computed_once(featurize) for metric, (_, featurize) in maps.items()}
    metric, fit = baselines.lowest_validation_loss(featurizers, train, n_classes, validation)
    return fit, maps[metric][0]  # a tie keeps the first: pyRiemann's default
