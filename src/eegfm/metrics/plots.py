"""The pictures beside eval.json and loso.json: confusion.png (rows as shares of their class),
calibration.png (reliability diagram), and sites.png / loso.png (the held-out metric per site
against its baseline, which an overall number hides). matplotlib is imported where it draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eegfm.metrics.calibration import ece_of_bins

# (metric, its baseline, what it is): classification's KL, else a regression's squared error
_LOSSES = (
    ("kl", "baseline_kl", "KL divergence (lower is better)"),
    ("loss", "baseline_loss", "mean squared error (lower is better)"),
)
_SCORES = ("balanced_accuracy", "auroc", "r2")


def _paired(axes, rows: np.ndarray, model: list[float], baseline: list[float] | None, baseline_label: str) -> None:
    """The model's bar above its baseline's, per site row."""
    axes.barh(rows - 0.2, model, height=0.4, color="tab:blue", label="model")
    if baseline is not None:
        axes.barh(rows + 0.2, baseline, height=0.4, color="0.7", label=baseline_label)


def draw_per_site(per_site: Mapping[str, Mapping[str, float]], title: str = ""):
    """A Figure: per site, the held-out loss against its baseline (class prior or training mean),
    the ranking scores every site has and, for classifiers, ECE against the class prior's."""
    # matplotlib: heavy, and in the train extra only; needed only where a plot is drawn
    from matplotlib.figure import Figure

    sites = list(per_site)
    metrics = list(per_site.values())
    value, baseline, what = _LOSSES[0] if all("kl" in m for m in metrics) else _LOSSES[1]
    if not all(baseline in m for m in metrics):  # a regression target of several columns has none
        baseline = None
    scores = [k for k in _SCORES if all(k in m for m in metrics)]
    calibration = all("ece" in m and "baseline_ece" in m for m in metrics)
    rows = np.arange(len(sites))
    n_panels = 1 + bool(scores) + calibration
    figure = Figure(figsize=(1.5 + 4.75 * n_panels, 1.6 + 0.5 * len(sites)))
    panels = list(figure.subplots(1, n_panels, squeeze=False)[0])
    losses = panels[0]
    prior_label = "class prior" if value == "kl" else "training mean"
    baselines = None if baseline is None else [m[baseline] for m in metrics]
    _paired(losses, rows, [m[value] for m in metrics], baselines, prior_label)
    if baseline is not None:
        for row, m in zip(rows, metrics):  # the model's share of the baseline's loss
            ratio = m[value] / m[baseline] if m[baseline] > 0 else float("nan")
            losses.annotate(f" {ratio:.2f}x", (m[value], row - 0.2), va="center", fontsize=7)
    losses.set_yticks(rows, [f"{site} ({int(m['n_windows'])} windows)" for site, m in zip(sites, metrics)], fontsize=8)
    losses.set_title(what, fontsize=9)
    losses.legend(fontsize=7, loc="best")
    if scores:
        board = panels[1]
        width = 0.8 / len(scores)
        for k, key in enumerate(scores):
            board.barh(rows - 0.4 + width * (k + 0.5), [m[key] for m in metrics], height=width, label=key)
        board.set_yticks(rows, [])
        board.set_xlim(min(0.0, *(m[key] for m in metrics for key in scores)), 1.0)
        board.set_title("held-out scores (higher is better)", fontsize=9)
        board.legend(fontsize=7, loc="best")
    if calibration:
        ece = panels[-1]
        _paired(ece, rows, [m["ece"] for m in metrics], [m["baseline_ece"] for m in metrics], prior_label)
        ece.set_yticks(rows, [])
        ece.set_title("expected calibration error (lower is better)", fontsize=9)
        ece.legend(fontsize=7, loc="best")
    for axes in panels:
        axes.set_ylim(len(sites) - 0.5, -0.5)  # the first site at the top, in every panel
        axes.grid(axis="x", alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_per_site(per_site: Mapping[str, Mapping[str, float]], title: str, path: str | Path) -> None:
    draw_per_site(per_site, title).savefig(path, dpi=110)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], title: str, path: str | Path) -> None:
    """``matrix`` drawn with each row as shares of its class (the recall on the diagonal) and the
    counts written in; a PNG at ``path``."""
    # matplotlib: heavy, and in the train extra only; needed only where a plot is drawn
    from matplotlib.figure import Figure

    n = len(classes)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 1.2 + 0.9 * n
    figure = Figure(figsize=(size + 1.2, size))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the class's windows")
    for i, j in itertools.product(range(n), range(n)):
        colour = "white" if shares[i, j] > 0.6 else "black"
        axes.text(j, i, f"{matrix[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(n), classes, rotation=45, ha="right")
    axes.set_yticks(range(n), [f"{c} ({int(t)})" for c, t in zip(classes, totals[:, 0])])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class (windows)")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_reliability(curves: Sequence[tuple[str, dict[str, list]]], title: str, path: str | Path) -> None:
    """A reliability diagram PNG: each ``(name, reliability_bins(...))`` as observed against stated
    confidence (points sized by windows) over the diagonal; below, the windows per bin."""
    # matplotlib: heavy, and in the train extra only; needed only where a plot is drawn
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 6.4))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    colours = ("tab:red", "tab:blue", "tab:green", "tab:purple")
    for (name, bins), colour in zip(curves, colours):
        counts = np.asarray(bins["count"], dtype=np.float64)
        seen = counts > 0
        confidence, observed = np.asarray(bins["confidence"])[seen], np.asarray(bins["observed"])[seen]
        top.plot(confidence, observed, color=colour, linewidth=1.2, label=name)
        top.scatter(confidence, observed, s=12 + 240 * counts[seen] / counts.sum(), color=colour, alpha=0.7)
        edges = np.asarray(bins["edges"])
        bottom.stairs(counts, edges, color=colour, linewidth=1.2)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("target share of the predicted class\n(accuracy for one-hot labels)")
    top.set_title(title, fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("windows")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_reliability_of(report: Mapping[str, Any], task: str, path: str | Path) -> None:
    """calibration.png: eval.json's held-out reliability diagram before and after temperature scaling."""
    reliability = report["reliability"]
    uncalibrated = reliability["uncalibrated"]
    curves = [(f"uncalibrated (T = 1): ECE {ece_of_bins(uncalibrated):.3f}", uncalibrated)]
    if calibrated := reliability.get("calibrated"):
        name = f"calibrated (T = {reliability['temperature']:.2f}): ECE {ece_of_bins(calibrated):.3f}"
        curves.append((name, calibrated))
    # Validation windows also fitted T: their calibrated curve is optimistic.
    split = "test windows" if reliability["split"] == "test" else "validation windows (which fitted T)"
    plot_reliability(curves, f"{task}: {split}", path)
