"""The simple baselines every benchmark run reports beside eegfm, on the same windows and split.

- ``class_prior``: the training split's mean target for every window.
- ``band_power_lr``: log band powers (delta ... gamma, per channel) of each window, standardized on
  the training windows, then a logistic regression (multinomial on vote distributions, each window
  weighted by its vote fractions). Its inverse regularization ``C`` is chosen by subject-grouped
  cross-validation on the training split alone, so validation and test subjects never tune it.

Every feature is a function of one window: no statistic spans a subject's windows.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eegfm.evaluation.benchmark.windows import WindowSet
from eegfm.pipelines.features import BANDS, band_weights, window_spectrum
from eegfm.pipelines.schema import SFREQ
from eegfm.training.losses import class_prior_log_probs

C_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)


def log_band_powers(eeg: np.ndarray, sfreq: float = SFREQ) -> np.ndarray:
    """[N, channels * bands] log10 band power (uV^2) per channel and band of ``BANDS``."""
    spectrum = window_spectrum(eeg, sfreq, dtype=np.float64)
    df = spectrum.freqs[1] - spectrum.freqs[0]
    power = spectrum.psd @ band_weights(spectrum.freqs, [(lo, hi) for _, lo, hi in BANDS]) * df
    return np.log10(power + 1e-6).reshape(len(eeg), -1)


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


def _soft_rows(x: np.ndarray, y: np.ndarray, groups: np.ndarray):
    """Each window once per class it has target mass on, weighted by that mass."""
    rows, classes = np.nonzero(y > 0)
    return x[rows], classes, y[rows, classes], groups[rows]


def _fit(x, y, weight, c: float, balanced: bool):
    classifier = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
    return make_pipeline(StandardScaler(), classifier).fit(x, y, logisticregression__sample_weight=weight)


def _cv_log_loss(x, y, weight, groups, c: float, balanced: bool, folds: int) -> float:
    losses = []
    for fit_rows, held_rows in GroupKFold(n_splits=folds).split(x, y, groups):
        if len(set(y[fit_rows].tolist())) < 2:
            continue
        model = _fit(x[fit_rows], y[fit_rows], weight[fit_rows], c, balanced)
        probs = np.full((len(held_rows), int(y.max()) + 1), 1e-12)
        probs[:, model.classes_] = np.clip(model.predict_proba(x[held_rows]), 1e-12, 1.0)
        losses.append(float(-(weight[held_rows] * np.log(probs[np.arange(len(held_rows)), y[held_rows]])).sum()))
    return sum(losses) if losses else np.inf


def band_power_lr(train: WindowSet, n_classes: int, *, balanced: bool = True, folds: int = 5):
    """Fit the band-power logistic regression on ``train``; returns ``(predict, chosen C)``.

    ``balanced`` weights classes by inverse frequency (decisions that are not all the majority class).
    """
    x, y, weight, groups = _soft_rows(log_band_powers(train.eeg), targets(train, n_classes), train.subject)
    folds = min(folds, len(set(groups.tolist())))
    c = min(C_GRID, key=lambda c: _cv_log_loss(x, y, weight, groups, c, balanced, folds)) if folds >= 2 else 1.0
    model = _fit(x, y, weight, c, balanced)

    def predict(windows: WindowSet) -> np.ndarray:
        probs = np.zeros((len(windows), n_classes))
        probs[:, model.classes_] = model.predict_proba(log_band_powers(windows.eeg))
        return probs

    return predict, c
