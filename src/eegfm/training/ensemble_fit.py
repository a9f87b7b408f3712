"""The stacking of ``eegfm-ensemble`` (``training.ensemble``): :func:`fit_ensemble` loads the
members, splits the data as fine-tuning does, has every member predict the held-out windows, fits
the stacking weights on the validation windows alone and writes the ensemble's run folder."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eegfm.contract import layout
from eegfm.contract.preprocess_spec import save_preprocess_spec
from eegfm.core.logs import get_logger
from eegfm.metrics.classification import evaluate
from eegfm.model.architectures import is_model_folder, quiet_transformers
from eegfm.model.ensemble import EnsembleModel, fit_stacking
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.data import data_dirs, data_label
from eegfm.training.distributed import Dist
from eegfm.training.finetune.objective import inputs_for, targets_of
from eegfm.training.finetune.plan import Plan, plan_data
from eegfm.training.finetune.report import selective_of
from eegfm.training.finetune.setup import split_loader
from eegfm.training.splits import SPLITS

log = get_logger("eegfm.training.ensemble")
SCORES = ("kl", "balanced_accuracy", "accuracy", "n_windows")


def member_folder(path: str | Path) -> Path:
    """A member's model folder: ``path`` itself, or ``path/model`` (a fine-tuning run folder)."""
    path = Path(path)
    for candidate in (path / "model", path):
        if is_model_folder(candidate):
            return candidate
    raise ConfigError(
        f"--members {path}: no config.json there (or in {path / 'model'}); expected a fine-tuned model "
        "folder or its fine-tuning run folder"
    )


def check_member_split(folder: Path, plan: Plan) -> None:
    """ConfigError where the member's fine-tuning (its run.json) split the groups otherwise."""
    try:
        run = json.loads((folder.parent / layout.RUN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s: no run.json beside it; cannot check that it never trained on held-out windows", folder)
        return
    saved = {name: set(run.get("split", {}).get(name, [])) for name in SPLITS}
    held_out = set(plan.split.val) | set(plan.split.test)
    if leaked := saved["train"] & held_out:
        raise ConfigError(
            f"--members {folder}: its fine-tuning trained on {len(leaked)} {plan.split_group}(s) that this split "
            f"holds out for validation or test; give the --config / --set (val_fraction, test_fraction, seed, "
            f"split_group ...) its run used (its run.json), so that stacking and scores use unseen windows"
        )


@torch.no_grad()
def predict_split(
    ensemble: EnsembleModel, data: Sequence[str], plan: Plan, cfg: FinetuneConfig, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's log-probabilities (N, members, C) and the targets of one split's windows."""
    dist = Dist(backend="none")
    loader = split_loader(cfg, dist, data, plan, split, ensemble.config.patch_size)
    log_probs, targets = [], []
    for batch in loader:
        log_probs.append(ensemble.sample_logits(**inputs_for(ensemble, batch, dist.device, data)))
        targets.append(targets_of(batch, cfg, dist.device))
    n_classes = len(ensemble.config.labels)
    if not log_probs:
        return torch.zeros(0, len(ensemble.members), n_classes), torch.zeros(0, n_classes)
    return torch.cat(log_probs), torch.cat(targets)


def scores(
    ensemble: EnsembleModel, log_probs: torch.Tensor, target: torch.Tensor, cfg: FinetuneConfig, prior: list[float]
) -> dict[str, dict[str, float]]:
    """Each member's and the ensemble's metrics (``metrics.classification.evaluate``) on one split."""
    if not len(target):
        return {}
    columns = {name: log_probs[:, m] for m, name in enumerate(ensemble.config.members)}
    columns["ensemble"] = ensemble.stack(log_probs)
    if cfg.head == "binary":  # evaluate reads a binary head's one logit z as [0, z]
        columns = {name: lp[:, 1] - lp[:, 0] for name, lp in columns.items()}
    return {name: evaluate(logits, target, cfg, None, prior) for name, logits in columns.items()}


def fit_on_validation(
    ensemble: EnsembleModel,
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]],
    cfg: FinetuneConfig,
    plan: Plan,
    **stacking: Any,
) -> dict[str, Any]:
    """Fit the stacking weights (``stacking``: ``fit_stacking``'s options) on ``predictions["val"]``
    alone; the report of every split."""
    val_log_probs, val_target = predictions["val"]
    weights, bias, fit = fit_stacking(val_log_probs, val_target, **stacking)
    ensemble.weights.copy_(torch.tensor(weights))
    ensemble.bias.copy_(torch.tensor(bias))
    report = {name: scores(ensemble, *predictions[name], cfg, plan.prior) for name in predictions}
    fit.update(split="val", weights=dict(zip(ensemble.config.members, weights)))
    fit["val_kl"] = report["val"]["ensemble"].get("kl", math.nan)
    ensemble.config.fit = fit
    return report


def ensemble_selective(
    ensemble: EnsembleModel, predictions: dict[str, tuple[torch.Tensor, torch.Tensor]], cfg: FinetuneConfig, plot: Path
) -> dict[str, Any]:
    """Selective prediction on the test windows (else validation's, which also fitted the weights),
    with the members' disagreement as the samples (``training.finetune.report.selective_of``)."""
    held = "test" if "test" in predictions else "val"
    log_probs, target = predictions[held]
    logits, samples = ensemble.stack(log_probs), log_probs
    if cfg.head == "binary":  # selective_of reads a binary head's one logit z as [0, z]
        logits, samples = logits[:, 1] - logits[:, 0], samples[..., 1:] - samples[..., :1]
    return {"split": held, **selective_of(logits, target, samples, cfg, 1.0, plot)}


def comparison_table(report: dict[str, dict[str, dict[str, float]]]) -> str:
    """Members and the ensemble side by side: one line each, KL and balanced accuracy per split."""
    splits = [s for s in ("val", "test") if report.get(s)]
    header = f"{'model':<32}" + "".join(f"{s + ' KL':>10}{s + ' bal.acc':>14}" for s in splits)
    lines = [header]
    for name in report["val"]:
        cells = "".join(
            f"{report[s][name].get('kl', math.nan):>10.4f}{report[s][name].get('balanced_accuracy', math.nan):>14.3f}"
            for s in splits
        )
        lines.append(f"{name:<32}{cells}")
    return "\n".join(lines)


def fit_ensemble(
    members: Sequence[str | Path],
    data: Sequence[str],
    output: Path,
    cfg: FinetuneConfig,
    record_task: str,
    **stacking: Any,
) -> dict[str, Any]:
    """Load, split, predict, fit on validation, save; returns eval.json's content."""
    folders = [member_folder(m) for m in members]
    with quiet_transformers():
        ensemble = EnsembleModel.from_members(folders)
    plan = plan_data(data, cfg, record_task, ensemble.config.patch_size)
    if not plan.windows["val"]:
        raise ConfigError(f"--data {data_label(data)}: no validation windows to fit the stacking weights on")
    for folder in folders:
        check_member_split(folder, plan)
    held_out = [name for name in ("val", "test") if plan.windows[name]]
    predictions = {name: predict_split(ensemble, data, plan, cfg, name) for name in held_out}
    report = fit_on_validation(ensemble, predictions, cfg, plan, **stacking)
    ensemble.config.fit.update(record_task=record_task, windows_by_split=plan.windows)
    with quiet_transformers():
        ensemble.save_pretrained(output / "model")
    save_preprocess_spec(data_dirs(data), output / "model")
    evaluation = {
        "task": cfg.task,
        "metric": "kl" if cfg.task == "hms6" else "loss",
        "windows": plan.windows,
        "prior": plan.prior,
        "members": {split: report[split] for split in report},
        "stacking": ensemble.config.fit,
        "selective": ensemble_selective(ensemble, predictions, cfg, output / "selective.png"),
        **{split: report[split]["ensemble"] for split in report},
    }
    (output / layout.EVAL).write_text(json.dumps(evaluation, indent=2, sort_keys=True, default=float))
    run = {"members": [str(f) for f in folders], "data": data_dirs(data), "prior": plan.prior, "config": cfg.to_dict()}
    run["split"] = {name: list(plan.split.of(name)) for name in SPLITS}
    (output / layout.RUN).write_text(json.dumps(run, indent=2))
    log.info(
        "stacking weights %s (fitted on %d validation windows)", ensemble.config.fit["weights"], plan.windows["val"]
    )
    log.info("members and ensemble:\n%s", comparison_table(report))
    return evaluation
