"""Argument checks shared by the signal stages (resampling, filtering, line detection)."""

from __future__ import annotations

import math

import numpy as np


def check_signal(data: np.ndarray, name: str = "data") -> np.ndarray:
    """``data`` as an array of real numbers shaped (n_chans, n_times); ValueError/TypeError otherwise."""
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"{name}: expected shape (n_chans, n_times); got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise TypeError(f"{name}: expected real numbers; got dtype {data.dtype}")
    return data


def check_n_chans(n_chans: int) -> int:
    if isinstance(n_chans, bool) or not isinstance(n_chans, (int, np.integer)) or n_chans < 1:
        raise ValueError(f"n_chans: expected an integer >= 1; got {n_chans!r}")
    return int(n_chans)


def check_chunk(chunk: np.ndarray, n_chans: int) -> np.ndarray:
    """One chunk of a stream of ``n_chans`` channels, checked like :func:`check_signal`."""
    chunk = check_signal(chunk, "chunk")
    if chunk.shape[0] != n_chans:
        raise ValueError(f"chunk: expected {n_chans} channels (n_chans); got {chunk.shape[0]}")
    return chunk


def check_sfreq(sfreq: float, name: str = "sfreq") -> float:
    """A finite sampling rate > 0 Hz as a float; TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a sampling rate in Hz; got {sfreq!r}")
    if not math.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"{name}: expected a finite rate > 0 Hz; got {float(sfreq)!r}")
    return float(sfreq)
