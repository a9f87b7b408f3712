"""A new task head fitted by a convex solver (``head_init: probe``): a logistic regression on the
frozen encoder's embedding of every training window, written into the head's linear layers.

The head is ``LayerNorm -> dropout -> Linear`` on the pooled embedding, plus a Linear on each
channel's band powers (``head_band_powers``) and each band's covariance tangent vector
(``head_covariances``; ``model.heads.TaskHead``); with the new head's LayerNorm at identity, a
regression fitted on what those layers read (``probe_features``; ``model.linear_fit``:
standardized, L-BFGS, class-balanced where the run weights classes) is the head, the
standardization folded into its weights. The covariances are fitted in the coordinates of the
benchmark's covariance readout under each of ``probe_covariance_metrics``: log-Euclidean
(``spectral_features.log_euclidean_chart``, a linear map folded back too) or affine-invariant (at
the training windows' Riemannian mean, whose inverse square root the encoder's whitening buffer
then holds, so the graph computes the fit's coordinates); they are read only where the
cross-validation below prefers them to the head without; inputs left out are gated off
(``TaskHead.read_only``).

Why: gradient steps on the head alone reached 0.876 validation AUROC on eegmat, where a logistic
regression on the same frozen embedding reaches 0.945 (docs/model-quality.md): a probe trained by
SGD for a few epochs is neither converged nor regularized. The run validates the fitted head
before its first step (``finetune.loop``): in ``linear`` mode the fit is the probe and the run
ends there; in ``full`` mode fine-tuning starts from the probe's answer instead of a random one
(linear probing, then fine-tuning), and early stopping can keep the starting weights.

``C`` (and whether, and under which metric, to read the covariances) is chosen by
cross-validation grouped by person over the training people (log loss), not on the validation
people: they choose when to stop, and a handful of them are noise for a second choice. With
``probe_chosen_by: validation`` the validation people choose, as they choose the benchmark's
readout and baselines. The fit
runs on rank 0 and its weights are broadcast; every rank embeds its shard.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from pyriemann.geometry.base import expm, invsqrtm
from pyriemann.geometry.mean import mean_riemann
from pyriemann.geometry.tangentspace import unupper

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.model import linear_fit, spd
from eegfm.model.band_powers import COVARIANCE_BANDS
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


@dataclasses.dataclass(frozen=True)
class CovarianceCoordinates:
    """The head's covariance inputs in one tangent space: the fit's columns ``design`` [N, F], and
    how its weights reach the graph: through the transpose of ``chart`` (log-Euclidean, a linear
    map of the graph's vectors at the identity), or as they are once the encoder's whitening
    buffer holds ``whitening`` [bands, C, C] (affine-invariant: the graph then computes ``design``)."""

    metric: str
    design: np.ndarray
    chart: np.ndarray | None = None
    whitening: np.ndarray | None = None

    def of(self, vectors: np.ndarray) -> np.ndarray:
        """Other windows' covariance inputs (validation's) in the same coordinates as ``design``."""
        if self.chart is not None:
            return vectors @ self.chart
        return _whitened(vectors, self.whitening)


def _bands(vectors: np.ndarray, n_bands: int) -> list[tuple[slice, np.ndarray]]:
    """Each band's columns and its windows' shrunk co-spectral matrices, as the graph holds them."""
    width = vectors.shape[1] // n_bands
    columns = [slice(band * width, (band + 1) * width) for band in range(n_bands)]
    return [(c, expm(unupper(vectors[:, c]))) for c in columns]


def _whitened(vectors: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """Each band's matrices moved by its whitening [bands, C, C], their logarithms' upper triangles."""
    design = np.zeros_like(vectors)
    for (columns, shrunk), band_whitening in zip(_bands(vectors, len(whitening)), whitening, strict=True):
        with torch.no_grad():
            moved = spd.at_reference(torch.from_numpy(shrunk), torch.from_numpy(band_whitening))
            design[:, columns] = spd.upper_triangle(spd.log_spd(moved)).numpy()
    return design


def covariance_coordinates(vectors: np.ndarray, metric: str, n_bands: int = len(COVARIANCE_BANDS)):
    """:class:`CovarianceCoordinates` of the training windows' covariance inputs ``vectors`` [N, F]
    (each band's shrunk matrix's logarithm at the identity, the bands side by side) under
    ``metric``, at the training windows' ``metric`` mean."""
    if metric == "logeuclid":
        chart = log_euclidean_chart(vectors, n_bands)
        return CovarianceCoordinates(metric, vectors @ chart, chart=chart)
    whitening = np.stack([invsqrtm(mean_riemann(shrunk)) for _, shrunk in _bands(vectors, n_bands)])
    return CovarianceCoordinates(metric, _whitened(vectors, whitening), whitening=whitening)


def _candidates(groups: dict[str, slice], metrics: list[str]) -> list[tuple[tuple[str, ...], str | None]]:
    """The head's inputs the probe chooses between, each with its covariances' metric: all of them
    under each of ``metrics``, and all but each band's covariances where the head reads those (950
    person-heavy values a window that helped the simulated group study and hurt eegmat,
    docs/model-quality.md)."""
    every = tuple(groups)
    if "covariances" not in groups:
        return [(every, None)]
    return [(every, metric) for metric in metrics] + [(tuple(g for g in every if g != "covariances"), None)]


def _candidate_name(inputs: tuple[str, ...], metric: str | None) -> str:
    return "+".join(inputs) + (f" ({metric})" if metric else "")


@dataclasses.dataclass(frozen=True)
class Windows:
    """The frozen encoder's head inputs of a split's windows: ``features`` [N, D], their targets
    and people."""

    features: np.ndarray
    target: np.ndarray
    subjects: list[str]


def _with_coordinates(features: np.ndarray, covariances: slice | None, coordinates, training: bool) -> np.ndarray:
    """``features`` with the covariance columns in ``coordinates`` (None: as they are)."""
    if coordinates is None:
        return features
    moved = features.copy()
    moved[:, covariances] = coordinates.design if training else coordinates.of(features[:, covariances])
    return moved


def _fit(train: Windows, cfg: FinetuneConfig, n_classes: int, groups: dict[str, slice], validation: Windows | None):
    """The fitted head's (weight [K, D], bias [K]), its record and the covariances' whitening
    (None unless chosen): for each candidate (:func:`_candidates`) the C of lowest log loss, by the
    training people's grouped CV or, given ``validation``, on its people; and the candidate of lowest
    loss; the inputs left out get zero weights."""
    distributions = _distributions(train.target, cfg, n_classes)
    x, y, weight, people = linear_fit.soft_rows(train.features, distributions, np.asarray(train.subjects))
    if len(set(y.tolist())) < 2:
        raise ConfigError(
            f"head_init: 'probe' fits a logistic regression on the training windows; they carry "
            f"{len(set(y.tolist()))} class (expected two or more)"
        )
    weight, balanced = _row_weights(y, weight, cfg)
    covariances = groups.get("covariances")
    coordinates = {
        m: covariance_coordinates(train.features[:, covariances], m)
        for m in cfg.probe_covariance_metrics
        if covariances
    }
    choices = {}
    for inputs, metric in _candidates(groups, cfg.probe_covariance_metrics):
        chart = coordinates.get(metric)
        design = x if chart is None else linear_fit.soft_rows(
            _with_coordinates(train.features, covariances, chart, True), distributions, np.asarray(train.subjects)
        )[0]  # fmt: skip
        columns = np.concatenate([np.arange(train.features.shape[1])[groups[g]] for g in inputs])
        if validation is None:
            c, losses = linear_fit.c_by_grouped_cv(design[:, columns], y, weight, people, balanced, FOLDS)
        else:
            val_x = _with_coordinates(validation.features, covariances, chart, False)[:, columns]
            val_target = _distributions(validation.target, cfg, n_classes)
            losses = linear_fit.validation_losses(design[:, columns], y, weight, val_x, val_target, balanced)
            c = min(losses, key=losses.__getitem__)
        choices[inputs, metric] = (design, columns, c, losses)
    chosen = min(choices, key=lambda k: choices[k][3].get(choices[k][2], 0.0))  # the first where no CV ran
    design, columns, c, losses = choices[chosen]
    fitted = linear_fit.fit_pipeline(design[:, columns], y, weight, c, balanced)
    chosen_scores, bias = linear_fit.linear_readout_of(fitted, n_classes).class_scores()
    scores = np.zeros((len(chosen_scores), train.features.shape[1]))
    scores[:, columns] = chosen_scores
    (inputs, metric), whitening = chosen, None
    if metric is not None and coordinates[metric].chart is not None:  # chart coordinates -> the graph's
        scores[:, covariances] = scores[:, covariances] @ coordinates[metric].chart.T
    elif metric is not None:
        whitening = coordinates[metric].whitening
    record = {"C": c, "inputs": list(inputs), "covariance_metric": metric}
    if validation is None:
        record["chosen_by"] = f"log loss, {FOLDS}-fold CV grouped by person over the training people"
    else:
        record["chosen_by"] = f"log loss on the {len(set(validation.subjects))} validation people"
    loss_name = "cv_loss" if validation is None else "validation_loss"
    record[loss_name] = {f"{grid_c:g}": round(loss, 6) for grid_c, loss in losses.items()}  # the choice's spread
    record[f"{loss_name}_by_inputs"] = {
        _candidate_name(*k): round(v[3].get(v[2], float("nan")), 6) for k, v in choices.items()
    }
    record.update(windows=len(train.features), people=len(set(train.subjects)))
    return scores, bias, record, whitening


def _covariances_at_identity(model: torch.nn.Module) -> None:
    """The fit reads the head's covariances at the identity (``covariance_coordinates``' input),
    whatever reference a saved model's encoder held: a new head chooses its own."""
    whitening = getattr(getattr(model, "encoder", None), "head_covariance_whitening", None)
    if whitening is not None:
        with torch.no_grad():
            whitening.copy_(torch.eye(whitening.shape[-1]).expand_as(whitening))
        model.config.head_covariance_metric = "logeuclid"


def _gathered(model: torch.nn.Module, loader: EEGLoader | None, cfg: FinetuneConfig, dist: Dist) -> Windows | None:
    """Every rank's windows of ``loader`` (on rank 0; None elsewhere, and where there are none)."""
    if loader is None:
        return None
    parts = [part for part in dist.gather_objects(_embedded(model, loader, cfg, dist)) if len(part[0])]
    if not dist.is_main or not parts:
        return None
    return Windows(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), [s for p in parts for s in p[2]]
    )


def fit_probe_head(
    model: torch.nn.Module, loader: EEGLoader, cfg: FinetuneConfig, dist: Dist, val_loader: EEGLoader | None = None
) -> dict[str, Any]:
    """Write a logistic regression of the frozen encoder's training embeddings into ``model``'s
    new head (module docstring); returns what was chosen (``C``, every C's loss, the windows and
    people). ``cfg`` is validated: its task is a classification. With ``probe_chosen_by:
    validation`` the choice is made on ``val_loader``'s windows."""
    head = getattr(model, "head", None)
    if not hasattr(head, "probe_features"):
        raise ConfigError(f"head_init: 'probe' needs eegfm's task head (model.heads); {type(model).__name__} has none")
    _covariances_at_identity(model)
    fitted = None
    train = _gathered(model, loader, cfg, dist)
    validation = _gathered(model, val_loader if cfg.probe_chosen_by == "validation" else None, cfg, dist)
    if dist.is_main:
        try:
            if train is None:
                raise ConfigError("head_init: 'probe' fits the training windows; the training split has none")
            if cfg.probe_chosen_by == "validation" and validation is None:
                raise ConfigError(
                    "probe_chosen_by: 'validation' chooses the probe on the validation people; the "
                    "validation split has no windows (expected val_fraction > 0, or probe_chosen_by: cv)"
                )
            groups = head.probe_feature_groups()
            fitted = _fit(train, cfg, max(head.fc.out_features, 2), groups, validation)
        except ConfigError as err:
            fitted = str(err)
    fitted = dist.broadcast_object(fitted)  # every rank fails alike, none waits
    if isinstance(fitted, str):
        raise ConfigError(fitted)
    scores, bias, record, whitening = fitted
    if head.fc.out_features == 1:  # binary: one logit, the positive class's log-odds
        scores, bias = scores[1:] - scores[:1], bias[1:] - bias[:1]
    head.set_linear(torch.as_tensor(scores), torch.as_tensor(bias))
    head.read_only(record["inputs"])
    if whitening is not None:  # the graph maps the covariances where the fit read them
        with torch.no_grad():
            model.encoder.head_covariance_whitening.copy_(torch.as_tensor(whitening))
        model.config.head_covariance_metric = "riemann"
    log.info(
        "probe head: logistic regression on %d training windows of %d people, reading %s, C = %g (%s)",
        record["windows"],
        record["people"],
        _candidate_name(tuple(record["inputs"]), record["covariance_metric"]).replace("+", " + "),
        record["C"],
        record["chosen_by"],
    )
    return record
