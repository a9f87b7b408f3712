"""The report's sections read from what the evaluation stages wrote: leave-one-site-out
(loso.json), confusion matrices and calibration (each run's eval.json) and robustness
(robustness.json)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.contract import layout
from eegfm.evaluation.report.discover import Found, read_json
from eegfm.evaluation.report.document import Picture, Section, Table, fmt, missing, png_of
from eegfm.evaluation.robustness_run import plot as plot_robustness
from eegfm.metrics.calibration import ece_of_bins
from eegfm.metrics.plots import draw_per_site, plot_confusion, plot_reliability

LOSO_METRICS = ("kl", "baseline_kl", "accuracy", "balanced_accuracy", "auroc", "ece")


def loso_section(found: Found) -> Section:
    """Each held-out site's test metrics beside the class prior's, and the mean and worst site."""
    title = "Leave-one-site-out"
    if not found.loso:
        return missing("loso", title, "No loso.json (python -m eegfm.evaluation.loso) below the run folders.")
    section = Section("loso", title)
    for folder in found.loso:
        report = read_json(folder / "loso.json", "sites", "summary")
        tests = {site: fold["test"] for site, fold in report["sites"].items() if "test" in fold}
        vs = report["summary"].get("vs_baseline", {})
        section.numbers[folder.name] = {"sites": tests, "summary": report["summary"]}
        section.paragraphs.append(
            f"{folder.name}: each site in turn held out of fine-tuning and used as the test set. "
            f"KL against the class prior's: {fmt(vs.get('mean_ratio'), 2)}x on average, "
            f"{fmt(vs.get('worst_ratio'), 2)}x at the worst site ({vs.get('worst_site', '—')})."
        )
        metrics = [m for m in LOSO_METRICS if all(m in t for t in tests.values())]
        rows = [[site, fmt(t.get("n_windows"))] + [fmt(t[m]) for m in metrics] for site, t in tests.items()]
        section.tables.append(Table(["held-out site", "windows", *metrics], rows))
        if tests:
            figure = draw_per_site(tests, f"{folder.name}: each site unseen in training")
            section.pictures.append(
                Picture(f"loso_{len(section.pictures)}.png", png_of(figure), "unseen sites' test metrics")
            )
    return section


def _eval_reports(found: Found) -> list[tuple[str, dict[str, Any]]]:
    """(name, eval.json) of every fine-tuning run with one, the model first, then the folds."""
    reports = []
    for run in found.finetune_runs:
        path = run / layout.EVAL
        if path.is_file():
            reports.append(("/".join(run.parts[-2:]), read_json(path)))
    return reports


def confusion_section(found: Found) -> Section:
    """The fine-tuned model's held-out confusion matrix, and the leave-one-site-out folds' summed."""
    title = "Confusion matrices"
    reports = [(name, r) for name, r in _eval_reports(found) if "confusion" in r]
    if not reports:
        return missing(
            "confusion", title, "No eval.json with a confusion matrix (training.finetune) below the run folders."
        )
    section = Section("confusion", title)
    model = found.finetuned
    mine = [(n, r) for n, r in reports if model is not None and n == "/".join(model.parts[-2:])]
    folds = [(n, r) for n, r in reports if (n, r) not in mine]
    groups = [(name, r["confusion"]) for name, r in mine[:1]]
    if folds:
        classes = folds[0][1]["confusion"]["classes"]
        same = [r["confusion"] for _, r in folds if r["confusion"]["classes"] == classes]
        total = np.sum([np.asarray(c["matrix"]) for c in same], axis=0)
        groups.append(
            (
                f"{len(same)} runs' held-out splits summed",
                {"classes": classes, "matrix": total.tolist(), "split": "+".join(sorted({c["split"] for c in same}))},
            )
        )
    for k, (name, confusion) in enumerate(groups):
        matrix = np.asarray(confusion["matrix"], dtype=np.int64)
        section.numbers[name] = {
            "classes": confusion["classes"],
            "matrix": matrix.tolist(),
            "split": confusion["split"],
        }
        buffer = io.BytesIO()
        plot_confusion(matrix, confusion["classes"], f"{name} ({confusion['split']} windows)", buffer)
        section.pictures.append(Picture(f"confusion_{k}.png", buffer.getvalue(), f"confusion matrix: {name}"))
    return section


def calibration_section(found: Found) -> Section:
    """The model's reliability diagram before and after temperature scaling, with the ECE and Brier
    score beside the class prior's."""
    title = "Calibration"
    model = found.finetuned
    report = read_json(model / layout.EVAL) if model is not None else {}
    if "reliability" not in report:
        return missing(
            "calibration", title, "No eval.json with reliability bins from a fine-tuned model below the run folders."
        )
    section = Section("calibration", title)
    reliability = report["reliability"]
    split = reliability["split"]
    curves = [(f"uncalibrated: ECE {ece_of_bins(reliability['uncalibrated']):.3f}", reliability["uncalibrated"])]
    if "calibrated" in reliability:
        curves.append(
            (
                f"T = {reliability['temperature']:.2f}: ECE {ece_of_bins(reliability['calibrated']):.3f}",
                reliability["calibrated"],
            )
        )
    rows, numbers = [], {"split": split, "temperature": reliability.get("temperature", 1.0)}
    for key in (split, f"{split}_calibrated"):
        if key in report:
            m = report[key]
            numbers[key] = {k: m.get(k) for k in ("ece", "brier", "baseline_ece", "baseline_brier", "kl")}
            rows.append(
                [key, fmt(m.get("ece")), fmt(m.get("baseline_ece")), fmt(m.get("brier")), fmt(m.get("baseline_brier"))]
            )
    section.numbers = numbers
    section.tables.append(Table(["windows", "ECE", "class prior ECE", "Brier", "class prior Brier"], rows))
    if split == "val":
        section.paragraphs.append(
            "The validation windows also fitted the temperature: their calibrated numbers flatter."
        )
    buffer = io.BytesIO()
    plot_reliability(curves, f"reliability: {split} windows", buffer)
    section.pictures.append(Picture("calibration.png", buffer.getvalue(), "reliability diagram"))
    return section


def robustness_section(found: Found) -> Section:
    """The metric clean and at each perturbation's worst severity, and robustness.json's figure."""
    title = "Robustness"
    if not found.robustness:
        return missing(
            "robustness", title, "No robustness.json (python -m eegfm.evaluation.robustness) below the run folders."
        )
    section = Section("robustness", title)
    for k, path in enumerate(found.robustness):
        report = read_json(path, "metric", "clean", "perturbations")
        key, clean = report["metric"], report["clean"]
        worst = {name: part["conditions"][-1] for name, part in report["perturbations"].items() if part["conditions"]}
        name = "/".join(path.parts[-3:-1])
        section.numbers[name] = {
            "metric": key,
            "clean": clean.get(key),
            "baseline": clean.get(f"baseline_{key}"),
            "perturbations": {
                p: [{"severity": c["severity"], key: c[key], "vs_clean": c["vs_clean"]} for c in part["conditions"]]
                for p, part in report["perturbations"].items()
            },
        }
        section.paragraphs.append(
            f"{name}: {key} clean {fmt(clean.get(key))} (class prior {fmt(clean.get(f'baseline_{key}'))})."
        )
        rows = [
            [p, f"{c['severity']:g} ({report['perturbations'][p]['unit']})", fmt(c[key]), f"{c['vs_clean']:.2f}x"]
            for p, c in worst.items()
        ]
        section.tables.append(Table(["perturbation", "worst severity", key, "vs clean"], rows))
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / "robustness.png"
            plot_robustness(report, f"robustness: {name}", target)
            section.pictures.append(Picture(f"robustness_{k}.png", target.read_bytes(), f"robustness of {name}"))
    return section
