"""A corpus split by subject into training, validation and test, benchmarked: the baselines and
eegfm's rows on the same windows, then ``benchmark.json``/``.md``/``.png``. The eegmat and folder
suites both end here once their recordings are preprocessed: one code path from windows to report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegfm.core.logs import get_logger
from eegfm.evaluation.benchmark import baselines, deep_baselines, report, spectral_stack, tangent_space
from eegfm.evaluation.benchmark.ensemble import class_probabilities, ensemble_probabilities
from eegfm.evaluation.benchmark.runs import METHODS, RecipeOptions, pretrain_folder, reference_note, run_methods
from eegfm.evaluation.benchmark.windows import WindowSet, load_windows
from eegfm.metrics.classification import classification_metrics

log = get_logger(__name__)
METRICS = ("balanced_accuracy", "auroc", "auprc")
# The eegfm_model row (eegfm's network alone) of a labeled corpus: per seed, full fine-tuning or
# the linear probe of the same pretrained encoder, whichever validates better. With a few dozen
# subjects whose every window carries the subject's label, full fine-tuning can learn the training
# subjects instead of the classes (on a 60-person simulated corpus its test AUROC ranged 0.28-0.87
# over seeds, the probe's 0.96-0.97), while on eegmat it beats the probe; validation tells which,
# test never does. The pretrained peers are given the same choice.
ALTERNATIVES = {
    "eegfm": ("linear_probe",),
    "cbramod_pretrained": ("cbramod_probe",),
    "labram_pretrained": ("labram_probe",),
}
CHOSEN = "fully fine-tuned or linearly probed, whichever scores higher on validation"
# The eegfm row of a labeled suite is the recipe the evidence supports (docs/benchmarks.md): each
# seed's network fused with the spectral readout of the same pretrained encoder. The network alone
# stays beside it as ``eegfm_model``, the row own/shared pretraining and from-scratch compare.
RECIPE = (
    "eegfm: each seed's fine-tuned network (eegfm_model) fused (weighted geometric mean, 1:3) with a "
    "logistic regression on the pretrained encoder's embedding and the band powers (and the bands' "
    "tangent-space covariances where validation prefers them), C on validation"
)
BASELINES = {
    "class_prior": "class prior",
    "band_power_lr": "log absolute + relative band powers (0.5-45 Hz) + balanced logistic regression, C on validation",
    "tangent_space_lr": (
        "pyRiemann: each band's spatial covariance in the tangent space of the training windows' mean "
        "+ balanced logistic regression, metric and C on validation"
    ),
    "eegnet": deep_baselines.DESCRIPTION,
}


@dataclasses.dataclass(frozen=True)
class Suite:
    """What a labeled benchmark is: its title, the fine-tuning task and the windows' record task,
    its class names, the published numbers to show beside it and what its split is called."""

    name: str
    title: str
    task: str
    record_task: str
    classes: tuple[str, ...]
    split_names: str = "training, validation and test subjects"
    published: Sequence[tuple[str, dict[str, float], str]] = ()
    finetune_defaults: tuple[str, ...] = ()


def metrics_of(probs: np.ndarray, target: np.ndarray, prior: np.ndarray) -> dict[str, float]:
    """The fine-tuning report's metrics (``metrics.classification``) of class probabilities against
    ``target`` (labels or distributions)."""
    logits = torch.log(torch.as_tensor(probs).clamp_min(1e-12))
    return classification_metrics(logits, torch.as_tensor(target), prior.tolist())


def split_results(probs: dict[str, np.ndarray], windows: WindowSet, n_classes: int = 2) -> dict[str, Any]:
    """``{split name: {metric: [value]}}`` of class probabilities ``{split: [N, C]}`` of each split's
    windows (``windows.of_split`` order), against the training split's class prior."""
    prior = baselines.targets(windows.of_split("train"), n_classes).mean(0)
    found = {}
    for split, split_probs in probs.items():
        metrics = metrics_of(split_probs, windows.of_split(split).label, prior)
        found[report.SPLIT_NAMES[split]] = {m: [metrics[m]] for m in METRICS}
    return found


def predictor_results(predict, windows: WindowSet, splits: list[str], n_classes: int = 2) -> dict[str, Any]:
    """:func:`split_results` of one predictor of class probabilities (each split predicted once)."""
    return split_results({split: predict(windows.of_split(split)) for split in splits}, windows, n_classes)


def ensemble_results(models: list[Path], windows: WindowSet, splits: list[str], n_classes: int = 2) -> dict[str, Any]:
    return predictor_results(lambda held: ensemble_probabilities(models, held), windows, splits, n_classes)


def stacked_results(
    encoder_dir: Path, models: list[Path], windows: WindowSet, splits: list[str], n_classes: int = 2
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``eegfm`` rows, the recipe (:mod:`spectral_stack`): each of ``models`` fused with the
    spectral readout of the pretrained encoder in ``encoder_dir``, one value per model; with
    several models, ``eegfm_ensemble``, their mean probabilities fused. Also what
    validation chose for the readout (its features and C). Each model and the readout predict
    each split once."""
    train, validation = windows.of_split("train"), windows.of_split("dev")
    readout, chosen = spectral_stack.spectral_readout(encoder_dir, train, n_classes, validation)
    held = {split: windows.of_split(split) for split in splits}
    read = {split: readout(held[split]) for split in splits}
    per_model = [{split: class_probabilities(m, held[split]) for split in splits} for m in models]
    fused = [
        split_results({s: spectral_stack.fuse(p[s], read[s]) for s in splits}, windows, n_classes) for p in per_model
    ]
    rows = {"eegfm": {s: {m: [r[s][m][0] for r in fused] for m in METRICS} for s in fused[0]}}
    if len(models) > 1:
        mean = {s: np.mean([p[s] for p in per_model], axis=0) for s in splits}
        rows["eegfm_ensemble"] = split_results(
            {s: spectral_stack.fuse(mean[s], read[s]) for s in splits}, windows, n_classes
        )
    return rows, chosen


def recipe_rows(
    output: Path, reports: dict, windows: WindowSet, splits: list[str], n_classes: int, model_description: str
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The eegfm rows of a labeled suite, their descriptions and the readout validation chose:
    ``eegfm`` (the recipe, per seed) and ``eegfm_ensemble`` (the seeds' mean, fused), beside
    ``eegfm_model`` (the network alone: ``reports``' ``eegfm`` runs) and ``eegfm_model_ensemble``."""
    models = [Path(r["run"]) / "model" for r in reports["eegfm"]["corpus"]]
    results = {"eegfm_model": model_results({"eegfm": reports["eegfm"]})["eegfm"]}
    stacked, readout = stacked_results(pretrain_folder(output) / "model", models, windows, splits, n_classes)
    results.update(stacked)
    methods = {"eegfm": RECIPE}
    if len(models) > 1:
        methods["eegfm_ensemble"] = "eegfm, the seeds' networks' mean fused with the readout"
    methods["eegfm_model"] = model_description
    if len(models) > 1:
        results["eegfm_model_ensemble"] = ensemble_results(models, windows, splits, n_classes)
        methods["eegfm_model_ensemble"] = f"eegfm_model, mean probabilities of the {len(models)} seeds' networks"
    return results, methods, readout


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


def _split_counts(windows: WindowSet, suite: Suite, data_name: str) -> tuple[dict[str, int], list[str]]:
    """Subjects per split, and the notes they call for; ValueError without training or validation."""
    counts = {s: len(set(windows.of_split(s).subject.tolist())) for s in ("train", "dev", "eval")}
    if not counts["train"] or not counts["dev"]:
        raise ValueError(f"{data_name}: subjects per split {counts}; expected {suite.split_names}")
    notes = [f"subjects per split: {counts['train']} training, {counts['dev']} validation, {counts['eval']} test"]
    if not counts["eval"]:
        notes.append("no test subjects in the data: validation only (validation also chose checkpoints)")
        log.warning(notes[-1])
    return counts, notes


def evaluate(data: str, output: Path, args, suite: Suite, notes: Sequence[str] = (), extra: dict | None = None):
    """The baselines and ``args.methods`` over ``args.seeds`` on ``data`` (the pipeline's output,
    its windows of ``suite.record_task``), reported into ``output``; the flat results."""
    windows = load_windows(data, suite.record_task)
    counts, split_notes = _split_counts(windows, suite, "data")
    splits = [s for s in ("dev", "eval") if counts[s]]
    n_classes = len(suite.classes)
    train = windows.of_split("train")
    lr, c = baselines.band_power_lr(train, n_classes, windows.of_split("dev"))  # C chosen on validation
    riemannian, riemannian_chosen = tangent_space.tangent_space_lr(train, n_classes, windows.of_split("dev"))
    predictors = {"class_prior": baselines.class_prior(train, n_classes), "band_power_lr": lr}
    predictors["tangent_space_lr"] = riemannian
    # the supervised deep baseline: trained on the training windows, its recipe chosen on validation
    predictors["eegnet"], eegnet_settings = deep_baselines.eegnet(
        train, windows.of_split("dev"), n_classes, cache=output / "baselines"
    )
    results = {name: predictor_results(predict, windows, splits, n_classes) for name, predict in predictors.items()}
    opts = RecipeOptions.from_args(args, suite.task, finetune_defaults=suite.finetune_defaults)
    opts = dataclasses.replace(opts, record_task=suite.record_task)
    folds = {"corpus": ("corpus_split=true",)}
    reports = run_methods(data, output, args.methods, args.seeds, opts, folds, [data], ALTERNATIVES)
    results.update(model_results(reports))
    methods = {**BASELINES, **{m: METHODS[m].description for m in args.methods}}
    chosen = {}
    for name in (m for m in ALTERNATIVES if m in args.methods):
        what = "eegfm's network alone: pretrained" if name == "eegfm" else METHODS[name].description
        row = "eegfm_model" if name == "eegfm" else name
        methods[name] = f"{what}; {CHOSEN}"
        methods[f"{name}_full"] = f"{what}, fully fine-tuned on every seed (the {row} row's first candidate)"
        chosen[f"{name}.chosen"] = [r["chosen"] for r in reports[name]["corpus"]]
    if "eegfm" in args.methods:
        recipe, rows, readout = recipe_rows(output, reports, windows, splits, n_classes, methods.pop("eegfm"))
        results.update(recipe)  # "eegfm" becomes the recipe; the network alone is "eegfm_model"
        methods = {**BASELINES, **rows, **{k: v for k, v in methods.items() if k not in BASELINES}}
        chosen["eegfm_model.chosen"] = chosen.pop("eegfm.chosen")
        chosen["eegfm.readout"] = readout
    run = {"suite": suite.name, "seeds": list(args.seeds), "config": args.config, "windows": counts}
    if note := reference_note(list(reports), opts, args.seeds):
        split_notes.append(note)
    flat = report.flat_results(results)
    text = report.markdown(suite.title, flat, methods, METRICS, [*split_notes, *notes], suite.published)
    run.update({"classes": list(suite.classes), "band_power_lr.C": c, **chosen, **(extra or {})})
    run["band_power_lr.C_chosen_by"] = baselines.C_CHOSEN_BY
    run["tangent_space_lr.chosen"] = riemannian_chosen
    run["eegnet.settings"] = eegnet_settings
    report.write(output, flat, run, text, lambda p: report.plot(p, flat, list(methods), METRICS, suite.name))
    return flat
