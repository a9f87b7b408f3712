"""The simple baselines every benchmark run reports beside eegfm, on the same windows and split.

- ``class_prior``: the training split's mean target for every window.
- ``band_power_lr``: band powers done as a careful user does them (``benchmarks/careful_baseline.py``
  is that user's script, the reference this row must reach): each window's Welch PSD per channel,
  log10 absolute power in the bands of :data:`BANDS` (0.5-45 Hz) and log10 relative power (band
  over 0.5-45 Hz), standardized on the training windows, then a class-balanced logistic regression
  (multinomial on vote distributions, each window weighted by its vote fractions). Its inverse
  regularization ``C`` is chosen on the validation split (class-balanced log loss) and the model
  is fitted on the training windows alone; without a validation split, by subject-grouped
  cross-validation on the training split. Test subjects never tune it.

Every feature is a function of one window: no statistic spans a subject's windows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from eegfm.evaluation.comparison.windows import WindowSet
from eegfm.metrics.losses import class_prior_log_probs
from eegfm.model.linear_fit import (
    c_by_grouped_cv,
    c_by_validation,
    fit_pipeline,
    linear_readout_of,
    log_loss,
    soft_rows,
)
from eegfm.model.linear_readout import LinearReadout
from eegfm.model.spectral_features import band_power_features

C_CHOSEN_BY = "class-balanced log loss on the validation split"  # what a report says chose C


def targets(windows: WindowSet, n_classes: int) -> np.ndarray:
    """[N, C] target distributions: the votes normalised where a window has them, else one-hot."""
    votes = windows.votes[:, :n_classes].astype(np.float64)
    total = votes.sum(1, keepdims=True)
    one_hot = np.eye(n_classes)[np.clip(windows.label, 0, n_classes - 1)]
    return np.where(total > 0, votes / np.maximum(total, 1e-12), one_hot)


def class_prior(train: WindowSet, n_classes: int):
    """A predictor of the training split's mean target distribution, floored as fine-tuning's
    class-prior baseline is (a class absent from training keeps a finite log-probability)."""
    prior = class_prior_log_probs(torch.as_tensor(targets(train, n_classes).mean(0))).double().exp().numpy()
    return lambda windows: np.tile(prior, (len(windows), 1))


@dataclasses.dataclass(frozen=True)
class ReadoutFit:
    """A fitted readout of ``featurize``'s features and the C validation chose; called on a window
    set, its [N, C] class probabilities."""

    linear: LinearReadout
    c: float
    featurize: Callable[[WindowSet], np.ndarray]

    def __call__(self, windows: WindowSet) -> np.ndarray:
        return self.linear.probabilities(self.featurize(windows))


def feature_lr(
    featurize,
    train: WindowSet,
    n_classes: int,
    validation: WindowSet | None = None,
    *,
    balanced: bool = True,
    folds: int = 5,
):
    """Fit a logistic regression on ``featurize(windows)`` ([N, F], one row per window) of
    ``train``; returns its :class:`ReadoutFit`.

    ``validation``: the windows C is chosen on (``linear_fit.c_by_validation``); the model is then
    fitted on ``train`` alone, so the validation row scores a model that never saw those
    subjects. ``None`` (or no window): subject-grouped ``folds``-fold CV on ``train`` chooses.
    ``balanced`` weights classes by inverse frequency (decisions that are not all the majority class).
    """
    x, y, weight, groups = soft_rows(featurize(train), targets(train, n_classes), train.subject)
    if validation is not None and len(validation):
        c = c_by_validation(x, y, weight, featurize(validation), targets(validation, n_classes), balanced)
    else:
        c, _ = c_by_grouped_cv(x, y, weight, groups, balanced, folds)
    # Not refitted on training + validation: the validation row would then score windows the model
    # was fitted on, and the test row would come from a model validation never saw.
    return ReadoutFit(linear_readout_of(fit_pipeline(x, y, weight, c, balanced), n_classes), c, featurize)


def lowest_validation_loss(featurizers, train: WindowSet, n_classes: int, validation: WindowSet):
    """:func:`feature_lr` on each of ``featurizers`` (``{name: featurize}``), the fit with the lowest
    class-balanced validation log loss kept (ties: the first named); returns ``(name, fit)``."""
    target = targets(validation, n_classes)
    fits = {name: feature_lr(featurize, train, n_classes, validation) for name, featurize in featurizers.items()}
    losses = {name: log_loss(fit(validation), target, balanced=True) for name, fit in fits.items()}
    name = min(fits, key=losses.__getitem__)
    return name, fits[name]


def band_power_lr(
    train: WindowSet, n_classes: int, validation: WindowSet | None = None, *, balanced: bool = True, folds: int = 5
):
    """The band-power baseline: :func:`feature_lr` on :func:`band_power_features`."""
    return feature_lr(
        lambda windows: band_power_features(windows.eeg), train, n_classes, validation, balanced=balanced, folds=folds
    )
