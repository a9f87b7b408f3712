"""A run's learning curves from its ``metrics.jsonl``, drawn as ``curves.png`` beside it: losses
(with the class-prior baseline), held-out scores and the learning rate. The line logged last at a
step wins, so a resumed run's curve is the trajectory its final weights came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eegfm.contract import layout
from eegfm.core.logs import get_logger
from eegfm.core.threads import fair_threads

log = get_logger(__name__)

CURVES_NAME = "curves.png"


@dataclasses.dataclass(frozen=True)
class Panel:
    """One plot: the ``keys`` of metrics.jsonl it draws (those a run logged; none: no panel)."""

    title: str
    keys: tuple[str, ...]
    log_y: bool = False


_PRETRAIN_LOSSES = ("loss", "reconstruction_loss", "contrastive_loss", "summary_loss")
PRETRAIN_PANELS = (
    Panel("pretraining loss", (*_PRETRAIN_LOSSES, *(f"val/{k}" for k in _PRETRAIN_LOSSES)), log_y=True),
    Panel("masked reconstruction MSE", ("recon/mse/all", "val/recon/mse/all")),
    Panel("learning rate", ("lr",), log_y=True),
)
FINETUNE_PANELS = (
    Panel("loss", ("train/loss", "val/loss", "val/baseline_kl", "val/baseline_loss")),
    Panel("held-out score", ("val/balanced_accuracy", "val/auroc", "val/accuracy", "val/r2")),
    Panel("learning rate", ("lr",), log_y=True),
)


def read_series(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every numeric key of a metrics.jsonl as (steps, values) in step order, the value logged last
    at a step winning; a line that is not JSON (cut short by a kill) is skipped with a warning."""
    by_key: dict[str, dict[int, float]] = {}
    bad = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                step = int(row["step"])
            except (ValueError, KeyError, TypeError):
                bad.append(number)
                continue
            for key, value in row.items():
                if key != "step" and type(value) in (int, float) and math.isfinite(value):  # JSON numbers, not bools
                    by_key.setdefault(key, {})[step] = float(value)
    if bad:
        log.warning(
            "%s: line(s) %s are not metrics lines (JSON with a step); left out of the curves",
            path,
            ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else ""),
        )
    return {
        key: (np.array(sorted(steps), dtype=np.int64), np.array([steps[s] for s in sorted(steps)]))
        for key, steps in by_key.items()
    }


def panels_for(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Panel, ...]:
    """Fine-tuning's panels where the run logged ``train/loss``, else pretraining's."""
    return FINETUNE_PANELS if "train/loss" in series else PRETRAIN_PANELS


def _style(key: str) -> dict:
    if "baseline" in key:  # the class prior's loss: what a model that learned nothing scores
        return {"color": "0.45", "linestyle": ":", "linewidth": 1.5}
    if key.startswith("val/"):
        return {"marker": "o", "markersize": 3.5, "linestyle": "--", "linewidth": 1.2}
    return {"linewidth": 1.2}


def draw(series: dict[str, tuple[np.ndarray, np.ndarray]], panels: Sequence[Panel], title: str = ""):
    """A matplotlib Figure with a panel for each of ``panels`` that has a key in ``series`` (shared
    step axis); None where none has."""
    # matplotlib: heavy, and in the train extra only; needed only where curves are drawn
    from matplotlib.figure import Figure

    panels = [p for p in panels if any(k in series for k in p.keys)]
    if not panels:
        return None
    figure = Figure(figsize=(8.6, 2.6 * len(panels) + 0.4))
    axes_list = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for axes, panel in zip(axes_list, panels):
        for key in panel.keys:
            if key in series:
                steps, values = series[key]
                label = f"{key} (class prior)" if "baseline" in key else key
                axes.plot(steps, values, label=label, **_style(key))
        if panel.log_y and all(series[k][1].min() > 0 for k in panel.keys if k in series):
            axes.set_yscale("log")
        axes.set_title(panel.title, fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, never over, the curves
    axes_list[-1].set_xlabel("optimizer step")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_curves(metrics: str | Path, path: str | Path, title: str = "", panels: Sequence[Panel] | None = None) -> bool:
    """Draw ``metrics`` (a metrics.jsonl) as a PNG at ``path``, one panel per group of keys the run
    logged (``panels_for`` the run by default); False (and no file) where it logged none of them."""
    series = read_series(metrics)
    figure = draw(series, panels_for(series) if panels is None else panels, title)
    if figure is None:
        return False
    figure.savefig(path, dpi=110, format="png")
    return True


def write_curves(output: Path, title: str) -> Path | None:
    """``output/curves.png`` from ``output/metrics.jsonl``; a problem drawing it is only a warning."""
    metrics, partial = output / layout.METRICS, output / f".{CURVES_NAME}.partial"
    try:
        if metrics.exists() and plot_curves(metrics, partial, title):
            os.replace(partial, output / CURVES_NAME)  # a run killed while drawing keeps the last whole one
            return output / CURVES_NAME
    except (OSError, ValueError) as err:
        log.warning("%s: learning curves not drawn (%s)", output / CURVES_NAME, err)
    return None


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = argparse.ArgumentParser(
        prog="eegfm-curves",
        description="Draw a pretraining or fine-tuning run's learning curves (RUN_DIR/metrics.jsonl) as "
        "RUN_DIR/curves.png: losses by step with validation and, for fine-tuning, the class-prior "
        "baseline; held-out scores; learning rate. Runs write it themselves when they finish; this "
        "draws it for a run in progress or an older one.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run folder(s) of training.pretrain or training.finetune (holding metrics.jsonl)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="where to write the PNG (one run only; default RUN_DIR/curves.png)"
    )
    args = parser.parse_args(argv)
    if args.output is not None and len(args.runs) > 1:
        parser.error(f"--output: expected one RUN_DIR; got {len(args.runs)}")
    status = 0
    for run in args.runs:
        metrics = run / layout.METRICS
        if not metrics.is_file():
            print(
                f"curves: {metrics}: no such file (expected the folder of a pretraining or fine-tuning run)",
                file=sys.stderr,
            )
            status = 2
            continue
        target = args.output or run / CURVES_NAME
        if plot_curves(metrics, target, run.name):
            print(target)
        else:
            print(f"curves: {metrics}: no loss, score or learning rate logged yet", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
