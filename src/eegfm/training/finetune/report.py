"""The end of a fine-tuning run: the best weights reloaded, a temperature fitted on the validation
logits, validation (and test) metrics next to the class-prior baseline in ``eval.json``, the
pictures beside it, and the model folder with its preprocessing recipe."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegfm.contract import layout
from eegfm.contract.preprocess_spec import save_preprocess_spec
from eegfm.core.logs import get_logger
from eegfm.metrics import losses
from eegfm.metrics.classification import (
    TEMPERATURE_RANGE,
    class_logits,
    confusion_of,
    evaluate,
    evaluate_per_site,
    fit_temperature,
    reliability_of,
)
from eegfm.metrics.plots import plot_confusion, plot_per_site, plot_reliability_of
from eegfm.metrics.selective import curves_of, plot_risk_coverage, selective_summary
from eegfm.model.architectures import quiet_transformers
from eegfm.training import checkpoint as ckpt
from eegfm.training.config import FinetuneConfig
from eegfm.training.data import EEGLoader, data_dirs
from eegfm.training.distributed import Dist, unwrap
from eegfm.training.finetune.objective import inputs_for, resolve_class_weights, targets_of
from eegfm.training.finetune.plan import class_names
from eegfm.training.finetune.setup import Run, split_loader
from eegfm.training.splits import SPLITS
from eegfm.training.steps import autocast
from eegfm.training.tracking import Tracker

log = get_logger("eegfm.training.finetune")
Evaluation = tuple[torch.Tensor, torch.Tensor, list[str]]  # logits, targets and site ids of a split's windows


@torch.no_grad()
def collect(
    model: torch.nn.Module, loader: EEGLoader, cfg: FinetuneConfig, dist: Dist, amp_dtype: torch.dtype
) -> Evaluation:
    """Every rank's logits, targets and site ids of one pass over ``loader``, gathered (on every
    rank), window by window in the same order."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    logits, targets, sites = [], [], []
    try:
        for batch in loader:
            inputs = inputs_for(model, batch, dist.device)
            with autocast(dist, amp_dtype):
                out = net(**inputs)
            logits.append(out.logits.float().cpu())
            targets.append(targets_of(batch, cfg, torch.device("cpu")))
            sites.extend(batch["site_id"])
    finally:
        net.train(was_training)
    mine = (torch.cat(logits) if logits else torch.zeros(0), torch.cat(targets) if targets else torch.zeros(0), sites)
    parts = [p for p in dist.gather_objects(mine) if p[0].numel()] or [mine]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), [s for p in parts for s in p[2]]


@torch.no_grad()
def collect_samples(
    model: torch.nn.Module, loader: EEGLoader, dist: Dist, amp_dtype: torch.dtype
) -> torch.Tensor | None:
    """Every rank's (N, S, n_outputs) MC-dropout sample logits (``model.uncertainty``) over ``loader``,
    in ``collect``'s order; None for a model without them."""
    net = unwrap(model)
    if not getattr(net.config, "mc_passes", 0) or not hasattr(net, "sample_logits"):
        return None
    was_training = net.training
    net.eval()
    samples = []
    try:
        for batch in loader:
            with autocast(dist, amp_dtype):
                samples.append(net.sample_logits(**inputs_for(model, batch, dist.device)).float().cpu())
    finally:
        net.train(was_training)
    # a tensor from every rank, empty where it had no windows (Horovod matches collectives by type)
    parts = [p for p in dist.gather_objects(torch.cat(samples) if samples else torch.zeros(0)) if p.numel()]
    return torch.cat(parts) if parts else None


def selective_of(
    logits: torch.Tensor,
    target: torch.Tensor,
    samples: torch.Tensor | None,
    cfg: FinetuneConfig,
    temperature: float,
    plot: Path | None = None,
) -> dict[str, Any]:
    """``metrics.selective``'s summary of the held-out windows with a target: does keeping the most
    certain 80 % (by confidence, entropy, MC-dropout mutual information) lower the error (and the
    KL to the votes, hms6)? Its risk-coverage curves drawn to ``plot``."""
    logits = class_logits(logits, cfg)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    probabilities = torch.softmax(logits.double() / temperature, -1)[keep].numpy()
    sampled = None
    if samples is not None and len(samples) == len(keep):
        n, passes = samples.shape[:2]
        sample_logits = class_logits(samples.reshape(n * passes, -1).squeeze(-1), cfg).reshape(n, passes, -1)
        sampled = torch.softmax(sample_logits.double() / temperature, -1)[keep].numpy()
    soft = distribution[keep].numpy() if cfg.task == "hms6" else distribution[keep].argmax(-1).numpy()
    if plot is not None:
        curves = curves_of(probabilities, soft, sampled)
        plot_risk_coverage(curves, f"{cfg.task}: {len(soft)} held-out windows, most certain kept first", plot)
    return selective_summary(probabilities, soft, sampled)


def best_weights(output: Path, dist: Dist) -> dict[str, torch.Tensor] | None:
    """The weights of the ``best`` checkpoint, their moving average where the run kept one
    (``ema_decay``: what was validated); rank 0 reads, every rank receives."""
    state = None
    if dist.is_main:
        path = ckpt.best_checkpoint(output / "checkpoints")
        if path is not None:
            saved = ckpt.load_checkpoint(path, map_location="cpu")
            state = saved.get("ema", saved["model"])
    return dist.broadcast_object(state)


def _calibrate(report: dict[str, Any], logits: torch.Tensor, target: torch.Tensor, cfg: FinetuneConfig) -> float:
    """Fit the temperature on the validation logits (``temperature_scaling``); 1 without."""
    if not cfg.temperature_scaling:
        return 1.0
    logits = class_logits(logits, cfg)
    distribution, keep = losses.as_distribution(target, logits.shape[-1])
    temperature, before, after = fit_temperature(logits[keep], distribution[keep])
    report["calibration"] = {"temperature": temperature, "val_kl_before": before, "val_kl_after": after}
    # KL to a one-hot target is the cross-entropy: the loss that eegmat-style tasks report.
    loss = "KL" if cfg.task == "hms6" else "cross-entropy"
    log.info("temperature scaling: T = %.3f, validation %s %.4f -> %.4f", temperature, loss, before, after)
    if temperature >= TEMPERATURE_RANGE[1] * 0.999:
        log.warning(
            "temperature scaling: T reached its upper bound %g, so the calibrated model predicts "
            "about the same distribution for every window: on these %d validation windows its "
            "logits carry no information a uniform guess lacks",
            TEMPERATURE_RANGE[1],
            int(keep.sum()),
        )
    return temperature


def finish(
    run: Run,
    data: str | Sequence[str],
    output: Path,
    tracker: Tracker,
    val_loader: EEGLoader,
    best_eval: Evaluation | None = None,
    epoch_choice: Mapping[str, Any] | None = None,
) -> None:
    """Reload the best weights, calibrate on validation, evaluate, save the model and eval.json.

    ``best_eval``: the validation logits, targets and sites this process computed with the best
    weights (None after a resume: they are computed again); ``epoch_choice``: the kept epoch
    where it was fixed before the run (``epochs_chosen_by``), None where validation chose it."""
    cfg, dist, plan, amp_dtype, model = run.cfg, run.dist, run.plan, run.amp_dtype, unwrap(run.model)
    weights = best_weights(output, dist)
    if weights is not None:
        model.load_state_dict(weights)
    logits, target, sites = (
        best_eval if best_eval is not None and weights is not None else collect(model, val_loader, cfg, dist, amp_dtype)
    )
    class_weights = resolve_class_weights(cfg, plan)
    report: dict[str, Any] = {
        "task": cfg.task,
        "record_task": plan.record_task,
        "metric": "kl" if cfg.task == "hms6" else "loss",
        "best_val_metric": run.best_metric,  # the kept checkpoint's evaluate() "metric"
        "best_val_metric_is": _metric_name(cfg, class_weights),
        "epoch_chosen_by": epoch_choice or "validation",
        "windows": plan.windows,
        "split_group": plan.split_group,
        "groups": {k: len(plan.split.of(k)) for k in SPLITS},
        "prior": plan.prior,
    }
    temperature = _calibrate(report, logits, target, cfg)
    report["val"] = evaluate(logits, target, cfg, model.head, plan.prior, class_weights=class_weights)
    if cfg.temperature_scaling:
        report["val_calibrated"] = evaluate(logits, target, cfg, model.head, plan.prior, temperature)
    # Per site, as "val" (before calibration, which these windows were used for) and "test" (after).
    if per_site := evaluate_per_site(logits, target, sites, cfg, model.head, plan.prior):
        report["val_per_site"] = per_site
    held_logits, held_target, held_loader = logits, target, val_loader
    if plan.split.test:
        test_loader = split_loader(cfg, dist, data, plan, "test", model.config.patch_size)
        held_logits, held_target, test_sites = collect(model, test_loader, cfg, dist, amp_dtype)
        held_loader = test_loader
        report["test"] = evaluate(held_logits, held_target, cfg, model.head, plan.prior, temperature)
        if per_site := evaluate_per_site(
            held_logits, held_target, test_sites, cfg, model.head, plan.prior, temperature
        ):
            report["test_per_site"] = per_site
    model.config.temperature = float(temperature)
    if cfg.task != "regression":
        held = "test" if plan.split.test else "val"
        report["confusion"] = confusion_of(held_logits, held_target, cfg, held, class_names(cfg))
        report["reliability"] = reliability_of(held_logits, held_target, cfg, held, temperature)
        samples = collect_samples(model, held_loader, dist, amp_dtype)
        plot = output / "selective.png" if dist.is_main else None
        report["selective"] = {"split": held, **selective_of(held_logits, held_target, samples, cfg, temperature, plot)}
    if dist.is_main:
        with quiet_transformers():
            model.save_pretrained(output / "model")
        save_preprocess_spec(data_dirs(data), output / "model")
        (output / layout.EVAL).write_text(json.dumps(report, indent=2, sort_keys=True))
        _draw(report, cfg, output)
        tracker.summary({**_summary(report), "temperature": temperature})
        _log_held_out(report, cfg, output)


def _metric_name(cfg: FinetuneConfig, class_weights: torch.Tensor | None) -> str:
    """What ``evaluate``'s ``metric`` is for this run, in words."""
    if cfg.task == "regression":
        return "the regression head's loss"
    name = "KL" if cfg.task == "hms6" else "cross-entropy"
    if class_weights is not None and cfg.task != "hms6":
        name = "class-weighted " + name
    return name + (" at the fitted temperature" if cfg.temperature_scaling else "")


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """eval.json's metrics as the tracker's flat keys: ``split/metric`` and ``split/site/metric``."""
    summary = {}
    for split in ("val", "val_calibrated", "test", "val_per_site", "test_per_site"):
        for key, value in report.get(split, {}).items():
            if split.endswith("_per_site"):
                summary.update({f"{split}/{key}/{k}": v for k, v in value.items()})
            else:
                summary[f"{split}/{key}"] = value
    return summary


def _draw(report: dict[str, Any], cfg: FinetuneConfig, output: Path) -> None:
    """confusion.png, calibration.png (classifiers) and sites.png (held-out windows of several sites)."""
    if "confusion" in report:
        confusion = report["confusion"]
        title = f"{cfg.task}: {confusion['split']} windows (true class by row)"
        plot_confusion(np.array(confusion["matrix"]), confusion["classes"], title, output / "confusion.png")
    if "reliability" in report:
        plot_reliability_of(report, cfg.task, output / "calibration.png")
    held_sites = "test_per_site" if "test" in report else "val_per_site"
    if held_sites in report:
        held_name = "test" if "test" in report else "validation"
        plot_per_site(report[held_sites], f"{cfg.task}: {held_name} windows by site", output / "sites.png")


def _scores(m: dict[str, float]) -> tuple[float, float]:
    """The held-out metric and its baseline's."""
    return m.get("kl", m.get("loss")), m.get("baseline_kl", m.get("baseline_loss", math.nan))


_SCORE_NAMES = {
    "balanced_accuracy": "balanced accuracy",
    "auroc": "AUROC",
    "cohen_kappa": "Cohen's kappa",
    "f1_weighted": "weighted F1",
    "r2": "R^2",
}


def _log_held_out(report: dict[str, Any], cfg: FinetuneConfig, output: Path) -> None:
    held_out = report.get("test", report["val"])
    ranks = "".join(f", {name} {held_out[key]:.3f}" for key, name in _SCORE_NAMES.items() if key in held_out)
    value, baseline = _scores(held_out)
    # Without a test split the numbers are the validation subjects', who also chose the
    # checkpoint (and the temperature): held out from training, yet an optimistic estimate.
    if "test" not in report:
        split = "validation"
    elif cfg.corpus_split:
        split = "the corpus's eval split"
    elif cfg.test_sites:
        split = "the test site" + "s" * (len(cfg.test_sites) > 1)
    else:
        split = "held-out test"
    log.info(
        "fine-tuned model saved to %s; %s %s %.4f vs %s baseline %.4f%s",
        output / "model",
        split,
        report["metric"],
        value,
        "training-mean" if cfg.task == "regression" else "class-prior",
        baseline,
        ranks,
    )
    if "test" not in report:
        # corpus_split takes its test subjects from the corpus (test_fraction must stay 0)
        remedy = (
            "the data holds none of the corpus's eval split (TUH: edf/eval/; eegmat: subjects 32-35): "
            "preprocess its eval recordings with the others for a test"
            if cfg.corpus_split
            else f"--set test_fraction=0.2 holds out {cfg.split_group}s that only the final model sees"
        )
        log.info(
            "these are the validation %ss' numbers; they also chose the checkpoint%s, so they flatter the model: %s",
            cfg.split_group,
            " and the temperature" if cfg.temperature_scaling else "",
            remedy,
        )
    if sites := report.get("test_per_site" if "test" in report else "val_per_site", {}):
        log.info(
            "%s %s per site: %s",
            split,
            report["metric"],
            "; ".join(
                "{} {:.3f} (baseline {:.3f}), ".format(site, *_scores(m)) + f"{m['n_windows']} windows"
                for site, m in sites.items()
            ),
        )
