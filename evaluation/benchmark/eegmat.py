"""The eegmat suite: rest vs mental arithmetic on PhysioNet's recordings, on the published split
(sorted subjects 00-27 train, 28-31 validation, 32-35 test), 5 s windows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegfm.core.logs import get_logger
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.evaluation.benchmark import baselines, report
from eegfm.evaluation.benchmark.runs import METHODS, RecipeOptions, run_methods
from eegfm.evaluation.benchmark.windows import WindowSet, load_windows
from eegfm.evaluation.metrics import classification_metrics

log = get_logger(__name__)
TASK = "eegmat"  # the fine-tuning task; its records carry FINETUNE_TASKS[TASK]
METRICS = ("balanced_accuracy", "auroc", "auprc")
BASELINES = {"class_prior": "class prior", "band_power_lr": "log band powers + logistic regression"}


def preprocess(inputs: str, output: Path) -> str:
    """eegfm's pipeline on the recordings (5 s windows; rule-based artifact scores, so nothing is
    fitted across subjects); an earlier complete output is reused."""
    from eegfm.pipelines import preprocess as pipeline

    if not (output / "manifest.json").is_file():
        key = output.parent / "pseudonym.key"
        pipeline.run(
            ["--input", inputs, "--output", str(output), "--dataset", "eegmat", "--window_seconds", "5"]
            + ["--no_artifact_model", "--pseudonym_key_file", str(key), "--create_key_file", "--overwrite"]
        )
    return str(output)


def metrics_of(probs: np.ndarray, windows: WindowSet, prior: np.ndarray) -> dict[str, float]:
    """The fine-tuning report's metrics (``evaluation.metrics``) of class probabilities."""
    logits = torch.log(torch.as_tensor(probs).clamp_min(1e-12))
    return classification_metrics(logits, torch.as_tensor(windows.label), prior.tolist())


def baseline_results(windows: WindowSet, splits: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    train = windows.of_split("train")
    prior = baselines.targets(train, 2).mean(0)
    lr, c = baselines.band_power_lr(train, 2)
    predictors = {"class_prior": baselines.class_prior(train, 2), "band_power_lr": lr}
    results = {
        name: {
            report.SPLIT_NAMES[split]: {
                m: [metrics_of(predict(windows.of_split(split)), windows.of_split(split), prior)[m]] for m in METRICS
            }
            for split in splits
        }
        for name, predict in predictors.items()
    }
    return results, {"band_power_lr.C": c}


def model_results(reports: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per method, split and metric, the value of each seed's run (one fold: the corpus split)."""
    return {
        method: {
            split: {m: [r[split].get(m, math.nan) for r in runs] for m in METRICS}
            for split in ("val", "test")
            if all(split in r for r in runs)
        }
        for method, (runs,) in ((method, tuple(folds.values())) for method, folds in reports.items())
    }


def run(args) -> dict[str, Any]:
    output = Path(args.output)
    data = preprocess(args.data, output / "data")
    windows = load_windows(data, FINETUNE_TASKS[TASK])
    counts = {s: len(set(windows.of_split(s).subject.tolist())) for s in ("train", "dev", "eval")}
    if not counts["train"] or not counts["dev"]:
        raise ValueError(
            f"--data {args.data}: eegmat subjects per split {counts}; expected training (00-27) and "
            "validation (28-31) subjects"
        )
    splits = [s for s in ("dev", "eval") if counts[s]]
    notes = [f"subjects per split: {counts['train']} training, {counts['dev']} validation, {counts['eval']} test"]
    if not counts["eval"]:
        notes.append("the test subjects (32-35) are absent from --data: validation only (they also chose checkpoints)")
        log.warning(notes[-1])
    results, chosen = baseline_results(windows, splits)
    opts = RecipeOptions(
        config=args.config,
        task=TASK,
        pretrain_steps=args.pretrain_steps,
        unlabeled=tuple(args.unlabeled),
        finetune_set=tuple(args.finetune_set),
        pretrain_set=tuple(args.pretrain_set),
    )
    reports = run_methods(
        data, output, args.methods, args.seeds, opts, folds={"corpus": ("corpus_split=true",)}, pretrain_data=[data]
    )
    results.update(model_results(reports))
    flat = report.flat_results(results)
    methods = {**BASELINES, **{m: METHODS[m].description for m in args.methods}}
    text = report.markdown("eegmat: rest vs mental arithmetic", flat, methods, METRICS, notes, report.PUBLISHED_EEGMAT)
    extra = {"suite": TASK, "seeds": list(args.seeds), "config": args.config, "windows": counts, **chosen}
    report.write(output, flat, extra, text, lambda p: report.plot(p, flat, list(methods), METRICS, "eegmat"))
    return flat
