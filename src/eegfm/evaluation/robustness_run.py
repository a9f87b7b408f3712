"""The run of ``eegfm-robustness`` (``evaluation.robustness``): a fine-tuning run's held-out windows
scored clean and under every perturbation (``evaluation.perturbations``), the report and its picture."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from eegfm.contract import layout
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.evaluation.perturbations import PERTURBATIONS, Perturbation, add_mains, generator_of
from eegfm.evaluation.robustness import PLOT_NAME, REPORT_NAME
from eegfm.metrics.classification import TEMPERATURE_RANGE, evaluate
from eegfm.model.modeling import EEGFMModel
from eegfm.training.config import FinetuneConfig
from eegfm.training.data import EEGLoader, RecordFilter, check_data, data_label
from eegfm.training.finetune.objective import inputs_for, targets_of
from eegfm.training.steps import loader_config

log = get_logger("eegfm.evaluation.robustness")  # the command's one logger name


def load_run(run_dir: Path) -> tuple[Any, dict[str, Any], Path]:
    """A fine-tuning run's config, run.json and model folder; ConfigError naming what is missing."""
    run_file, model_dir = run_dir / layout.RUN, run_dir / "model"
    if not run_file.is_file() or not (model_dir / "config.json").is_file():
        raise ConfigError(
            f"--run {run_dir}: expected a training.finetune run folder (run.json and model/ with "
            f"config.json); {'run.json' if not run_file.is_file() else 'model/config.json'} is missing"
        )
    try:
        run = json.loads(run_file.read_text())
        cfg = FinetuneConfig.from_dict(run["config"])
        _ = run["split"], run["split_group"], run["record_task"], run["prior"]
    except (ValueError, KeyError) as err:
        raise ConfigError(f"--run {run_dir}: run.json is not a fine-tuning run's ({err})") from None
    return cfg, run, model_dir


def held_out(run: Mapping[str, Any], split: str) -> tuple[str, tuple[str, ...]]:
    """The split to score (``auto``: test where the run had one, else validation) and its groups."""
    name = ("test" if run["split"].get("test") else "val") if split == "auto" else split
    groups = tuple(run["split"].get(name) or ())
    if not groups:
        raise ConfigError(
            f"--split {split}: the run has no {name} split (its split: "
            f"{', '.join(f'{k} {len(v)}' for k, v in run['split'].items())}); expected one of "
            f"{', '.join(k for k, v in run['split'].items() if v and k != 'train')}"
        )
    return name, groups


@torch.no_grad()
def score(model, loader, cfg, perturbations: Sequence[Perturbation], seed: int, device: torch.device):
    """Logits of every window clean and under each (perturbation, severity), and the targets:
    ``({"clean": logits, (name, severity): logits, ...}, targets)``; the data is read once."""
    model.eval()
    logits: dict[Any, list[torch.Tensor]] = {"clean": []}
    targets = []
    for b, batch in enumerate(loader):
        inputs = inputs_for(model, batch, device)
        logits["clean"].append(model(**inputs).logits.float().cpu())
        for p, perturbation in enumerate(perturbations):
            for s, severity in enumerate(perturbation.severities):
                generator = generator_of(seed, p, s, b)
                eeg, mask = perturbation.apply(inputs["eeg"], inputs["channel_mask"], severity, generator)
                out = model(**{**inputs, "eeg": eeg, "channel_mask": mask}).logits.float().cpu()
                logits.setdefault((perturbation.name, severity), []).append(out)
        targets.append(targets_of(batch, cfg, torch.device("cpu")))
    if not targets:
        raise ConfigError("the held-out split has no window in --data")
    return {k: torch.cat(v) for k, v in logits.items()}, torch.cat(targets)


def report_of(
    logits: Mapping[Any, torch.Tensor],
    target: torch.Tensor,
    cfg,
    head,
    prior: Sequence[float],
    temperature: float,
    perturbations: Sequence[Perturbation],
) -> dict[str, Any]:
    clean = evaluate(logits["clean"], target, cfg, head, prior, temperature)
    report: dict[str, Any] = {"metric": "kl" if "kl" in clean else "loss", "clean": clean, "perturbations": {}}
    key = report["metric"]
    for perturbation in perturbations:
        rows = []
        for severity in perturbation.severities:
            metrics = evaluate(logits[(perturbation.name, severity)], target, cfg, head, prior, temperature)
            ratio = metrics[key] / clean[key] if clean[key] > 0 else math.nan
            rows.append({"severity": severity, "vs_clean": ratio, **metrics})
        report["perturbations"][perturbation.name] = {"unit": perturbation.unit, "conditions": rows}
    return report


def plot(report: Mapping[str, Any], title: str, path: Path) -> None:
    """The metric against severity, a panel per perturbation, beside the clean model and the class
    prior; for classifiers a second row for ECE (under shift a model can keep its accuracy yet grow
    overconfident)."""
    # matplotlib: heavy, and in the train extra only; needed only where a plot is drawn
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    key = report["metric"]
    rows = [(key, f"{key} (lower is better)")]
    if "ece" in report["clean"]:
        rows.append(("ece", "ECE (lower is better)"))
    names = list(report["perturbations"])
    figure = Figure(figsize=(3.3 * len(names), 0.4 + 3.0 * len(rows)))
    grid = figure.subplots(len(rows), len(names), squeeze=False)
    for (metric, label), panels in zip(rows, grid):
        baseline = report["clean"].get(f"baseline_{metric}")
        for axes, name in zip(panels, names):
            part = report["perturbations"][name]
            xs = [row["severity"] for row in part["conditions"]]
            axes.plot(xs, [row[metric] for row in part["conditions"]], "o-", color="tab:red", label="perturbed")
            axes.axhline(report["clean"][metric], color="tab:blue", linestyle="--", label="clean")
            if baseline is not None:
                axes.axhline(baseline, color="0.5", linestyle=":", label="class prior" if key == "kl" else "baseline")
            if name == "noise":
                axes.invert_xaxis()  # worse to the right, as in the other panels
            if name == "gain":  # factors and their reciprocals equally far from 1
                axes.set_xscale("log")
                axes.xaxis.set_minor_locator(NullLocator())
                axes.set_xticks(xs, [f"{x:g}" for x in xs])
            axes.set_xlabel(part["unit"], fontsize=8)
            axes.set_title(name if metric == key else f"{name}: calibration", fontsize=9)
            axes.grid(alpha=0.3)
        panels[0].set_ylabel(label, fontsize=8)
    grid[0][0].legend(fontsize=7, loc="best")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, dpi=110, format="png")
    partial.replace(path)


def _held_out_loader(data, cfg, ran: Mapping[str, Any], groups: Sequence[str], model, batch_size: int):
    """A single pass over the run's held-out groups (sites or subjects, as the run split them),
    and which grouping that is."""
    by = "sites" if ran["split_group"] == "site" else "subjects"
    filters = RecordFilter(tasks=(ran["record_task"],), **{by: groups})
    section = dataclasses.replace(cfg.loader, batch_size=batch_size, token_budget=None, num_workers=0)
    config = loader_config(section, model.config.patch_size, filters=filters, train=False)
    return EEGLoader(data, config, rank=0, world_size=1, infinite=False), by


def _temperature(model, uncalibrated: bool) -> float:
    """1 with --uncalibrated, else the model's fitted temperature (warned about at its bound)."""
    temperature = 1.0 if uncalibrated else float(getattr(model.config, "temperature", 1.0) or 1.0)
    if temperature >= TEMPERATURE_RANGE[1] * 0.999:
        log.warning(
            "the model's temperature is %g, the bound of its fit: calibrated, it predicts about the same "
            "distribution for every window, so no perturbation can change much; --uncalibrated scores the "
            "logits as trained",
            temperature,
        )
    return temperature


def _log_worst(report: Mapping[str, Any]) -> None:
    """The clean metric and each perturbation's at its worst severity (and ECE for classifiers)."""
    key, clean = report["metric"], report["clean"]
    worst = {pname: part["conditions"][-1] for pname, part in report["perturbations"].items()}
    log.info(
        "clean %s %.4f (class prior %.4f); at the worst severity: %s",
        key,
        clean[key],
        clean.get(f"baseline_{key}", math.nan),
        "; ".join(
            f"{pname} {row['severity']:g}: {row[key]:.4f} ({row['vs_clean']:.2f}x)" for pname, row in worst.items()
        ),
    )
    if "ece" in clean:
        log.info(
            "calibration: clean ECE %.3f (class prior %.3f); at the worst severity: %s",
            clean["ece"],
            clean["baseline_ece"],
            "; ".join(f"{pname} {row['ece']:.3f}" for pname, row in worst.items()),
        )


def measure(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The command's run on its parsed ``args`` (``parser``: for usage errors): score, write
    robustness.json and robustness.png, log the worst conditions; the report."""
    try:
        cfg, ran, model_dir = load_run(args.run)
        name, groups = held_out(ran, args.split)
        data = check_data(args.data, True, args.allow_partial)
    except ConfigError as err:
        parser.error(str(err))
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    model = EEGFMModel.from_pretrained(model_dir).to(device)
    loader, by = _held_out_loader(data, cfg, ran, groups, model, args.batch_size)
    mains = functools.partial(add_mains, freq=args.mains_freq)
    perturbations = [dataclasses.replace(p, apply=mains) if p.name == "mains" else p for p in PERTURBATIONS]
    log.info(
        "scoring the %s split of %s (%d %s) clean and under %d perturbed conditions, from %s",
        name,
        args.run,
        len(groups),
        by,
        sum(len(p.severities) for p in perturbations),
        data_label(data),
    )
    try:
        logits, target = score(model, loader, cfg, perturbations, args.seed, device)
    except ConfigError as err:
        parser.error(f"--data {data_label(data)}: {err}")
    temperature = _temperature(model, args.uncalibrated)
    report = report_of(logits, target, cfg, model.head, ran["prior"], temperature, perturbations)
    report.update(
        run=str(args.run),
        split=name,
        seed=args.seed,
        mains_freq=args.mains_freq,
        task=cfg.task,
        temperature=temperature,
    )
    output = args.output or args.run / "robustness"
    output.mkdir(parents=True, exist_ok=True)
    partial = output / f".{REPORT_NAME}.partial"
    partial.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    partial.replace(output / REPORT_NAME)
    plot(
        report,
        f"robustness of {args.run.name} ({cfg.task}), {name} split, {report['clean']['n_windows']} windows",
        output / PLOT_NAME,
    )
    _log_worst(report)
    log.info("wrote %s and %s", output / REPORT_NAME, output / PLOT_NAME)
    return report
