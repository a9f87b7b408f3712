"""One window's explanation as a picture: the 19 traces under each class's attribution heatmap.

One panel per class (titled with its probability, in its ``core.palette`` colour; the predicted
class first), each showing the
window's channels stacked over the class's map (each channel-second's contribution to its logit:
red for, blue against), on that panel's own symmetric colour scale (a class with a small logit
change would otherwise look blank); then the encoder's channel pooling weights over the same
traces. The figure's title carries the checks' verdict, so a map that
failed them is not read without its warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.core.palette import class_colours
from eegfm.inference.explain.attribution import WindowExplanation

# Traces drawn at most this many points per channel: a 50 s window at 256 Hz is 12800 samples.
MAX_TRACE_POINTS = 1000


def _draw_panel(
    axis, eeg: np.ndarray, heat: np.ndarray, title: str, cmap: str, *, signed: bool, colour: str = "black"
) -> None:
    """Stacked traces of (C, T) ``eeg`` over the (C, n_bins) ``heat`` map (``signed``: a scale
    symmetric about 0, else from 0), titled in ``colour``."""
    n_chans, n_times = eeg.shape
    seconds = n_times / SFREQ
    n_bins = heat.shape[1]
    covered = n_bins * (n_times // n_bins) / SFREQ  # bins and patches leave out a trailing partial one
    image = axis.imshow(
        heat,
        aspect="auto",
        cmap=cmap,
        origin="upper",
        extent=(0, covered, n_chans - 0.5, -0.5),
        vmin=-(float(np.abs(heat).max()) or 1.0) if signed else 0.0,
        vmax=float(np.abs(heat).max()) or 1.0,
        interpolation="nearest",
    )
    step = max(1, n_times // MAX_TRACE_POINTS)
    time = np.arange(0, n_times, step) / SFREQ
    spread = np.percentile(np.abs(eeg), 99) or 1.0
    for c in range(n_chans):
        axis.plot(time, c - 0.45 * eeg[c, ::step] / spread, color="black", linewidth=0.3, alpha=0.7)
    axis.set_yticks(range(n_chans), list(CHANNELS) if n_chans == len(CHANNELS) else range(n_chans), fontsize=6)
    axis.set_xlim(0, seconds)
    axis.set_title(title, fontsize=9, color=colour)
    axis.tick_params(axis="x", labelsize=7)
    axis.figure.colorbar(image, ax=axis, shrink=0.8, pad=0.01).ax.tick_params(labelsize=6)


def draw_explanation(explanation: WindowExplanation, eeg: np.ndarray, title: str):
    """The figure (not saved) for ``explanation`` of the (C, T) microvolt window ``eeg``."""
    from matplotlib.figure import Figure  # matplotlib: only where a figure is drawn

    order = [explanation.predicted, *(c for c in range(len(explanation.labels)) if c != explanation.predicted)]
    n_panels = len(order) + 1
    n_cols = 2 if n_panels > 2 else 1
    n_rows = -(-n_panels // n_cols)
    figure = Figure(figsize=(7.5 * n_cols, 3.6 * n_rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(n_rows, n_cols, squeeze=False).ravel())
    colours = class_colours(explanation.labels)
    for axis, c in zip(axes, order, strict=False):
        mark = " (predicted)" if c == explanation.predicted else ""
        _draw_panel(
            axis,
            eeg,
            explanation.maps[c],
            f"{explanation.labels[c]}{mark}: p = {explanation.probabilities[c]:.3f}; integrated gradients",
            "RdBu_r",
            signed=True,
            colour=colours[explanation.labels[c]],
        )
    attention_axis = axes[len(order)]
    if "channel_pool" in explanation.attention:
        _draw_panel(
            attention_axis,
            eeg,
            explanation.attention["channel_pool"],
            "attention: channel pooling weights",
            "Greens",
            signed=False,
        )
    else:
        attention_axis.text(0.5, 0.5, "no encoder attention in this model", ha="center", va="center")
        attention_axis.set_axis_off()
    for axis in axes[n_panels:]:
        axis.set_axis_off()
    for axis in axes[-n_cols:]:
        axis.set_xlabel("seconds into the window", fontsize=8)
    verdict = "explanation reliable" if explanation.reliable else f"EXPLANATION UNRELIABLE: {explanation.why}"
    figure.suptitle(f"{title}\n{verdict}", fontsize=10, wrap=True)
    return figure


def plot_explanation(explanation: WindowExplanation, eeg: np.ndarray, title: str, path: Path) -> Path:
    """``draw_explanation``'s figure as a PNG at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_explanation(explanation, eeg, title).savefig(path, dpi=80)
    return path
