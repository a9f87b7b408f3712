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
from collections import Counter
from collections.abc import Collection, Sequence
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


def flagged_episodes(windows: Sequence[Any], flagged: Collection[str]) -> list[dict[str, Any]]:
    """Runs of contiguous (or overlapping) windows, in time order, with the same ``flagged``
    recommendation: start and end (s), the most frequent predicted class, the recommendation,
    the number of windows."""
    episodes: list[dict[str, Any]] = []
    run: list[Any] = []

    def close() -> None:
        if run:
            classes = Counter(w.predicted_class for w in run).most_common(1)[0][0]
            end = max(w.start_s + w.duration_s for w in run)
            episodes.append(
                {
                    "start_s": round(run[0].start_s, 4),
                    "end_s": round(end, 4),
                    "class": classes,
                    "recommendation": run[0].clinical_recommendation,
                    "windows": len(run),
                }
            )
            run.clear()

    for w in windows:
        if w.clinical_recommendation not in flagged:
            close()
            continue
        if run and (
            w.clinical_recommendation != run[-1].clinical_recommendation
            or w.start_s > max(r.start_s + r.duration_s for r in run) + GAP_TOLERANCE_S
        ):
            close()
        run.append(w)
    close()
    return episodes
