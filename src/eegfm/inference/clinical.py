"""The clinical reading of scored windows: each window's class, probabilities, confidence,
uncertainty and recommendation; each recording's answer (its class probabilities over its windows,
with an interval), minutes per class and flagged episodes.

A window's ``class_probabilities`` and ``confidence`` are the model's (calibrated) output with
dropout off, as evaluated when fine-tuned. Its ``uncertainty`` comes from the S samples of the
head's fixed MC-dropout masks (or an ensemble's members), with the same temperature:
``entropy`` is the predictive entropy of their mean (nats), ``mutual_information`` the part of it
the samples disagree on (``metrics.uncertainty``), ``passes`` = S. Without samples (``mc_passes``
0), ``entropy`` is that of ``class_probabilities`` and ``mutual_information`` is null.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from eegfm.inference.recommendation import RecommendationRules, WindowEvidence
from eegfm.metrics.aggregation import CONFIDENCE, aggregate_windows
from eegfm.metrics.uncertainty import entropy, uncertainty_of

GAP_TOLERANCE_S = 1e-3  # windows closer than this count as contiguous (float starts)


@dataclasses.dataclass
class ClinicalReading:
    """One window's fields of the module docstring."""

    predicted_class: str | None
    class_probabilities: dict[str, float]
    confidence: float | None
    uncertainty: dict[str, Any]  # entropy, mutual_information, passes
    clinical_recommendation: str
    recommendation_rule: str  # the rule that gave it, or "default"


def read_windows(
    outputs: np.ndarray,
    sample_outputs: np.ndarray | None,
    artifact_scores: Sequence[float],
    labels: Sequence[str],
    rules: RecommendationRules,
    *,
    regression: bool = False,
) -> list[ClinicalReading]:
    """The readings of B windows: ``outputs`` (B, C) probabilities (a regression head: (B, 1)
    values), ``sample_outputs`` (B, S, C) sampled probabilities or None."""
    n = len(outputs)
    if regression:
        entropies, mutual = [None] * n, [None] * n
    elif sample_outputs is not None and sample_outputs.shape[1] > 0:
        measured = uncertainty_of(sample_outputs)
        entropies, mutual = measured.predictive_entropy.tolist(), measured.mutual_information.tolist()
    else:
        entropies, mutual = entropy(outputs).tolist(), [None] * n
    passes = 0 if regression or sample_outputs is None else int(sample_outputs.shape[1])
    readings = []
    for row, h, mi, artifact in zip(outputs, entropies, mutual, artifact_scores, strict=True):
        probabilities = {} if regression else {label: float(p) for label, p in zip(labels, row, strict=True)}
        evidence = WindowEvidence(probabilities, h, mi, float(artifact))
        recommendation, rule = rules.recommend(evidence)
        readings.append(
            ClinicalReading(
                predicted_class=evidence.predicted,
                class_probabilities=probabilities,
                confidence=evidence.confidence,
                uncertainty={"entropy": h, "mutual_information": mi, "passes": passes},
                clinical_recommendation=recommendation,
                recommendation_rule=rule,
            )
        )
    return readings


def _owned_seconds(starts: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Seconds each window stands for: until the next window starts (overlapping windows would
    count twice otherwise), at most its own length."""
    following = np.append(starts[1:], np.inf)
    return np.clip(following - starts, 0.0, durations)


def recording_answer(windows: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
    """A classifier's answer for the whole recording, from its windows (in time order): label ->
    the mean of their probabilities (``probabilities``), the bounds of its ``level`` interval
    (``low``, ``high``: a moving-block bootstrap over the windows, ``metrics.aggregation``; null
    with one window), ``n_windows`` and the most likely class (``predicted``)."""
    answer = aggregate_windows(np.array([w.outputs for w in windows], dtype=np.float64))

    def by_label(values: np.ndarray | None) -> dict[str, float] | None:
        return None if values is None else {label: float(v) for label, v in zip(labels, values, strict=True)}

    return {
        "probabilities": by_label(answer.probabilities),
        "low": by_label(answer.low),
        "high": by_label(answer.high),
        "level": CONFIDENCE,
        "n_windows": answer.n_windows,
        "predicted": labels[int(np.argmax(answer.probabilities))],
    }


def minutes_by_class(windows: Sequence[Any], labels: Sequence[str]) -> dict[str, float]:
    """Minutes of the recording per predicted class (every label, 0 where none); {} for regression."""
    if not windows or windows[0].predicted_class is None:
        return {}
    starts = np.array([w.start_s for w in windows])
    seconds = _owned_seconds(starts, np.array([w.duration_s for w in windows]))
    minutes = dict.fromkeys(labels, 0.0)
    for w, s in zip(windows, seconds, strict=True):
        minutes[w.predicted_class] += s / 60.0
    return {label: round(m, 4) for label, m in minutes.items()}


def _stride(starts: Sequence[float], durations: Sequence[float]) -> float:
    """The windows' step: the smallest gap between consecutive starts (a rejected window only
    widens a gap), or the window length with a single window."""
    steps = np.diff(np.asarray(starts, dtype=np.float64))
    steps = steps[steps > GAP_TOLERANCE_S]
    return float(steps.min()) if len(steps) else float(max(durations, default=0.0))


def _class_runs(windows: Sequence[Any], stride: float) -> list[list[int]]:
    """Indices of the windows in runs of one predicted class: the next window of the class joins
    the run when at most one window's stride lies between their starts' slots, so one window of
    another class, or one rejected window, does not split it."""
    runs: list[list[int]] = []
    last_of: dict[Any, list[int]] = {}
    for i, w in enumerate(windows):
        run = last_of.get(w.predicted_class)
        if run is not None and w.start_s - windows[run[-1]].start_s <= 2 * stride + GAP_TOLERANCE_S:
            run.append(i)
        else:
            run = [i]
            runs.append(run)
            last_of[w.predicted_class] = run
    return runs


def _episode(windows: Sequence[Any], members: list[int], severity: Sequence[str]) -> dict[str, Any]:
    """The fields of one episode: ``members`` are the flagged stretch of one class's run."""
    first, last = members[0], members[-1]
    span = windows[first : last + 1]  # the windows of the class and the ones it bridged
    cls = windows[first].predicted_class
    given = {w.clinical_recommendation for w in span}
    peak = max(members, key=lambda i: windows[i].class_probabilities.get(cls, -1.0))
    peak_probability = windows[peak].class_probabilities.get(cls)
    end = max(windows[i].start_s + windows[i].duration_s for i in members)
    return {
        "start_s": round(windows[first].start_s, 4),
        "end_s": round(end, 4),
        "duration_s": round(end - windows[first].start_s, 4),
        "class": cls,
        "recommendation": next(r for r in severity if r in given),
        "windows": len(span),
        "peak_probability": None if peak_probability is None else round(float(peak_probability), 6),
        "peak_window": peak,
    }


def flagged_episodes(windows: Sequence[Any], flagged: Sequence[str]) -> list[dict[str, Any]]:
    """The flagged episodes of ``windows`` (in time order, as ``window_predictions``), in time order.

    A run is the windows predicted as one class whose starts lie at most two strides apart (one
    window of another class, or one rejected window, between them does not split it). Its episode
    is the stretch from its first window with a ``flagged`` recommendation to its last, so one
    seizure is one episode however its windows' recommendations vary, and the unflagged windows
    at its edges do not stretch it. A one-window episode inside another class's episode is that
    episode's (a single window of another flagged class does not split a seizure). Two classes
    that alternate window by window give two overlapping episodes.

    Fields: ``start_s``, ``end_s``, ``duration_s``; ``class``; ``recommendation``, the most severe
    of its windows' (``flagged`` is in order of severity, most severe first); ``windows``, those
    from its first to its last (bridged ones included); ``peak_probability``, the class's highest
    probability in it and ``peak_window``, that window's index in ``windows``.
    """
    if not windows:
        return []
    stride = _stride([w.start_s for w in windows], [w.duration_s for w in windows])
    stretches = []
    for run in _class_runs(windows, stride):
        marked = [i for i in run if windows[i].clinical_recommendation in flagged]
        if marked:
            stretches.append(run[run.index(marked[0]) : run.index(marked[-1]) + 1])
    # a one-window stretch strictly inside another class's is that episode's
    kept = sorted((s for s in stretches if len(s) > 1 or not any(o[0] < s[0] < o[-1] for o in stretches)), key=min)
    return [_episode(windows, s, tuple(flagged)) for s in kept]
