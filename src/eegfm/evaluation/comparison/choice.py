"""Choosing between a method's fine-tuning runs when validation holds a handful of people.

A method with alternatives (``rows.ALTERNATIVES``: eegfm's full fine-tuning against the linear
probe of the same pretrained encoder) gets one run per seed, chosen on validation. With 4-9
validation people, one person's windows can decide which of two runs scores higher, and full
fine-tuning, which can learn the training people rather than the classes, is the run such noise
favours as often as not (a clinical corpus: validation chose it on every seed; the probe was the
best row on test). So the rule is asymmetric:

- the alternatives are the simpler fits: the best of them by validation score is the default;
- the method's own run replaces it only where it scores higher in at least ``1 - QUANTILE`` of
  :data:`DRAWS` draws of the validation people with replacement (all of a person's windows
  together; both runs scored on the same draw: a paired comparison), that is where the lower end
  of the one-sided interval of the difference is above zero.

The score is the one ``runs.validation_score`` ranks runs by: the mean of balanced accuracy, AUROC
and AUPRC over the windows (``metrics.classification.ranking_scores``). A draw without a window of
every class is drawn again (AUROC needs both). Test never chooses; the record keeps the difference,
its interval and how many people it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from eegfm.evaluation.comparison import levels
from eegfm.evaluation.comparison.baselines import targets
from eegfm.evaluation.comparison.runs import CHOICE_METRICS
from eegfm.evaluation.comparison.windows import WindowSet
from eegfm.metrics.classification import ranking_scores

QUANTILE = 0.10
DRAWS = levels.RESAMPLES


def score(probs: np.ndarray, top: np.ndarray) -> float:
    """The mean of the finite :data:`runs.CHOICE_METRICS` of ``probs`` [N, C] against ``top`` [N]."""
    found = ranking_scores(probs, top)
    values = [found[m] for m in CHOICE_METRICS if m in found and np.isfinite(found[m])]
    return float(np.mean(values)) if values else -math.inf


def paired_differences(first: np.ndarray, second: np.ndarray, windows: WindowSet, n_classes: int) -> np.ndarray:
    """[D] the :func:`score` of ``first`` minus that of ``second`` (each [N, C], ``windows``' order)
    on the same seeded draws of ``windows``' people that the benchmark's intervals use
    (``levels.people_draws``: :data:`DRAWS`, fewer where few draws hold every class)."""
    top = targets(windows, n_classes).argmax(1)
    _, person = np.unique(windows.subject.astype(str), return_inverse=True)
    draws = levels.people_draws(person, top, DRAWS)
    found = [score(first[rows], top[rows]) - score(second[rows], top[rows]) for rows in draws]
    return np.asarray(found, dtype=np.float64)


def with_people(
    probabilities: Callable[[Mapping[str, Any]], np.ndarray], windows: WindowSet, n_classes: int
) -> Callable[[Mapping[str, Mapping[str, Any]]], dict[str, Any]]:
    """The chooser ``runs.run_methods`` takes: given ``{method: its report, alternative: its
    report, ...}`` (the method first) it returns the chosen report with ``chosen`` (its method)
    and ``choice`` (the record); ``probabilities(report)``: the run's validation probabilities
    [N, C] of ``windows`` (the validation split)."""
    top = targets(windows, n_classes).argmax(1)
    people = len(np.unique(windows.subject.astype(str)))

    def choose(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        own, *others = runs
        probs = {name: probabilities(runs[name]) for name in runs}
        scores = {name: score(probs[name], top) for name in runs}
        default = max(others, key=lambda n: scores[n])  # the first of equals: max keeps it
        draws = paired_differences(probs[own], probs[default], windows, n_classes)
        low, high = np.quantile(draws, [QUANTILE, 1 - QUANTILE]) if len(draws) else (math.nan, math.nan)
        name = own if len(draws) and low > 0 else default
        record = {
            "run": name,
            "own": own,
            "against": default,
            "difference": round(scores[own] - scores[default], 4),
            "interval_80": [round(float(low), 4), round(float(high), 4)],
            "own_higher_in": round(float(np.mean(draws > 0)), 3) if len(draws) else None,
            "people": people,
        }
        return {**runs[name], "chosen": name, "choice": record}

    return choose
