"""The eegmat suite: rest vs mental arithmetic on PhysioNet's recordings, on the published split
(sorted subjects 00-27 train, 28-31 validation, 32-35 test), 5 s windows."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegfm.core.logs import get_logger
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.evaluation.benchmark import baselines, report
from eegfm.evaluation.benchmark.ensemble import ensemble_probabilities
from eegfm.evaluation.benchmark.runs import METHODS, RecipeOptions, run_methods
from eegfm.evaluation.benchmark.windows import WindowSet, load_windows
from eegfm.evaluation.metrics import classification_metrics
from eegfm.pipelines import preprocess as pipeline

log = get_logger(__name__)
TASK = "eegmat"  # the fine-tuning task; its records carry FINETUNE_TASKS[TASK]
METRICS = ("balanced_accuracy", "auroc", "auprc")
BASELINES = {"class_prior": "class prior", "band_power_lr": "log band powers + logistic regression"}


# The benchmarks read public corpora: one fixed key gives the same pseudonyms, and so the same
# pretraining hold-out and shuffles, on every run and machine (a clinic's data needs its own key).
BENCHMARK_KEY = hashlib.sha256(b"eegfm benchmarks: public corpora only").hexdigest()


def benchmark_key(folder: Path, own: str | None = None) -> Path:
    """``own`` key file, else the benchmark's fixed key written once into ``folder``."""
    if own is not None:
        return Path(own)
    path = folder / "pseudonym.key"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(BENCHMARK_KEY + "\n")
        path.chmod(0o600)  # as deid expects of any key file
    return path


def preprocess(inputs: str, output: Path, key_file: str | None = None) -> str:
    """eegfm's pipeline on the recordings (5 s windows; rule-based artifact scores, so nothing is
    fitted across subjects); an earlier complete output is reused."""
    if not (output / "manifest.json").is_file():
        key = benchmark_key(output.parent, key_file)
        pipeline.run(
            ["--input", inputs, "--output", str(output), "--dataset", "eegmat", "--window_seconds", "5"]
            + ["--no_artifact_model", "--pseudonym_key_file", str(key), "--overwrite"]
        )
    return str(output)


def metrics_of(probs: np.ndarray, target: np.ndarray, prior: np.ndarray) -> dict[str, float]:
    """The fine-tuning report's metrics (``evaluation.metrics``) of class probabilities against
    ``target`` (labels or distributions)."""
    logits = torch.log(torch.as_tensor(probs).clamp_min(1e-12))
    return classification_metrics(logits, torch.as_tensor(target), prior.tolist())


def predictor_results(predict, windows: WindowSet, splits: list[str]) -> dict[str, Any]:
    """``{split name: {metric: [value]}}`` of one predictor of class probabilities (each split
    predicted once), against the training split's class prior."""
    prior = baselines.targets(windows.of_split("train"), 2).mean(0)
    found = {}
    for split in splits:
        held = windows.of_split(split)
        metrics = metrics_of(predict(held), held.label, prior)
        found[report.SPLIT_NAMES[split]] = {m: [metrics[m]] for m in METRICS}
    return found


def ensemble_results(models: list[Path], windows: WindowSet, splits: list[str]) -> dict[str, Any]:
    return predictor_results(lambda held: ensemble_probabilities(models, held), windows, splits)


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
    data = preprocess(args.data, output / "data", args.pseudonym_key_file)
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
    train = windows.of_split("train")
    lr, c = baselines.band_power_lr(train, 2)
    predictors = {"class_prior": baselines.class_prior(train, 2), "band_power_lr": lr}
    results = {name: predictor_results(predict, windows, splits) for name, predict in predictors.items()}
    opts = RecipeOptions.from_args(args, TASK)
    reports = run_methods(
        data, output, args.methods, args.seeds, opts, folds={"corpus": ("corpus_split=true",)}, pretrain_data=[data]
    )
    results.update(model_results(reports))
    methods = {**BASELINES, **{m: METHODS[m].description for m in args.methods}}
    if "eegfm" in args.methods and len(args.seeds) > 1:
        models = [output / "runs" / "eegfm" / "corpus" / f"seed{seed}" / "model" for seed in args.seeds]
        results["eegfm_ensemble"] = ensemble_results(models, windows, splits)
        methods["eegfm_ensemble"] = f"eegfm, mean probabilities of the {len(models)} seeds' models"
    flat = report.flat_results(results)
    text = report.markdown("eegmat: rest vs mental arithmetic", flat, methods, METRICS, notes, report.PUBLISHED_EEGMAT)
    extra = {"suite": TASK, "seeds": list(args.seeds), "config": args.config, "windows": counts, "band_power_lr.C": c}
    report.write(output, flat, extra, text, lambda p: report.plot(p, flat, list(methods), METRICS, "eegmat"))
    return flat
