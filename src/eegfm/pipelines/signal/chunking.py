"""How much of a recording is held in memory at once, whatever its sampling rate and channel count.

A recording is read in chunks of at most :data:`MAX_CHUNK_VALUES` values (samples times the
channels read): 16 MB per float32 copy, so a chunk's working set (the read, its harmonized rows,
the resampler's input) stays near 100 MB, whether that is 300 s of 19 channels at 256 Hz or
2.1 s at 100 kHz. The steps that look at a stretch as a whole (the mains detection, the ICA fit)
take it at the input rate only where it fits one chunk; else it is streamed through the resampler
to 256 Hz a chunk at a time (120 s at 100 kHz would be 900 MB of float32 rows, at 256 Hz 2 MB).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.resample import Resampler

MAX_CHUNK_VALUES = 2**22


def max_chunk(n_chans: int) -> int:
    """The most input samples of ``n_chans`` channels read at once."""
    return max(1, MAX_CHUNK_VALUES // max(1, n_chans))


def chunk_samples(seconds: float, sfreq: float, n_chans: int) -> int:
    """Input samples per chunk: ``seconds`` of the recording, at most :data:`MAX_CHUNK_VALUES` values."""
    return max(1, min(int(seconds * sfreq), max_chunk(n_chans)))


def leading_stretch(
    harmonized: Callable[[int, int], tuple[np.ndarray, np.ndarray]], sfreq: float, n_rows: int, n_chans: int, stop: int
) -> tuple[np.ndarray, float]:
    """``(rows, rate)``: the harmonized rows of input samples [0, ``stop``) at the input rate where
    they fit one chunk of the ``n_chans`` channels read, else resampled to 256 Hz chunk by chunk."""
    chunk = max_chunk(n_chans)
    if stop <= chunk:
        return harmonized(0, stop)[0], sfreq
    resampler = Resampler(sfreq, n_rows, SFREQ)
    parts = []
    for start in range(0, stop, chunk):
        rows = harmonized(start, min(stop, start + chunk))[0]
        parts.append(resampler.finish(rows) if start + chunk >= stop else resampler.push(rows))
    return np.concatenate(parts, axis=1), SFREQ


def peak_to_peak(read: Callable[[int, int], np.ndarray], rows: list[int], start: int, stop: int, n_chans: int):
    """Each of ``rows``' peak-to-peak over input samples [start, stop) (non-finite ones read as 0),
    read a chunk at a time."""
    chunk = max_chunk(n_chans)
    low = np.full(len(rows), np.inf)
    high = np.full(len(rows), -np.inf)
    for first in range(start, stop, chunk):
        piece = np.nan_to_num(read(first, min(stop, first + chunk))[rows])
        low, high = np.minimum(low, piece.min(axis=1)), np.maximum(high, piece.max(axis=1))
    return high - low
