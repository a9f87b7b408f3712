"""A row's metrics where a clinician decides: per recording and per person, with intervals over
people.

- ``recording``: each recording's class probabilities are the mean over its windows
  (``metrics.aggregation``, the rule ``eegfm-predict`` answers with), its target the mean of its
  windows' targets;
- ``subject``: the same over each person's windows of one class (one unit per person in a group
  study; one per person and condition where people were recorded in each, as eegmat's rest and
  arithmetic).

Balanced accuracy, AUROC and AUPRC of those units (``metrics.classification.ranking_scores``),
and a 95 % percentile interval from resampling *people* with replacement (all of a person's
units together: they are not independent of each other), :data:`RESAMPLES` draws, seeded; a
draw without a unit of every class is drawn again (one class has no AUROC, and its balanced
accuracy is a single recall: a constant prediction would score 1.0). With
several seeds, each draw scores the mean of the seeds' metrics on the same people, so the interval
is that of the reported mean. Fewer than two people: no interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np

from eegfm.evaluation.comparison.baselines import targets
from eegfm.evaluation.comparison.windows import WindowSet
from eegfm.metrics.aggregation import group_means
from eegfm.metrics.classification import ranking_scores

LEVELS = ("recording", "subject")
RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0


@dataclasses.dataclass(frozen=True)
class Units:
    """One split's windows grouped into units: ``of_window`` [N] each window's unit, ``top`` [U]
    each unit's target class, ``person`` [U] each unit's person (an index)."""

    of_window: np.ndarray
    top: np.ndarray
    person: np.ndarray

    @classmethod
    def of(cls, windows: WindowSet, level: str, n_classes: int) -> Units:
        if level not in LEVELS:
            raise ValueError(f"level: expected one of {', '.join(LEVELS)}; got {level!r}")
        window_top = targets(windows, n_classes).argmax(1)
        if level == "recording":
            keys = windows.recording.astype(str)
        else:
            keys = np.char.add(np.char.add(windows.subject.astype(str), "\x00"), window_top.astype(str))
        _, first, of_window = np.unique(keys, return_index=True, return_inverse=True)
        _, unit_target, _ = group_means(targets(windows, n_classes), of_window)
        _, person = np.unique(windows.subject.astype(str)[first], return_inverse=True)
        return cls(of_window, unit_target.argmax(1), person)

    def probabilities(self, window_probs: np.ndarray) -> np.ndarray:
        """[U, C]: each unit's mean of its windows' probabilities."""
        return group_means(window_probs, self.of_window)[1]


def people_draws(person: np.ndarray, top: np.ndarray, draws: int = RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """Up to ``draws`` seeded resamples of the people with replacement, each the rows of its people's
    items (``person`` [N]: each item's person index, ``top`` [N]: its class); a draw without an item
    of every class is drawn again, at most ``10 * draws`` tries (with few people of one class, some
    draws miss it)."""
    people = int(person.max()) + 1 if len(person) else 0
    members = [np.flatnonzero(person == p) for p in range(people)]
    classes = len(np.unique(top))
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(draws * 10 if people else 0):
        rows = np.concatenate([members[p] for p in rng.integers(0, people, size=people)])
        if len(np.unique(top[rows])) == classes:
            found += 1
            yield rows
        if found == draws:
            return


def _draw_metrics(unit_probs: Sequence[np.ndarray], top: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """The seeds' mean of each metric on the units ``rows`` (with repeats)."""
    found = [ranking_scores(probs[rows], top[rows]) for probs in unit_probs]
    return {m: float(np.mean([f[m] for f in found])) for m in found[0]}


def level_scores(window_probs: Sequence[np.ndarray], windows: WindowSet, level: str, n_classes: int):
    """``({metric: [value per seed]}, {metric: {"low", "high", "people"}})`` of ``level`` for the
    seeds' window probabilities ``window_probs`` (each [N, C], ``windows``' order)."""
    units = Units.of(windows, level, n_classes)
    unit_probs = [units.probabilities(p) for p in window_probs]
    per_seed = [ranking_scores(p, units.top) for p in unit_probs]
    values = {m: [s[m] for s in per_seed] for m in per_seed[0]}
    people = int(units.person.max()) + 1 if len(units.person) else 0
    intervals = {m: {"low": math.nan, "high": math.nan, "people": people} for m in values}
    if people < 2:
        return values, intervals
    draws = [_draw_metrics(unit_probs, units.top, rows) for rows in people_draws(units.person, units.top)]
    tail = (1.0 - CONFIDENCE) / 2 * 100
    for metric in values:
        found = np.array([d[metric] for d in draws])
        found = found[np.isfinite(found)]
        if len(found):
            low, high = np.percentile(found, [tail, 100 - tail])
            intervals[metric].update(low=float(low), high=float(high))
    return values, intervals
