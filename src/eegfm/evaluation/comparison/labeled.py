"""A corpus split by subject into training, validation and test, benchmarked: every registered row
(``benchmark.rows``: baselines, eegfm's networks, the recipe and the stacks) on the same windows,
scored per window, per recording and per person, then ``benchmark.json``/``.md``/``.png`` and,
with ``export``, the row validation ranks first as a model folder (``benchmark.export``). The
eegmat and folder suites both end here once their recordings are preprocessed: one code path
from windows to report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegfm.core import stopwatch
from eegfm.core.job_pool import JobPool, plan
from eegfm.core.logs import get_logger
from eegfm.core.threads import at_most, pool_threads
from eegfm.evaluation.comparison import baselines, choice, levels, report
from eegfm.evaluation.comparison.export import export_row
from eegfm.evaluation.comparison.options import BenchmarkOptions
from eegfm.evaluation.comparison.row_fits import Context, Fitted
from eegfm.evaluation.comparison.rows import ALTERNATIVES, NETWORK_ROW, ROWS
from eegfm.evaluation.comparison.runs import (
    EEGFM_SETTINGS,
    PRETRAINED_SETTINGS,
    RecipeOptions,
    run_methods,
    seeds_note,
    validation_score,
)
from eegfm.evaluation.comparison.windows import WindowSet, load_windows
from eegfm.metrics.classification import classification_metrics
from eegfm.model.fused import FusedModel, Part, fuse, network_probabilities

log = get_logger(__name__)
METRICS = ("balanced_accuracy", "auroc", "auprc")
# Rows that combine what other rows fitted, in report order after the baselines: each runs where
# what it reads ran (eegfm's runs, EEGNet) and, for an ensemble, where there are several seeds.
DERIVED_ORDER = (
    "eegnet_ensemble",
    "spectral_readout",
    "eegnet_stack",
    "eegfm",
    "eegfm_ensemble",
    "eegfm_model",
    "eegfm_model_ensemble",
)
ENSEMBLES = ("eegnet_ensemble", "eegfm_ensemble", "eegfm_model_ensemble")


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
    finetune_defaults: tuple[tuple[str, Any], ...] = ()  # settings (``RecipeOptions.finetune_defaults``)


def metrics_of(probs: np.ndarray, target: np.ndarray, prior: np.ndarray) -> dict[str, float]:
    """The fine-tuning report's metrics (``metrics.classification``) of class probabilities against
    ``target`` (labels or distributions)."""
    logits = torch.log(torch.as_tensor(probs).clamp_min(1e-12))
    return classification_metrics(logits, torch.as_tensor(target), prior.tolist())


class PartProbabilities:
    """Each part's class probabilities of each split, computed once however many rows and seeds
    share the part (the readout, a seed's network)."""

    def __init__(self, windows: WindowSet, n_classes: int) -> None:
        self.windows, self.n_classes = windows, n_classes
        self._found: dict[tuple, np.ndarray] = {}
        self._held: dict[str, WindowSet] = {}

    def held(self, split: str) -> WindowSet:
        if split not in self._held:
            self._held[split] = self.windows.of_split(split)
        return self._held[split]

    def _once(self, key: tuple, compute) -> np.ndarray:
        if key not in self._found:
            self._found[key] = compute()
        return self._found[key]

    def of_part(self, part: Part, split: str) -> np.ndarray:
        held = self.held(split)
        if part.kind == "network":
            found = [
                self._once((str(f), split), lambda f=f: network_probabilities(f, held.eeg, held.channel_mask))
                for f in part.folders
            ]
            return np.mean(found, axis=0)
        key = (part.kind, id(part.readout) if part.readout else tuple(id(m) for m in part.eegnets), split)
        if part.kind == "prior":
            key = ("prior", tuple(part.prior), split)
        return self._once(key, lambda: part.probabilities(held.eeg, held.channel_mask, self.n_classes))

    def of_model(self, model: FusedModel, split: str) -> np.ndarray:
        return fuse([self.of_part(p, split) for p in model.parts], [p.weight for p in model.parts])


def _validation_probabilities(run: Mapping[str, Any], parts: PartProbabilities) -> np.ndarray:
    """A fine-tuning run's network's validation probabilities (computed once: its row reads them)."""
    return parts.of_part(Part("network", 1.0, folders=[Path(run["run"]) / "model"]), "dev")


def score_row(fitted: Fitted, parts: PartProbabilities, splits: Sequence[str]) -> tuple[dict, dict]:
    """A row's results ``{split: {metric: [per model]}, "split.level": {...}}`` and its people
    intervals ``{"split.level.metric_ci": {...}}``: window-level metrics against the training
    split's class prior, then :mod:`levels`."""
    n_classes = parts.n_classes
    prior = baselines.targets(parts.held("train"), n_classes).mean(0)
    results: dict[str, Any] = {}
    intervals: dict[str, Any] = {}
    for split in splits:
        name, held = report.SPLIT_NAMES[split], parts.held(split)
        probs = [parts.of_model(model, split) for model in fitted.models]
        found = [metrics_of(p, held.label, prior) for p in probs]
        results[name] = {m: [f.get(m, float("nan")) for f in found] for m in METRICS}
        for level in levels.LEVELS:
            values, ci = levels.level_scores(probs, held, level, n_classes)
            results[f"{name}.{level}"] = {m: values.get(m, [float("nan")] * len(probs)) for m in METRICS}
            intervals.update({f"{name}.{level}.{m}_ci": ci[m] for m in METRICS if m in ci})
    return results, intervals


def selected_rows(options: BenchmarkOptions, reports: dict[str, Any]) -> list[str]:
    """The rows this run reports, in report order: the chosen baselines, the derived rows whose
    inputs ran, then each fine-tuning method's network row."""
    ran = set(reports)
    several = len(options.seeds) > 1
    names = list(options.baselines)
    for name in DERIVED_ORDER:
        row = ROWS[name]
        if name in ENSEMBLES and not several:
            continue
        if not set(row.needs) <= ran or (name.startswith("eegnet") and "eegnet" not in names):
            continue
        names.append(name)
    for method in reports:
        row = NETWORK_ROW.get(method, method)
        if row not in names:
            names.append(row)
    return names


def _beside_workers(pool: JobPool, work) -> None:
    """``work`` in this process while ``pool``'s workers run, on one worker's share of threads."""
    with at_most(pool.plan.threads):
        work()


def rows_without_runs(options: BenchmarkOptions) -> list[str]:
    """The rows this process can fit while the fine-tuning runs go on: the baselines but EEGNet
    (whose fits share the workers with them), and with eegfm's runs asked for, its readout (of the
    pretrained encoder alone)."""
    names = [name for name in options.baselines if name != "eegnet"]
    return names + (["spectral_readout"] if "eegfm" in options.methods else [])


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


def evaluate(
    data: str,
    options: BenchmarkOptions,
    suite: Suite,
    window_seconds: float,
    notes: Sequence[str] = (),
    extra: dict | None = None,
) -> dict[str, Any]:
    """Every selected row (:func:`selected_rows`) on ``data`` (the pipeline's output, its windows
    of ``suite.record_task``), reported into ``options.output``, and with ``options.export`` the
    row validation ranks first written there; the flat results."""
    output = options.output
    extra = dict(extra or {})
    windows = load_windows(data, suite.record_task)
    counts, split_notes = _split_counts(windows, suite, "data")
    splits = [s for s in ("dev", "eval") if counts[s]]
    opts = RecipeOptions.from_options(options, suite.task, finetune_defaults=dict(suite.finetune_defaults))
    opts = dataclasses.replace(
        opts, record_task=suite.record_task, eegfm_settings=EEGFM_SETTINGS, pretrained_settings=PRETRAINED_SETTINGS
    )
    threads = pool_threads().count
    parts = PartProbabilities(windows, len(suite.classes))
    choose = choice.with_people(lambda run: _validation_probabilities(run, parts), parts.held("dev"), parts.n_classes)
    with JobPool(plan(threads, threads, options.workers)) as pool:
        context = Context(
            windows, suite.classes, output, options.seeds, window_seconds, {}, options.eegnet_max_epochs, pool
        )
        if "eegnet" in options.baselines:
            context.start_eegnets()  # its jobs share the workers with the fine-tuning runs
        results, intervals, fitted = {}, {}, {}

        def fit(names: Sequence[str]) -> None:
            for name in names:
                if name not in fitted:
                    log.info("benchmark: row %s", name)
                    with stopwatch.part("rows: fitted and scored", name):
                        fitted[name] = ROWS[name].fit(context)
                        results[name], intervals[name] = score_row(fitted[name], parts, splits)

        folds = {"corpus": {"corpus_split": True}}
        context.reports = run_methods(
            data, output, options.methods, options.seeds, opts, folds, [data], ALTERNATIVES, pool, choose,
            meanwhile=lambda: _beside_workers(pool, lambda: fit(rows_without_runs(options))),
        )  # fmt: skip
        names = selected_rows(options, context.reports)
        fit(names)
        reports = context.reports
    results, intervals = ({name: found[name] for name in names} for found in (results, intervals))
    chosen = {f"{name}.chosen": f.chosen for name, f in fitted.items() if f.chosen is not None}
    run = {"suite": suite.name, "seeds": list(options.seeds), "config": options.config, "windows": counts}
    if note := seeds_note(list(reports), opts, options.seeds):
        split_notes.append(note)
    flat = report.flat_results(results)
    flat.update({f"{name}.{key}": ci for name, found in intervals.items() for key, ci in found.items()})
    methods = {name: ROWS[name].description for name in fitted}
    ranked = rank_on_validation(results)
    run.update({"classes": list(suite.classes), **chosen, **extra, "ranked_on_validation": ranked})
    run["C_chosen_by"] = baselines.C_CHOSEN_BY  # every logistic regression's C (the readouts')
    if options.export is not None and ranked:
        best = ranked[0]
        scores = model_scores(results[best])
        index = max(range(len(scores)), key=scores.__getitem__)  # the row's best seed on validation
        run["exported"] = export_row(options.export, best, index, fitted[best], results[best], flat, suite, data)
    text = report.markdown(suite.title, flat, methods, METRICS, [*split_notes, *notes], suite.published)
    text += report.chosen_markdown(run)
    with stopwatch.part("report"):
        report.write(output, flat, run, text, lambda p: report.plot(p, flat, list(methods), METRICS, suite.name))
    return flat


def model_scores(row_results: dict[str, Any]) -> list[float]:
    """Each of a row's models' validation score (``runs.validation_score``: the mean of its
    window-level validation metrics); test never scores."""
    val = row_results.get("val", {})
    runs = len(next(iter(val.values()), []))
    return [validation_score({"val": {m: val[m][i] for m in val}}) for i in range(runs)]


def rank_on_validation(results: dict[str, Any]) -> list[str]:
    """The rows by the mean of their models' :func:`model_scores`, best first."""
    scores = {}
    for name, found in results.items():
        finite = [s for s in model_scores(found) if np.isfinite(s)]
        if finite:
            scores[name] = float(np.mean(finite))
    return sorted(scores, key=lambda n: -scores[n])
