"""The simulated suite: six-class expert-vote classification (Seizure, LPD, GPD, LRDA, GRDA, Other)
on a generated multi-hospital corpus, leave-one-site-out: each site in turn is the test set of
every method, trained on the other sites.

Pretraining reads a second simulated corpus (another seed: other patients, other site
perturbations), so no window of a held-out site reaches it. The band-power regression trains on
every window of the other sites (fine-tuning keeps some of their subjects for validation), and
chooses its regularization by cross-validation over those subjects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract.layout import MANIFEST
from eegfm.core.logs import get_logger
from eegfm.core.tasks import FINETUNE_TASKS, HMS_CLASSES
from eegfm.evaluation.benchmark import baselines, report
from eegfm.evaluation.benchmark.ensemble import ensemble_probabilities
from eegfm.evaluation.benchmark.labeled import metrics_of
from eegfm.evaluation.benchmark.preprocessing import benchmark_key
from eegfm.evaluation.benchmark.runs import METHODS, RecipeOptions, reference_note, run_methods
from eegfm.evaluation.benchmark.windows import WindowSet, load_windows
from eegfm.pipelines import preprocess as pipeline
from eegfm.simulate import cli as simulator

log = get_logger(__name__)
TASK = "hms6"
METRICS = ("kl", "kl_vs_baseline", "balanced_accuracy")
# Chosen on the corpus of --seed 1 (docs/benchmarks.md), not on the reported one, with 4 people a site: the KL objective
# wants unweighted classes (weights bias the probabilities KL scores), and a fold's ~120 training
# windows make 4 steps an epoch, so 8 epochs with warm-up 20 barely train.
FINETUNE_DEFAULTS = ("class_weights=none", "epochs=30", "early_stopping_patience=6")
BASELINES = {"class_prior": "class prior", "band_power_lr": "log band powers + multinomial logistic regression"}


def simulate_and_preprocess(
    output: Path, sites: int, seed: int, key_file: str | None = None, layout: str = "edf", subjects: int = 4
) -> str:
    """A simulated corpus of ``subjects`` people a site and its preprocessed windows; earlier complete
    ones are reused. ``layout``:
    ``edf`` (10 s windows, each with the spectrogram computed from it) or ``hms`` (Kaggle's layout:
    50 s windows at the label rows, each with its recording's Kaggle-style 10-minute spectrogram)."""
    corpus, data = output / "corpus", output / "data"
    if not (corpus / "corpus.json").is_file():
        simulator.run(
            ["--output", str(corpus), "--sites", str(sites), "--subjects-per-site", str(subjects)]
            + ["--recordings-per-subject", "1", "--minutes", "6", "--seed", str(seed), "--format", layout, "--quiet"]
        )
    if not (data / MANIFEST).is_file():
        pipeline.run(
            ["--input", str(corpus / layout), "--output", str(data), "--no_artifact_model"]
            + ["--pseudonym_key_file", str(benchmark_key(output, key_file)), "--overwrite"]
        )
    return str(data)


def per_site(windows: WindowSet, sites: list[str], predictors_of) -> dict[str, dict[str, dict[str, float]]]:
    """``{predictor: {site: metrics}}``: ``predictors_of(site, training windows)`` gives
    ``{name: predict}`` for a held-out site, each judged against the other sites' class prior."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for site in sites:
        train, test = windows.where(windows.site != site), windows.where(windows.site == site)
        prior, target = baselines.targets(train, len(HMS_CLASSES)).mean(0), baselines.targets(test, len(HMS_CLASSES))
        for name, predict in predictors_of(site, train).items():
            found.setdefault(name, {})[site] = metrics_of(predict(test), target, prior)
    return found


def baseline_folds(windows: WindowSet, sites: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """``{baseline: {site: metrics}}``, each site predicted by a model of the other sites."""
    n = len(HMS_CLASSES)
    return per_site(
        windows,
        sites,
        lambda _site, train: {
            "class_prior": baselines.class_prior(train, n),
            "band_power_lr": baselines.band_power_lr(train, n, balanced=False),
        },
    )


def ensemble_folds(output: Path, seeds: list[int], windows: WindowSet, sites: list[str]) -> dict[str, dict]:
    """``{"eegfm_ensemble": {site: metrics}}``: the mean probabilities of the seeds' models of each fold."""

    def predictors(site: str, _train: WindowSet) -> dict:
        models = [output / "runs" / "eegfm" / site / f"seed{seed}" / "model" for seed in seeds]
        return {"eegfm_ensemble": lambda test: ensemble_probabilities(models, test)}

    return per_site(windows, sites, predictors)


def selective_means(reports: dict[str, dict[str, list[dict]]], sites: list[str]) -> dict[str, dict[str, float]]:
    """``{method: {risk: {"all": mean risk of every held-out window, score: mean risk of the most
    certain 80 % by that score}}}``: the means over held-out sites and seeds of the selective summaries
    the runs wrote (``eval.json["selective"]``, ``metrics.selective``); methods without one are left out."""
    found: dict[str, dict[str, dict[str, list[float]]]] = {}
    for method, by_site in reports.items():
        for summary in (r["selective"] for site in sites for r in by_site[site] if "selective" in r):
            for risk, entry in summary["risks"].items():
                cells = found.setdefault(method, {}).setdefault(risk, {})
                cells.setdefault("all", []).append(entry["full_coverage_risk"])
                for score, values in entry["scores"].items():
                    cells.setdefault(score, []).append(values[f"risk_at_{summary['coverage']:g}"])
    return {
        m: {r: {k: float(np.mean(v)) for k, v in c.items()} for r, c in risks.items()} for m, risks in found.items()
    }


def selective_markdown(means: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The selective-prediction table: each method's risks with every window and with the most certain 80 %."""
    if not means:
        return []
    scores = sorted({s for risks in means.values() for cells in risks.values() for s in cells if s != "all"})
    lines = [
        "",
        "Selective prediction on the held-out sites (mean over sites): risk of every window, and of the "
        "most certain 80 % by each score",
        "",
        "| method | risk | all windows | " + " | ".join(scores) + " |",
        "|---|---|---|" + "---|" * len(scores),
    ]
    for method, risks in means.items():
        for risk, cells in risks.items():
            row = [f"{cells[s]:.3f}" if s in cells else "" for s in scores]
            lines.append(f"| {method} | {risk} | {cells['all']:.3f} | " + " | ".join(row) + " |")
    return lines


def run(args) -> dict[str, Any]:
    output = Path(args.output)
    key, subjects = args.pseudonym_key_file, args.subjects_per_site
    data = simulate_and_preprocess(output / "labeled", args.sites, args.seed, key, args.layout, subjects)
    unlabeled = simulate_and_preprocess(output / "unlabeled", args.sites, args.seed + 1000, key, subjects=subjects)
    windows = load_windows(data, FINETUNE_TASKS[TASK])
    sites = sorted(set(windows.site.tolist()))
    results: dict[str, Any] = {}
    per_fold: dict[str, Any] = {}

    def add_folds(found: dict[str, dict[str, dict[str, float]]]) -> None:
        for name, folds in found.items():
            results[name] = {"heldout": {m: [float(np.nanmean([folds[s][m] for s in sites]))] for m in METRICS}}
            per_fold[name] = {site: {m: folds[site][m] for m in METRICS} for site in sites}

    add_folds(baseline_folds(windows, sites))
    opts = RecipeOptions.from_args(args, TASK, ["exclude_corpus_splits=[]"], FINETUNE_DEFAULTS)
    folds = {site: (f"test_sites=[{site}]",) for site in sites}
    reports = run_methods(data, output, args.methods, args.seeds, opts, folds, pretrain_data=[unlabeled])
    for method, by_site in reports.items():
        per_fold[method] = {s: {m: [r["test"].get(m, math.nan) for r in by_site[s]] for m in METRICS} for s in sites}
        by_seed = {m: zip(*(per_fold[method][s][m] for s in sites)) for m in METRICS}  # each seed's sites
        results[method] = {"heldout": {m: [float(np.nanmean(v)) for v in values] for m, values in by_seed.items()}}
    methods = {**BASELINES, **{m: METHODS[m].description for m in args.methods}}
    if "eegfm" in args.methods and len(args.seeds) > 1:
        add_folds(ensemble_folds(output, args.seeds, windows, sites))
        methods["eegfm_ensemble"] = f"eegfm, mean probabilities of the {len(args.seeds)} seeds' models"
    flat = report.flat_results(results)
    notes = [
        f"{len(sites)} simulated sites ({args.layout} layout), leave-one-site-out: each row is the mean over "
        "held-out sites (± std over fine-tuning seeds)",
        "kl_vs_baseline: KL over the class prior's KL on the same held-out site (lower is better)",
    ]
    notes += [note] if (note := reference_note(args.methods, opts, args.seeds)) else []
    selective = selective_means(reports, sites)
    text = report.markdown("simulated: six-class leave-one-site-out", flat, methods, METRICS, notes)
    text += "\n".join(selective_markdown(selective)) + "\n"
    extra = {"suite": "simulated", "seeds": list(args.seeds), "config": args.config, "sites": sites, "folds": per_fold}
    extra["layout"] = args.layout
    extra["selective"] = selective
    report.write(output, flat, extra, text, lambda p: report.plot(p, flat, list(methods), METRICS, "simulated"))
    return flat
