"""One recording's predictions over time as a picture: what a reviewer scrolls to first.

Top: the class probabilities of every window stacked (a regression head: its value), so a stretch
where one class takes over stands out. Bottom: each window's artifact score, so a confident
stretch that is really muscle or a loose electrode is seen as such. Windows the pipeline rejected
leave gaps. The classes take their colours from ``core.palette``, as everywhere else.

Each class's (and the artifact score's) bars are one collection of rectangles, one per window:
``Axes.bar`` makes an artist per rectangle, about 0.5 ms each to add and again to draw, so an
hour's 360 windows took 1.5 s to plot where a collection takes a tenth of that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eegfm.core.palette import class_colours
from eegfm.inference.predictor import RecordingPrediction


def window_bars(axes, starts: np.ndarray, widths: np.ndarray, heights: np.ndarray, bottoms, colour, label: str = ""):
    """A bar per window, from ``bottoms`` up by ``heights``, as one artist (see the module's docstring)."""
    from matplotlib.collections import PolyCollection

    left, right = starts, starts + widths
    low = np.broadcast_to(np.asarray(bottoms, dtype=float), heights.shape)
    high = low + heights
    corners = np.stack(
        [np.stack(corner, axis=-1) for corner in ((left, low), (left, high), (right, high), (right, low))], 1
    )
    bars = PolyCollection(corners, facecolors=colour, linewidths=0, label=label)
    axes.add_collection(bars)  # the axes' limits follow, as they follow bars
    return bars


def draw_timeline(prediction: RecordingPrediction, title: str):
    from matplotlib.figure import Figure  # matplotlib: only where a plot is drawn

    windows = prediction.windows
    starts = np.array([w.start_s for w in windows]) / 60.0
    widths = np.array([w.duration_s for w in windows]) / 60.0
    outputs = np.array([w.outputs for w in windows])
    figure = Figure(figsize=(11, 4.2))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if prediction.labels == ("value",):
        top.hlines(outputs[:, 0], starts, starts + widths, color="tab:blue")
        top.set_ylabel("predicted value")
    else:
        below = np.zeros(len(windows))
        colours = class_colours(prediction.labels)
        for k, label in enumerate(prediction.labels):
            # one bar per window, so windows that overlap (stride < window) or leave gaps read as such
            window_bars(top, starts, widths, outputs[:, k], below.copy(), colours[label], label)
            below += outputs[:, k]
        top.set_ylim(0, 1)
        top.set_ylabel("probability")
        top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    scores = np.array([w.artifact_score for w in windows])
    window_bars(bottom, starts, widths, scores, 0.0, "0.4")
    bottom.axhline(0.5, color="tab:red", linewidth=0.8, linestyle="--")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("artifact", fontsize=8)
    bottom.set_xlabel("time (min)")
    for axes in (top, bottom):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_timeline(prediction: RecordingPrediction, title: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_timeline(prediction, title).savefig(path, dpi=110)
    return path
