"""From windows to the answer a clinician reads: one recording's (or one person's) class
probabilities, aggregated over its windows, with an interval.

The rule is fixed, the same in the benchmark's recording- and subject-level metrics and in what
``eegfm-predict`` and the server answer per recording: the mean of the windows' class probabilities.
A mean of probabilities (rather than of log-probabilities or a vote of top classes) keeps a few
confident windows from deciding a long recording alone and is a proper probability itself.

The interval of a recording's mean is a moving-block bootstrap over its windows in time order:
neighbouring windows share a state (a seizure, drowsiness, an electrode pop) for tens of seconds,
so resampling windows one by one would make the interval far too narrow; blocks of
``ceil(n ** (1/3))`` consecutive windows keep that dependence (Künsch 1989; the cube-root rule is
the usual order for a mean). With fewer than :data:`MIN_WINDOWS` windows there is no interval.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CONFIDENCE = 0.95
RESAMPLES = 1000
MIN_WINDOWS = 2  # one window says nothing about how its neighbours vary


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """A recording's answer: ``probabilities`` [C], their ``low``/``high`` interval bounds [C]
    (None with fewer than :data:`MIN_WINDOWS` windows) and the number of windows read."""

    probabilities: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    n_windows: int


def aggregate_windows(probabilities: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> Aggregate:
    """The mean of ``probabilities`` [N, C] (one recording's windows, in time order) and its
    moving-block bootstrap interval (module docstring); ``seed`` makes it reproducible. The
    interval always holds the mean (a percentile bootstrap of a skewed recording need not) and
    stays in [0, 1], so a reader can rely on ``low <= probability <= high``."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or not len(probs) or not probs.shape[1]:
        raise ValueError(
            f"probabilities: expected [windows, classes] with one window and one class or more; got {probs.shape}"
        )
    if not ((probs >= 0) & (probs <= 1)).all():  # NaN fails both
        raise ValueError("probabilities: expected numbers from 0 to 1; got NaN or a number outside")
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples: expected an integer of 1 or more; got {resamples!r}")
    mean = probs.mean(axis=0)
    n = len(probs)
    if n < MIN_WINDOWS:
        return Aggregate(mean, None, None, n)
    means = _block_bootstrap_means(probs, resamples, seed)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return Aggregate(mean, np.clip(np.minimum(low, mean), 0, 1), np.clip(np.maximum(high, mean), 0, 1), n)


def _block_bootstrap_means(probs: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """[resamples, C] means of moving-block resamples of ``probs`` [N, C]: ceil(N / block) blocks
    of ``block`` consecutive windows drawn with replacement, cut to N windows. Summed from each
    start's block sum, a chunk of resamples at a time, rather than by gathering [resamples, N, C]
    windows (400 MB for a day of 10 s windows of a six-class model)."""
    n = len(probs)
    block = max(1, math.ceil(n ** (1 / 3)))
    blocks = math.ceil(n / block)
    starts = np.random.default_rng(seed).integers(0, n - block + 1, size=(resamples, blocks))
    last = n - (blocks - 1) * block  # windows kept of the last block
    sums = sliding_window_view(probs, block, axis=0)  # [N - block + 1, C, block]
    full, cut = sums.sum(axis=-1), sums[..., :last].sum(axis=-1)
    step = max(1, 2**22 // (blocks * probs.shape[1]))  # resamples gathered at a time: 32 MB of float64
    total = np.concatenate([full[starts[i : i + step, :-1]].sum(axis=1) for i in range(0, resamples, step)])
    return (total + cut[starts[:, -1]]) / n


def group_means(probabilities: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group of windows (a recording, a person): the sorted group names, the [G, C] mean of
    their windows' probabilities and the [G] window counts."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.bincount(index, minlength=len(names)).astype(np.float64)
    sums = np.zeros((len(names), probabilities.shape[1]))
    np.add.at(sums, index, np.asarray(probabilities, dtype=np.float64))
    return names, sums / counts[:, None], counts.astype(int)
