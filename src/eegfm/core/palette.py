"""One colour per class, the same in every picture the project draws and in what the server tells
its page: the CLI's timelines, the explanation figures, the report, the page's bars.

The six HMS classes have fixed colours, so a reader learns them once: Seizure a strong red (the
one to act on), the periodic discharges warm (LPD amber, GPD reddish purple), the rhythmic delta
cool (LRDA dark blue, GRDA sky blue), Other a neutral grey (the background). They follow Okabe
and Ito's colour-blind-safe set where it has a colour, and differ in lightness where it has none
(red vs amber). Any other label (rest, task, ...) takes the next colour of ``CYCLE`` (Okabe-Ito
too, without those the HMS classes of the same set already use) in the order the labels come, so
a model's colours depend on its labels alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from eegfm.core.tasks import HMS_CLASSES

HMS_COLOURS: dict[str, str] = {
    "Seizure": "#d62728",
    "LPD": "#e69f00",
    "GPD": "#cc79a7",
    "LRDA": "#0072b2",
    "GRDA": "#56b4e9",
    "Other": "#999999",
}
assert tuple(HMS_COLOURS) == HMS_CLASSES  # one colour per class, in the classes' order

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour blindnesses
CYCLE: tuple[str, ...] = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")


def class_colours(labels: Sequence[str]) -> dict[str, str]:
    """label -> ``#rrggbb`` for a model's ``labels`` (the module docstring): the HMS classes their
    fixed colours, the others the cycle's in turn (it repeats past its eight)."""
    taken = {HMS_COLOURS[label] for label in labels if label in HMS_COLOURS}
    free = [c for c in CYCLE if c not in taken] or list(CYCLE)
    colours: dict[str, str] = {}
    for label in labels:
        if label in HMS_COLOURS:
            colours[label] = HMS_COLOURS[label]
        elif label not in colours:
            colours[label] = free[sum(1 for c in colours if c not in HMS_COLOURS) % len(free)]
    return colours
