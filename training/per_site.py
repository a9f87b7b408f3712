"""A fine-tuned model's held-out metric site by site, next to the baseline's, as a picture
(``sites.png``): a model fitted on several sites can beat the class prior overall and lose to it at
one site, which the overall number hides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

# (metric, its baseline, what it is): classification's KL, else a regression's squared error
_LOSSES = (("kl", "baseline_kl", "KL divergence (lower is better)"),
           ("loss", "baseline_loss", "mean squared error (lower is better)"))
_SCORES = ("balanced_accuracy", "auroc", "r2")


def _paired(axes, rows: np.ndarray, model: list[float], baseline: list[float] | None, baseline_label: str) -> None:
    """The model's bar above its baseline's, per site row."""
    axes.barh(rows - 0.2, model, height=0.4, color="tab:blue", label="model")
    if baseline is not None:
        axes.barh(rows + 0.2, baseline, height=0.4, color="0.7", label=baseline_label)


def draw_per_site(per_site: Mapping[str, Mapping[str, float]], title: str = ""):
    """A Figure: per site, the held-out loss against its baseline (the class prior's; a regression's
    training mean), beside it the ranking scores every site has (balanced accuracy, AUROC, R²) and,
    for classifiers, each site's expected calibration error against the class prior's: a model
    calibrated on its training hospitals can be overconfident at another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
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
    FigureCanvasAgg(figure)
    panels = list(figure.subplots(1, n_panels, squeeze=False)[0])
    losses = panels[0]
    prior_label = "class prior" if value == "kl" else "training mean"
    _paired(losses, rows, [m[value] for m in metrics], None if baseline is None else [m[baseline] for m in metrics],
            prior_label)
    if baseline is not None:
        for row, m in zip(rows, metrics):  # the model's share of the baseline's loss
            ratio = m[value] / m[baseline] if m[baseline] > 0 else float("nan")
            losses.annotate(f" {ratio:.2f}x", (m[value], row - 0.2), va="center", fontsize=7)
    losses.set_yticks(rows, [f"{site} ({int(m['n_windows'])} windows)" for site, m in zip(sites, metrics)],
                      fontsize=8)
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
