"""A fine-tuned model's held-out metrics (eval.json, loso.json, robustness.json): KL and accuracy
against the class-prior baseline, ranking scores, calibration, per-site metrics, the confusion
matrix and temperature scaling. ``cfg`` is a run's ``FinetuneConfig`` (``task`` and ``head`` are
read); ``logits`` are the head's output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from eegfm.metrics import losses
from eegfm.metrics.calibration import calibration_metrics, reliability_bins

TEMPERATURE_RANGE = (0.01, 100.0)  # fit_temperature's search range


def class_logits(logits: torch.Tensor, cfg: Any) -> torch.Tensor:
    """Logits over the classes: a binary head's single logit becomes ``[0, z]``."""
    return losses.binary_logits(logits) if cfg.head == "binary" else logits


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float]:
    """(T, KL at T=1, KL at T) for the temperature minimising the mean KL(target || softmax(logits / T)):
    a log-spaced grid over ``TEMPERATURE_RANGE``, then Brent's bounded search between the best grid
    point's neighbours. T=1 is on the grid and kept unless beaten, so calibration never raises the
    validation KL."""
    from scipy.optimize import minimize_scalar  # scipy: only where a temperature is fitted

    logits, target = logits.double(), target.double()

    def objective(log_t: float) -> float:
        return float(losses.kl_divergence(logits / math.exp(log_t), target))

    grid = sorted(set(np.linspace(*map(math.log, TEMPERATURE_RANGE), 81).tolist()) | {0.0})
    values = [objective(g) for g in grid]
    best = int(np.argmin(values))
    bounds = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    refined = minimize_scalar(objective, bounds=bounds, method="bounded", options={"xatol": 1e-9})
    log_t, value = min([(grid[best], values[best]), (float(refined.x), float(refined.fun))], key=lambda item: item[1])
    return math.exp(log_t), objective(0.0), value


def classification_metrics(
    logits: torch.Tensor, target: torch.Tensor, prior: Sequence[float], temperature: float = 1.0
) -> dict[str, float]:
    """KL(target || prediction), accuracy of the top class, the ranking metrics and calibration
    (ECE, Brier), next to the class-prior baseline (the training split's mean target for every
    window), over the windows with a target. ``logits`` are class logits (binary: ``[0, z]``)."""
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    logits, distribution = logits[keep].double() / temperature, distribution[keep].double()
    baseline = losses.class_prior_log_probs(torch.tensor(prior)).double().expand_as(distribution)
    kl = float(losses.kl_divergence(logits, distribution))
    baseline_kl = float(losses.kl_divergence(baseline, distribution))
    top = distribution.argmax(-1)
    probs, baseline_probs, targets = logits.softmax(-1).numpy(), baseline.exp().numpy(), distribution.numpy()
    baseline_calibration = calibration_metrics(baseline_probs, targets)
    return {
        "kl": kl,
        "baseline_kl": baseline_kl,
        "kl_vs_baseline": kl / baseline_kl if baseline_kl > 0 else math.nan,
        "accuracy": float((logits.argmax(-1) == top).double().mean()),
        "baseline_accuracy": float((baseline.argmax(-1) == top).double().mean()),
        **ranking_metrics(probs, top.numpy()),
        **calibration_metrics(probs, targets),
        "baseline_ece": baseline_calibration["ece"],
        "baseline_brier": baseline_calibration["brier"],
        "n_windows": int(keep.sum()),
    }


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve of ``score`` for the boolean ``positive`` (ties count half:
    the Mann-Whitney statistic, as scikit-learn's ``roc_auc_score``); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(score)  # average ranks of ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Average precision of ``score`` for the boolean ``positive``: the sum over distinct
    thresholds of precision times the gain in recall (scikit-learn's ``average_precision_score``);
    NaN without a positive."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        return math.nan
    order = np.argsort(-np.asarray(score), kind="mergesort")
    ranked, hits = np.asarray(score)[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last index of each threshold
    true_pos = np.cumsum(hits)[last]
    precision = true_pos / (last + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ranking_scores(probs: np.ndarray, top: np.ndarray) -> dict[str, float]:
    """Balanced accuracy of the top class, AUROC (macro one-vs-rest over the classes present for
    C > 2) and, for two classes, AUPRC of class 1, from ``probs`` [N, C] and each item's target
    class ``top``; NaN where a class is missing. Numpy alone: cheap enough to bootstrap."""
    present = np.unique(top)
    predicted = probs.argmax(-1)
    balanced = float(np.mean([(predicted[top == c] == c).mean() for c in present])) if len(present) else math.nan
    if probs.shape[1] == 2:
        return {
            "balanced_accuracy": balanced,
            "auroc": binary_auroc(top == 1, probs[:, 1]),
            "auprc": average_precision(top == 1, probs[:, 1]) if len(present) == 2 else math.nan,
        }
    aucs = [binary_auroc(top == c, probs[:, c]) for c in present if 0 < (top == c).sum() < len(top)]
    return {"balanced_accuracy": balanced, "auroc": float(np.mean(aucs)) if aucs else math.nan}


def ranking_metrics(probs: np.ndarray, top: np.ndarray) -> dict[str, float]:
    """Scores for imbalanced tasks from ``probs`` [N, C] and each window's target class ``top``:
    :func:`ranking_scores`, and for C > 2 Cohen's kappa and class-weighted F1. NaN where a class is
    missing."""
    scores = ranking_scores(probs, top)
    if probs.shape[1] == 2:
        return scores
    from sklearn.metrics import cohen_kappa_score, f1_score  # 1 s to import

    predicted = probs.argmax(-1)
    agree = len(set(top.tolist()) | set(predicted.tolist())) > 1  # else kappa divides 0 by 0
    return {
        **scores,
        "cohen_kappa": float(cohen_kappa_score(top, predicted)) if agree else math.nan,
        "f1_weighted": float(f1_score(top, predicted, average="weighted", zero_division=0)) if len(top) else math.nan,
    }


def evaluate(
    logits: torch.Tensor,
    target: torch.Tensor,
    cfg: Any,
    head: torch.nn.Module,
    prior: Sequence[float],
    temperature: float = 1.0,
    *,
    calibrated: bool = False,
    class_weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """Validation metrics; ``metric`` is what early stopping minimises (hms6: KL; else the loss).

    ``class_weights`` (a classification other than hms6): ``metric`` is the cross-entropy with the
    classes weighted as the run's training loss weights them (also returned, as
    ``class_weighted_loss``), so a class-balanced run keeps the weights that predict each class
    best, as balanced accuracy scores them, not those that favour the majority class; ``loss``
    stays unweighted. ``calibrated``: ``metric`` is that loss at the temperature fitted on these
    logits (also returned, as ``calibrated_temperature``), so a run that ships temperature-scaled
    keeps the weights whose scaled predictions are best, not the least over-confident ones."""
    if cfg.task == "regression":
        loss = float(head.loss(logits, target)) if len(logits) else math.nan
        metrics = {"loss": loss, "metric": loss, "n_windows": int((~torch.isnan(target)).sum())}
        if len(prior) == 1 and len(logits):  # mean squared error of always predicting the training mean
            baseline = float(head.loss(torch.full_like(logits, prior[0]), target))
            metrics.update(
                baseline_loss=baseline,
                loss_vs_baseline=loss / baseline if baseline > 0 else math.nan,
                r2=1 - loss / baseline if baseline > 0 else math.nan,
            )
        return metrics
    logits = class_logits(logits, cfg)
    metrics = classification_metrics(logits, target, prior, temperature)
    weights = None if cfg.task == "hms6" else class_weights
    if cfg.task == "hms6":
        loss = metrics["kl"]
    else:
        loss = float(losses.soft_cross_entropy(logits.double() / temperature, target))
    if weights is not None:
        metrics["class_weighted_loss"] = _weighted_loss(logits, target, temperature, weights)
    metric = metrics.get("class_weighted_loss", loss)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    if not calibrated or not bool(keep.any()):  # without a target, no temperature to fit
        return {**metrics, "loss": loss, "metric": metric}
    fitted, _, kl_at_fitted = fit_temperature(logits[keep], distribution[keep])
    if cfg.task == "hms6":
        scaled = kl_at_fitted
    else:
        scaled = _weighted_loss(logits, target, fitted, weights)
    return {**metrics, "loss": loss, "metric": scaled, "calibrated_temperature": fitted}


def _weighted_loss(
    logits: torch.Tensor, target: torch.Tensor, temperature: float, class_weights: torch.Tensor | None
) -> float:
    """The cross-entropy of ``logits`` at ``temperature``, classes weighted by ``class_weights``."""
    return float(losses.soft_cross_entropy(logits.double() / temperature, target, class_weights=class_weights))


def evaluate_per_site(
    logits: torch.Tensor,
    target: torch.Tensor,
    sites: Sequence[str],
    cfg: Any,
    head: torch.nn.Module,
    prior: Sequence[float],
    temperature: float = 1.0,
) -> dict[str, dict[str, float]]:
    """:func:`evaluate` on each site's windows, against the same training prior; {} for one site."""
    names, found = np.asarray(sites), sorted(set(sites))
    if len(found) < 2:
        return {}
    return {
        site: evaluate(logits[keep], target[keep], cfg, head, prior, temperature)
        for site in found
        for keep in [torch.from_numpy(names == site)]
    }


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Window counts, ``[actual class, predicted class]``."""
    from sklearn.metrics import confusion_matrix as counts  # 1 s to import

    return counts(actual, predicted, labels=np.arange(n_classes)).astype(np.int64)


def confusion_of(
    logits: torch.Tensor, target: torch.Tensor, cfg: Any, split: str, classes: Sequence[str]
) -> dict[str, Any]:
    """The held-out windows' confusion matrix (rows: the target's top class), for eval.json."""
    logits = class_logits(logits, cfg)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    matrix = confusion_matrix(distribution[keep].argmax(-1).numpy(), logits[keep].argmax(-1).numpy(), logits.shape[-1])
    return {"split": split, "classes": list(classes), "matrix": matrix.tolist()}


def reliability_of(
    logits: torch.Tensor, target: torch.Tensor, cfg: Any, split: str, temperature: float
) -> dict[str, Any]:
    """The held-out windows' reliability bins before and (where a temperature was fitted) after
    calibration."""
    logits = class_logits(logits, cfg)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    logits, distribution = logits[keep].double(), distribution[keep].double().numpy()
    report: dict[str, Any] = {
        "split": split,
        "uncalibrated": reliability_bins(logits.softmax(-1).numpy(), distribution),
    }
    if temperature != 1.0:
        report["calibrated"] = reliability_bins((logits / temperature).softmax(-1).numpy(), distribution)
        report["temperature"] = temperature
    return report
