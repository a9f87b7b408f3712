"""Shared pieces of the benchmark scripts' tests: real eegmat recordings cut into windows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mne
import numpy as np
import pytest


def _eegmat_windows(path: Path, seconds: int = 5) -> np.ndarray:
    """(n, 19, seconds * 500) uV of an eegmat recording's EEG channels, as recorded (500 Hz)."""
    raw = mne.io.read_raw_edf(path, preload=True, verbose="ERROR")
    data = raw.get_data(picks=raw.ch_names[:19]) * 1e6
    width = seconds * int(raw.info["sfreq"])
    n = data.shape[1] // width
    return data[:, : n * width].reshape(19, n, width).transpose(1, 0, 2)


@pytest.fixture(scope="session")
def eegmat_recording(shared_data: Path) -> Callable[[str], np.ndarray]:
    """``recording("Subject00_1")``: that eegmat recording's 5 s windows (``_1`` rest, ``_2`` task)."""
    return lambda name: _eegmat_windows(shared_data / "eegmat" / f"{name}.edf")
