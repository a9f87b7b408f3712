"""A new task head fitted by a convex solver (``head_init: probe``): a logistic regression on the
frozen encoder's embedding of every training window, written into the head's linear layers.

The head is ``LayerNorm -> dropout -> Linear`` on the pooled embedding, plus a Linear on each
channel's band powers (``head_band_powers``) and each band's covariance tangent vector
(``head_covariances``; ``model.heads.TaskHead``); with the new head's LayerNorm at identity, a
regression fitted on what those layers read (``probe_features``; ``model.linear_fit``:
standardized, L-BFGS, class-balanced where the run weights classes) is the head, the
standardization folded into its weights. The covariances are fitted in the log-Euclidean
coordinates of the benchmark's covariance readout (``spectral_features.log_euclidean_chart``, a
linear map folded back too), and read only where the cross-validation below prefers the head with
them to the head without; inputs left out are gated off (``TaskHead.read_only``).

Why: gradient steps on the head alone reached 0.876 validation AUROC on eegmat, where a logistic
regression on the same frozen embedding reaches 0.945 (docs/model-quality.md): a probe trained by
SGD for a few epochs is neither converged nor regularized. The run validates the fitted head
before its first step (``finetune.loop``): in ``linear`` mode the fit is the probe and the run
ends there; in ``full`` mode fine-tuning starts from the probe's answer instead of a random one
(linear probing, then fine-tuning), and early stopping can keep the starting weights.

``C`` (and whether to read the covariances) is chosen by cross-validation grouped by person over
the training people (log loss), not on the validation people: they choose when to stop, and a
handful of them are noise for a second choice. The fit runs on rank 0 and its weights are
broadcast; every rank embeds its shard.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.model import linear_fit
from eegfm.model.spectral_features import log_euclidean_chart
from eegfm.training.config import FinetuneConfig
from eegfm.training.data import EEGLoader
from eegfm.training.distributed import Dist
from eegfm.training.finetune.objective import inputs_for, targets_of

log = get_logger("eegfm.training.finetune")
FOLDS = 5  # of the training people; fewer where there are fewer


@torch.no_grad()
def _embedded(model: torch.nn.Module, loader: EEGLoader, cfg: FinetuneConfig, dist: Dist):
    """This rank's (features [N, D], targets, subjects) of one pass over ``loader``."""
    features, targets, subjects = [], [], []
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            inputs = inputs_for(model, batch, dist.device)
            features.append(model.head.probe_features(model.forward_features(**inputs)).double().cpu().numpy())
            targets.append(targets_of(batch, cfg, torch.device("cpu")).double().numpy())
            subjects.extend(batch["subject_id"])
    finally:
        model.train(was_training)
    if not features:
        return np.zeros((0, 0)), np.zeros(0), []
    return np.concatenate(features), np.concatenate(targets), subjects


def _distributions(target: np.ndarray, cfg: FinetuneConfig, n_classes: int) -> np.ndarray:
    """[N, K] target distributions: hms6's votes normalised, a label one-hot (-1: no mass)."""
    if cfg.task == "hms6":
        total = target.sum(1, keepdims=True)
        return np.where(total > 0, target / np.maximum(total, 1e-12), 0.0)
    label = target.astype(np.int64)
    return np.eye(n_classes)[np.clip(label, 0, n_classes - 1)] * (label >= 0)[:, None]


def _row_weights(y: np.ndarray, weight: np.ndarray, cfg: FinetuneConfig) -> tuple[np.ndarray, bool]:
    """The rows' weights and whether the fit balances the classes (``class_weights``)."""
    if isinstance(cfg.class_weights, list):
        return weight * np.asarray(cfg.class_weights, dtype=np.float64)[y], False
    return weight, cfg.class_weights == "balanced"


def _candidate_inputs(groups: dict[str, slice]) -> list[tuple[str, ...]]:
    """The sets of the head's inputs the probe chooses between: all of them, and all but each
    band's covariances where the head reads those (950 person-heavy values a window that helped
    the simulated group study and hurt eegmat, docs/model-quality.md)."""
    every = tuple(groups)
    return [every, tuple(g for g in every if g != "covariances")] if "covariances" in groups else [every]


def _fit(features, target, subjects: list[str], cfg: FinetuneConfig, n_classes: int, groups: dict[str, slice]):
    """The fitted head's (weight [K, D], bias [K]) and its record: for each candidate set of inputs
    (:func:`_candidate_inputs`) the C of lowest grouped-CV loss, and the set of lowest loss; the
    inputs left out get zero weights."""
    design, chart = features, None
    if "covariances" in groups:  # fitted in the covariance readout's coordinates, mapped back below
        covariances = groups["covariances"]
        chart = log_euclidean_chart(features[:, covariances])
        design = features.copy()
        design[:, covariances] = features[:, covariances] @ chart
    distributions = _distributions(target, cfg, n_classes)
    x, y, weight, people = linear_fit.soft_rows(design, distributions, np.asarray(subjects))
    if len(set(y.tolist())) < 2:
        raise ConfigError(
            f"head_init: 'probe' fits a logistic regression on the training windows; they carry "
            f"{len(set(y.tolist()))} class (expected two or more)"
        )
    weight, balanced = _row_weights(y, weight, cfg)
    choices = {}
    for inputs in _candidate_inputs(groups):
        columns = np.concatenate([np.arange(features.shape[1])[groups[g]] for g in inputs])
        c, losses = linear_fit.c_by_grouped_cv(x[:, columns], y, weight, people, balanced, FOLDS)
        choices[inputs] = (columns, c, losses)
    inputs = min(choices, key=lambda k: choices[k][2].get(choices[k][1], 0.0))  # the first where no CV ran
    columns, c, losses = choices[inputs]
    fitted = linear_fit.fit_pipeline(x[:, columns], y, weight, c, balanced)
    chosen_scores, bias = linear_fit.linear_readout_of(fitted, n_classes).class_scores()
    scores = np.zeros((len(chosen_scores), features.shape[1]))
    scores[:, columns] = chosen_scores
    if chart is not None:  # weights on the chart's coordinates -> weights on ``features``
        scores[:, covariances] = scores[:, covariances] @ chart.T
    record = {"C": c, "inputs": list(inputs)}
    record["chosen_by"] = f"log loss, {FOLDS}-fold CV grouped by person over the training people"
    record["cv_loss"] = {f"{grid_c:g}": round(loss, 6) for grid_c, loss in losses.items()}  # the choice's spread
    record["cv_loss_by_inputs"] = {"+".join(k): round(v[2].get(v[1], float("nan")), 6) for k, v in choices.items()}
    record.update(windows=len(features), people=len(set(subjects)))
    return scores, bias, record


def fit_probe_head(model: torch.nn.Module, loader: EEGLoader, cfg: FinetuneConfig, dist: Dist) -> dict[str, Any]:
    """Write a logistic regression of the frozen encoder's training embeddings into ``model``'s
    new head (module docstring); returns what was chosen (``C``, every C's cross-validated loss,
    the windows and people). ``cfg`` is validated: its task is a classification."""
    head = getattr(model, "head", None)
    if not hasattr(head, "probe_features"):
        raise ConfigError(f"head_init: 'probe' needs eegfm's task head (model.heads); {type(model).__name__} has none")
    fitted = None
    parts = [part for part in dist.gather_objects(_embedded(model, loader, cfg, dist)) if len(part[0])]
    if dist.is_main:
        try:
            if not parts:
                raise ConfigError("head_init: 'probe' fits the training windows; the training split has none")
            features, target = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            subjects = [s for p in parts for s in p[2]]
            fitted = _fit(features, target, subjects, cfg, max(head.fc.out_features, 2), head.probe_feature_groups())
        except ConfigError as err:
            fitted = str(err)
    fitted = dist.broadcast_object(fitted)  # every rank fails alike, none waits
    if isinstance(fitted, str):
        raise ConfigError(fitted)
    scores, bias, record = fitted
    if head.fc.out_features == 1:  # binary: one logit, the positive class's log-odds
        scores, bias = scores[1:] - scores[:1], bias[1:] - bias[:1]
    head.set_linear(torch.as_tensor(scores), torch.as_tensor(bias))
    head.read_only(record["inputs"])
    log.info(
        "probe head: logistic regression on %d training windows of %d people, reading %s, C = %g (%s)",
        record["windows"],
        record["people"],
        " + ".join(record["inputs"]),
        record["C"],
        record["chosen_by"],
    )
    return record
