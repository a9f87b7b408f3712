"""Robustness: how a fine-tuned model's held-out metric degrades when the EEG gets worse in the
ways clinical recordings do.

    python -m eegfm.evaluation.robustness --run runs/ft --data OUT/tfrecords

A run's held-out windows (its test split, else validation) are scored clean and under each
perturbation at increasing severity: ``noise`` (white noise at an SNR in dB: a poor amplifier, high
impedance), ``gain`` (channels scaled: another calibration or unit), ``electrodes`` (measured
channels zeroed and marked missing, as the pipeline marks lost electrodes) and ``mains`` (a mains
sinusoid relative to the channel's RMS, which the pipeline's notch would have removed). Draws are
seeded by (seed, perturbation, severity, batch). ``OUTPUT/robustness.json`` holds every condition's
eval.json metrics and ratio to the clean metric; ``OUTPUT/robustness.png`` draws them (and ECE for
classifiers) against severity beside the clean model and the class prior.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from eegfm.contract import layout
from eegfm.contract.schema import SFREQ
from eegfm.core.config import ConfigError, user_file_path, user_path
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.threads import fair_threads
from eegfm.metrics.classification import TEMPERATURE_RANGE, evaluate
from eegfm.model.modeling import EEGFMModel
from eegfm.training.config import FinetuneConfig
from eegfm.training.data import EEGLoader, RecordFilter, check_data, data_label
from eegfm.training.finetune.objective import inputs_for, targets_of
from eegfm.training.steps import loader_config

log = get_logger(__name__)
REPORT_NAME, PLOT_NAME = "robustness.json", "robustness.png"
SPLIT_CHOICES = ("auto", "test", "val")


# ------------------------------------------------------------------------------ perturbations
# Each takes (eeg (B, C, T) µV, channel_mask (B, C), severity, generator) and returns new tensors.
def add_noise(eeg: torch.Tensor, mask: torch.Tensor, snr_db: float, generator: torch.Generator):
    """White noise whose power is ``snr_db`` below each window's channel's own."""
    rms = eeg.float().pow(2).mean(-1, keepdim=True).sqrt()
    noise = torch.randn(eeg.shape, generator=generator).to(eeg.device)
    return eeg + noise * rms * 10 ** (-snr_db / 20), mask


def scale_gain(eeg: torch.Tensor, mask: torch.Tensor, factor: float, generator: torch.Generator):
    return eeg * factor, mask


def drop_electrodes(eeg: torch.Tensor, mask: torch.Tensor, count: float, generator: torch.Generator):
    """``count`` random measured channels per window (or all measured ones) zeroed and marked missing."""
    measured = mask > 0.5
    scores = torch.rand(mask.shape, generator=generator).to(mask.device)
    scores = torch.where(measured, scores, torch.full_like(scores, -1.0))  # measured ones first
    k = min(int(count), mask.shape[1])
    chosen = torch.zeros_like(measured)
    chosen.scatter_(1, scores.topk(k, dim=1).indices, True)
    chosen &= measured
    return eeg.masked_fill(chosen[..., None], 0.0), mask.masked_fill(chosen, 0.0)


def add_mains(eeg: torch.Tensor, mask: torch.Tensor, ratio: float, generator: torch.Generator, freq: float = 50.0):
    """A ``freq`` Hz sinusoid of ``ratio`` times each channel's RMS (in amplitude), random phase."""
    rms = eeg.float().pow(2).mean(-1, keepdim=True).sqrt()
    phase = torch.rand(eeg.shape[:2] + (1,), generator=generator).to(eeg.device) * 2 * math.pi
    t = torch.arange(eeg.shape[-1], device=eeg.device) / SFREQ
    return eeg + ratio * rms * math.sqrt(2) * torch.sin(2 * math.pi * freq * t + phase), mask


@dataclasses.dataclass(frozen=True)
class Perturbation:
    name: str
    apply: Callable
    severities: tuple[float, ...]
    unit: str  # the x axis


PERTURBATIONS = (
    Perturbation("noise", add_noise, (20.0, 10.0, 5.0, 0.0), "signal-to-noise ratio (dB)"),
    Perturbation("gain", scale_gain, (0.5, 0.8, 1.25, 2.0), "gain factor"),
    Perturbation("electrodes", drop_electrodes, (1, 3, 6, 10), "channels lost per window (of 19)"),
    Perturbation("mains", add_mains, (0.25, 0.5, 1.0, 2.0), "mains amplitude / channel RMS"),
)


def _generator(seed: int, perturbation: int, severity: int, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1000 + perturbation) * 1000 + severity) * 1_000_003 + batch)


# ------------------------------------------------------------------------------ the run
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
                generator = _generator(seed, p, s, b)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-robustness",
        description="Score a fine-tuned model's held-out windows clean and under perturbations clinical EEG "
        "suffers (white noise by SNR, amplifier gain, lost electrodes, mains interference) at increasing "
        f"severity; writes {REPORT_NAME} and {PLOT_NAME}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--run",
        required=True,
        type=user_file_path,
        help="a training.finetune run folder (run.json, model/): its model, task, split and class prior",
    )
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        action="extend",
        type=user_path,
        metavar="DIR",
        help="the pipeline output(s) the run was fine-tuned on (its run.json names them)",
    )
    parser.add_argument(
        "--output", type=user_file_path, help="folder for the report and the picture (default: RUN/robustness)"
    )
    parser.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="auto",
        help="the run's held-out split to score; auto: test where the run had one, else "
        "validation (whose subjects chose the checkpoint: the clean number flatters, the "
        "degradation does not)",
    )
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="score the logits as trained, without the model's fitted temperature (which the "
        "clean numbers of eval.json use); where that temperature hit its upper bound the "
        "calibrated model predicts about the same for every window, and perturbations cannot "
        "show",
    )
    parser.add_argument(
        "--mains_freq", type=float, choices=[50.0, 60.0], default=50.0, help="frequency of the mains perturbation, Hz"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seeds every perturbation's random draws")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA where available")
    parser.add_argument(
        "--allow_partial",
        action="store_true",
        help="measure on the shards there are when some its manifest lists are missing or empty, with a warning "
        "naming them; without it such data is refused (exit 2)",
    )
    return parser


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


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("INFO")
    if args.batch_size < 1:
        parser.error(f"--batch_size: expected an integer >= 1; got {args.batch_size}")
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


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
