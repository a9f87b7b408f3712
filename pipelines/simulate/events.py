"""Rendering trains of discrete events (heartbeats, blinks, periodic discharges) at any time.

Events are planned once as absolute times; each chunk evaluates only the events whose kernels
overlap it, so the result does not depend on how a recording is cut into chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def event_train(
    t: np.ndarray,
    times: np.ndarray,
    kernel: Callable[[np.ndarray], np.ndarray],
    *,
    before_s: float,
    after_s: float,
    amplitudes: np.ndarray | None = None,
) -> np.ndarray:
    """Sum of ``amplitude_k * kernel(t - time_k)`` over events, for kernels supported on
    ``[-before_s, after_s]`` around each event time (``times`` must be sorted).

    Vectorized over samples: for every sample we find the range of events whose support covers
    it, then loop only over the (small) maximum number of overlapping events.
    """
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros_like(t)
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0 or len(t) == 0:
        return out
    first = np.searchsorted(times, t[0] - after_s, side="left")
    last = np.searchsorted(times, t[-1] + before_s, side="right")
    if last <= first:
        return out
    times = times[first:last]
    amps = None if amplitudes is None else np.asarray(amplitudes, dtype=np.float64)[first:last]
    lo = np.searchsorted(times, t - after_s, side="left")
    hi = np.searchsorted(times, t + before_s, side="right")
    for j in range(int((hi - lo).max())):
        idx = lo + j
        mask = idx < hi
        if not mask.any():
            continue
        k = idx[mask]
        values = kernel(t[mask] - times[k])
        out[mask] += values if amps is None else amps[k] * values
    return out
