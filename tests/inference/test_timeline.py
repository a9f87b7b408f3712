"""The timeline PNG of a six-class model's predictions on a real recording: each class's bars in its
palette colour, as the server tells its page (``class_colours`` in the model's description); and
the same picture, pixel for pixel, as the bars ``Axes.bar`` draws one artist at a time."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgba
from PIL import Image

from eegfm.core.palette import class_colours
from eegfm.core.tasks import HMS_CLASSES
from eegfm.inference.predictor import Predictor
from eegfm.inference.timeline import draw_timeline, plot_timeline, window_bars


def test_each_class_is_drawn_in_its_palette_colour(hms6_run, shared_data, tmp_path):
    predictor = Predictor(hms6_run)
    [prediction] = predictor.predict([str(shared_data / "eegmat" / "Subject00_2.edf")])
    colours = class_colours(HMS_CLASSES)
    assert predictor.describe()["class_colours"] == colours
    figure = draw_timeline(prediction, "a recording")
    top = figure.axes[0]
    bars = {collection.get_label(): collection for collection in top.collections}  # a collection per class
    assert list(bars) == list(HMS_CLASSES)
    for label, collection in bars.items():
        assert len(collection.get_paths()) == len(prediction.windows)  # a bar per window
        assert {tuple(colour) for colour in collection.get_facecolor()} == {to_rgba(colours[label])}
    assert to_rgba(colours["Seizure"]) == to_rgba("#d62728") and to_rgba(colours["Other"]) == to_rgba("#999999")
    path = plot_timeline(prediction, "a recording", tmp_path / "timeline.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_bars_are_those_axes_bar_draws_pixel_for_pixel(tmp_path):
    """One collection per class (``inference.timeline``) for the speed, not a different picture."""
    from matplotlib.figure import Figure

    starts, widths = np.array([0.0, 0.2, 0.5]), np.array([0.2, 0.2, 0.2])
    heights, bottoms = np.array([0.3, 0.6, 0.1]), np.array([0.1, 0.0, 0.4])
    pictures = []
    for draw in ("bar", "collection"):
        figure = Figure(figsize=(3, 2))
        axes = figure.subplots()
        if draw == "bar":
            axes.bar(starts, heights, widths, bottoms, align="edge", color="#d62728", linewidth=0)
        else:
            window_bars(axes, starts, widths, heights, bottoms, "#d62728")
        axes.set_ylim(0, 1)
        figure.savefig(tmp_path / f"{draw}.png", dpi=50)
        pictures.append(np.asarray(Image.open(tmp_path / f"{draw}.png")))
    assert np.array_equal(*pictures)
