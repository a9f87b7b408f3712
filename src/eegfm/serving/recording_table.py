"""``recordings.csv``: ``eegfm-predict``'s answer per recording, the unit a clinician decides on.

One row per input recording, scored or quarantined, written as it finishes: its index and input
(the name the predictor gives it: under redaction its keyed token, never a path), status, the
windows read and, for a classifier, per class ``p_<label>`` (the mean of its windows'
probabilities) with ``p_<label>_low`` and ``p_<label>_high`` (the bounds of its 95 % moving-block
bootstrap interval, ``metrics.aggregation``; empty with one window), the most likely class
(``predicted``); a regression head's ``value`` is its windows' mean; ``flagged_episodes``, the
recording's flagged episodes as recordings.json has them, each as ``<class> <start>-<end> s
(<recommendation>)``, ``; `` between them. A quarantined recording's answer cells are empty and
its ``stage`` and ``reason`` say why. A text cell that a spreadsheet
would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a CR) starts with a
single quote (``core.text_safety.csv_text``); numbers are written as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from typing import Any, TextIO

from eegfm.core.text_safety import csv_text

FILE = "recordings.csv"
FIXED = ["index", "input", "status", "n_windows"]
EPISODES = "flagged_episodes"
WHY = ["stage", "reason"]


def class_columns(labels: Sequence[str]) -> list[str]:
    """``p_<label>`` per class, the label cut to letters, digits, ``.``, ``-`` and ``_`` (a model's
    class names are free text: a comma or a newline would make a header a spreadsheet misreads);
    where two labels would share a column (``a b`` and ``a_b``, or ``x`` and ``x_low``'s bounds),
    every column carries its class index too (``p_0_a_b``, ``p_1_a_b``)."""
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "class" for label in labels]
    names = [f"p_{s}" for s in safe]
    every = [f"{n}{end}" for n in names for end in ("", "_low", "_high")]
    if len(set(every)) < len(every):
        names = [f"p_{c}_{s}" for c, s in enumerate(safe)]  # "p_1_" and "p_10_" part at their 4th character
    return names


class RecordingTable:
    """recordings.csv written to ``fileobj`` a row at a time (the module docstring); ``labels``:
    the model's, a regression head's ``("value",)``."""

    def __init__(self, fileobj: TextIO, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.classifier = len(self.labels) > 1
        self.writer = csv.writer(fileobj)
        if self.classifier:
            answer = [f"{n}{end}" for n in class_columns(self.labels) for end in ("", "_low", "_high")]
            answer.append("predicted")
        else:
            answer = ["value"]
        self.width = len(answer)
        self.writer.writerow([*FIXED, *answer, EPISODES, *WHY])

    def write(self, summary: dict[str, Any]) -> None:
        """The row of one recording's ``RecordingPrediction.summary()``."""
        fixed = [summary["index"], csv_text(summary["input"]), csv_text(summary["status"]), summary["windows"]]
        why = [csv_text(summary[column]) for column in WHY]
        episodes = csv_text(episodes_text(summary.get(EPISODES, [])))
        self.writer.writerow([*fixed, *self._answer(summary), episodes, *why])

    def _answer(self, summary: dict[str, Any]) -> list[str]:
        """The answer's cells: empty for a recording without windows."""
        if not summary["windows"]:
            return [""] * self.width
        if not self.classifier:
            return [_number(summary["mean_outputs"][self.labels[0]])]
        answer = summary["recording"]
        cells = [
            _number(None if bounds is None else bounds[label])
            for label in self.labels
            for bounds in (answer["probabilities"], answer["low"], answer["high"])
        ]
        return [*cells, csv_text(answer["predicted"])]


def episodes_text(episodes: Sequence[dict[str, Any]]) -> str:
    """``Seizure 540-630 s (urgent review); LPD ...``: the episodes in one cell."""
    return "; ".join(f"{e['class']} {e['start_s']:g}-{e['end_s']:g} s ({e['recommendation']})" for e in episodes)


def answer_text(summary: dict[str, Any]) -> str:
    """A scored recording's answer in a few words: ``task 0.91 (0.85-0.95)``, the most likely class,
    its probability and interval (none with one window); a regression head's mean value."""
    answer = summary.get("recording")
    if answer is None:
        return summary.get("predicted") or f"{summary['mean_outputs']['value']:.4g}"
    label = answer["predicted"]
    said = f"{label} {answer['probabilities'][label]:.2f}"
    if answer["low"] is not None:
        said += f" ({answer['low'][label]:.2f}-{answer['high'][label]:.2f})"
    return said


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
