"""Fitting a :class:`~eegfm.model.linear_readout.LinearReadout`: standardization, then a
logistic regression (scikit-learn, L-BFGS), its inverse regularization ``C`` chosen on held-out
people. The benchmark's readouts and baselines fit with it (``evaluation.comparison.baselines``),
and so does a fine-tuning run's probe head (``training.finetune.probe_head``): one definition of
how eegfm fits a linear model on window features.

Targets are distributions per window ([N, K]: one-hot labels, or normalised expert votes); a
window is one row per class it has mass on, weighted by that mass, so vote distributions train a
multinomial regression as they are. ``balanced`` weights the classes by inverse frequency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from eegfm.model.linear_readout import LinearReadout

# Half-decade steps. Subjects differ more than one subject's windows, so strong regularization
# often wins; on eegmat's shared subjects (4 held out as a pseudo-test, 4 to choose on, 12 draws)
# adding 1e-4 and 3e-4 scored no better.
C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 1, 9))


def soft_rows(x: np.ndarray, target: np.ndarray, groups: np.ndarray):
    """Each window once per class it has target mass on: ``(x, class, weight, group)`` rows."""
    rows, classes = np.nonzero(target > 0)
    return x[rows], classes, target[rows, classes], groups[rows]


def fit_pipeline(x, y, weight, c: float, balanced: bool):
    """A fitted ``StandardScaler`` + ``LogisticRegression(C=c)`` pipeline of rows ``x`` [R, F],
    classes ``y`` [R] and row weights ``weight`` [R]."""
    # The scaler takes the same weights: each training window counts once however its votes split.
    classifier = LogisticRegression(C=c, max_iter=5000, class_weight="balanced" if balanced else None)
    # One BLAS thread: the rows are hundreds to a few thousand, and a second BLAS thread beside
    # torch's OpenMP pool spent its time waiting (a leave-one-site-out fold of the demo chose C in
    # 67 s with two, 4.3 s with one; the same fits, the same C).
    with threadpool_limits(limits=1, user_api="blas"):
        return make_pipeline(StandardScaler(), classifier).fit(
            x, y, standardscaler__sample_weight=weight, logisticregression__sample_weight=weight
        )


def linear_readout_of(model, n_classes: int) -> LinearReadout:
    """A fitted pipeline (:func:`fit_pipeline`) as plain arrays, the form every prediction (the
    benchmark's, an exported model's, a probe head's weights) goes through."""
    scaler, classifier = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    return LinearReadout(
        mean=np.asarray(scaler.mean_, dtype=np.float64),
        scale=np.asarray(scaler.scale_, dtype=np.float64),
        coef=np.asarray(classifier.coef_, dtype=np.float64),
        intercept=np.asarray(classifier.intercept_, dtype=np.float64),
        classes=np.asarray(classifier.classes_, dtype=np.int64),
        n_classes=n_classes,
    )


def log_loss(probs: np.ndarray, target: np.ndarray, balanced: bool) -> float:
    """Cross-entropy of ``probs`` against target distributions; ``balanced``: the mean over the
    classes present of each class's mean, as the balanced fit weights them."""
    loss = -target * np.log(np.clip(probs, 1e-12, 1.0))  # [N, C]: each window's loss per target class
    mass = target.sum(0)
    if not balanced:
        return float(loss.sum() / max(mass.sum(), 1e-12))
    present = mass > 0
    return float(np.mean(loss.sum(0)[present] / mass[present]))


def c_by_validation(x, y, weight, val_x, val_target, balanced: bool, grid: Sequence[float] = C_GRID) -> float:
    """The C of ``grid`` with the lowest validation log loss, ties to the smaller C.

    Log loss, not the reported metrics themselves: on a few validation subjects balanced accuracy
    moves in steps of one window and AUROC ignores calibration, so both tie or jump between
    neighbouring C; log loss is proper, smooth in C, and reads vote distributions as they are. On
    eegmat's shared subjects (12 draws of 4 to choose on, 4 held out) it chose Cs that scored higher
    held-out AUROC than choosing by the mean of balanced accuracy and AUROC did (0.757 vs 0.740).
    Class-balanced when the fit is, so validation scores what the fit optimizes.
    """
    losses = validation_losses(x, y, weight, val_x, val_target, balanced, grid)
    return min(losses, key=losses.__getitem__)  # the first of equals: ties to the smaller C


def validation_losses(
    x, y, weight, val_x, val_target, balanced: bool, grid: Sequence[float] = C_GRID
) -> dict[float, float]:
    """Each C of ``grid`` (ascending): the validation log loss (:func:`log_loss`) of the fit at that C."""
    n_classes = val_target.shape[1]
    losses = {}
    for c in sorted(grid):
        fitted = linear_readout_of(fit_pipeline(x, y, weight, c, balanced), n_classes)
        losses[c] = log_loss(fitted.probabilities(val_x), val_target, balanced)
    return losses


def grouped_cv_loss(x, y, weight, groups, c: float, balanced: bool, folds: int) -> float:
    """The held-out log loss of ``folds``-fold cross-validation grouped by ``groups`` (no person
    in two folds), over every fold's held-out rows (``balanced``: the mean of each class's mean,
    as :func:`log_loss`); inf where no fold has two classes to fit."""
    n_classes = int(y.max()) + 1
    loss, mass = np.zeros(n_classes), np.zeros(n_classes)
    for fit_rows, held_rows in GroupKFold(n_splits=folds).split(x, y, groups):
        if len(set(y[fit_rows].tolist())) < 2:
            continue
        model = fit_pipeline(x[fit_rows], y[fit_rows], weight[fit_rows], c, balanced)
        probs = np.full((len(held_rows), n_classes), 1e-12)
        probs[:, model.classes_] = np.clip(model.predict_proba(x[held_rows]), 1e-12, 1.0)
        held_y, held_weight = y[held_rows], weight[held_rows]
        np.add.at(loss, held_y, -held_weight * np.log(probs[np.arange(len(held_rows)), held_y]))
        np.add.at(mass, held_y, held_weight)
    if not mass.any():
        return np.inf
    present = mass > 0
    return float(np.mean(loss[present] / mass[present]) if balanced else loss.sum() / mass.sum())


def c_by_grouped_cv(
    x, y, weight, groups, balanced: bool, folds: int = 5, grid: Sequence[float] = C_GRID
) -> tuple[float, dict[float, float]]:
    """The C of ``grid`` with the lowest :func:`grouped_cv_loss` over at most ``folds`` folds
    (fewer where there are fewer groups; ties to the smaller C), and every C's loss (the choice's
    spread); ``(1, {})`` where there are fewer than two groups."""
    folds = min(folds, len(set(np.asarray(groups).tolist())))
    if folds < 2:
        return 1.0, {}
    losses = {c: grouped_cv_loss(x, y, weight, groups, c, balanced, folds) for c in grid}
    return min(losses, key=losses.__getitem__), losses
