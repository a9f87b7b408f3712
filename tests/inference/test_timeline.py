"""The timeline PNG of a six-class model's predictions on a real recording: each class's bars in its
palette colour, as the server tells its page (``class_colours`` in the model's description)."""

from __future__ import annotations

from matplotlib.colors import to_rgba

from eegfm.core.palette import class_colours
from eegfm.core.tasks import HMS_CLASSES
from eegfm.inference.predictor import Predictor
from eegfm.inference.timeline import draw_timeline, plot_timeline


def test_each_class_is_drawn_in_its_palette_colour(hms6_run, shared_data, tmp_path):
    predictor = Predictor(hms6_run)
    [prediction] = predictor.predict([str(shared_data / "eegmat" / "Subject00_2.edf")])
    colours = class_colours(HMS_CLASSES)
    assert predictor.describe()["class_colours"] == colours
    figure = draw_timeline(prediction, "a recording")
    top = figure.axes[0]
    bars = {container.get_label(): container.patches for container in top.containers}
    assert list(bars) == list(HMS_CLASSES)
    for label, patches in bars.items():
        assert len(patches) == len(prediction.windows)
        assert {patch.get_facecolor() for patch in patches} == {to_rgba(colours[label])}
    assert to_rgba(colours["Seizure"]) == to_rgba("#d62728") and to_rgba(colours["Other"]) == to_rgba("#999999")
    path = plot_timeline(prediction, "a recording", tmp_path / "timeline.png")
    assert path.read_bytes().startswith(b"\x89PNG")
