"""A new task head fitted by a convex solver (``head_init: probe``): a logistic regression on the
frozen encoder's embedding of every training window, written into the head's linear layers.

The head is ``LayerNorm -> dropout -> Linear`` on the pooled embedding, plus a Linear on each
channel's band powers with ``head_band_powers`` (``model.heads.TaskHead``); with the new head's
LayerNorm at identity, a regression fitted on what those layers read (``probe_features``;
``model.linear_fit``: standardized, L-BFGS, class-balanced where the run weights classes) is the
head, the standardization folded into its weights.

Why: gradient steps on the head alone reached 0.876 validation AUROC on eegmat, where a logistic
regression on the same frozen embedding reaches 0.945 (docs/model-quality.md): a probe trained by
SGD for a few epochs is neither converged nor regularized. The run validates the fitted head
before its first step (``finetune.loop``): in ``linear`` mode the fit is the probe and the run
ends there; in ``full`` mode fine-tuning starts from the probe's answer instead of a random one
(linear probing, then fine-tuning), and early stopping can keep the starting weights.

``C`` is chosen by cross-validation grouped by person over the training people (log loss), not on
the validation people: they choose when to stop, and a handful of them are noise for a second
choice. The fit runs on rank 0 and its weights are broadcast; every rank embeds its shard.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.model import linear_fit
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


def _fit(features: np.ndarray, target: np.ndarray, subjects: list[str], cfg: FinetuneConfig, n_classes: int):
    """The fitted head's (weight [K, D], bias [K]) and its record."""
    distributions = _distributions(target, cfg, n_classes)
    x, y, weight, groups = linear_fit.soft_rows(features, distributions, np.asarray(subjects))
    if len(set(y.tolist())) < 2:
        raise ConfigError(
            f"head_init: 'probe' fits a logistic regression on the training windows; they carry "
            f"{len(set(y.tolist()))} class (expected two or more)"
        )
    weight, balanced = _row_weights(y, weight, cfg)
    c, losses = linear_fit.c_by_grouped_cv(x, y, weight, groups, balanced, FOLDS)
    readout = linear_fit.linear_readout_of(linear_fit.fit_pipeline(x, y, weight, c, balanced), n_classes)
    scores, bias = readout.class_scores()
    record = {"C": c, "chosen_by": f"log loss, {FOLDS}-fold CV grouped by person over the training people"}
    record["cv_loss"] = {f"{grid_c:g}": round(loss, 6) for grid_c, loss in losses.items()}  # the choice's spread
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
            fitted = _fit(features, target, subjects, cfg, max(head.fc.out_features, 2))
        except ConfigError as err:
            fitted = str(err)
    fitted = dist.broadcast_object(fitted)  # every rank fails alike, none waits
    if isinstance(fitted, str):
        raise ConfigError(fitted)
    scores, bias, record = fitted
    if head.fc.out_features == 1:  # binary: one logit, the positive class's log-odds
        scores, bias = scores[1:] - scores[:1], bias[1:] - bias[:1]
    head.set_linear(torch.as_tensor(scores), torch.as_tensor(bias))
    log.info(
        "probe head: logistic regression on %d training windows of %d people, C = %g (%s)",
        record["windows"],
        record["people"],
        record["C"],
        record["chosen_by"],
    )
    return record
