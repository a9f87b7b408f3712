"""One colour per class: the HMS classes fixed (Seizure red, Other grey), any other label set from a
colour-blind-safe cycle, the same for the same labels."""

from __future__ import annotations

import re

from eegfm.core.palette import CYCLE, HMS_COLOURS, class_colours
from eegfm.core.tasks import HMS_CLASSES


def test_the_hms_classes_have_fixed_distinct_colours():
    colours = class_colours(HMS_CLASSES)
    assert colours == HMS_COLOURS and list(colours) == list(HMS_CLASSES)
    assert colours["Seizure"] == "#d62728" and colours["Other"] == "#999999"
    assert len(set(colours.values())) == len(HMS_CLASSES)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours.values())
    # a class keeps its colour in any subset or order of the classes
    assert class_colours(["Other", "Seizure"]) == {"Other": "#999999", "Seizure": "#d62728"}


def test_other_labels_take_the_cycle_in_turn_and_are_deterministic():
    assert class_colours(["rest", "task"]) == {"rest": CYCLE[0], "task": CYCLE[1]}
    assert class_colours(["rest", "task"]) == class_colours(("rest", "task"))
    # with an HMS class beside them, the cycle skips its colour
    mixed = class_colours(["negative", "LPD", "positive"])
    assert mixed["LPD"] == HMS_COLOURS["LPD"] and mixed["positive"] != HMS_COLOURS["LPD"]
    many = class_colours([f"c{k}" for k in range(10)])
    assert len(set(many.values())) == len(CYCLE) and many["c8"] == many["c0"]  # it repeats past eight
