"""Real clean windows for the quality tests, and their shape."""

from __future__ import annotations

import numpy as np
import pytest

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.schema import SFREQ
from eegfm.core.dsp.resample import resample
from eegfm.pipelines.signal.filters import filter_data

N_TIMES = 1280  # 5 s windows
T3 = CANONICAL_CHANNELS.index("T3")


@pytest.fixture(scope="module")
def clean_windows(shared_data) -> np.ndarray:
    """5 s windows of eegmat Subject00_1 (resting EEG) through resample + filter, canonical order."""
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    x = raw.get_data(picks=[f"EEG {name}" for name in CANONICAL_CHANNELS]) * 1e6
    y, _ = filter_data(resample(x, raw.info["sfreq"], SFREQ), SFREQ)
    n = y.shape[1] // N_TIMES
    return y[:, : n * N_TIMES].reshape(19, n, N_TIMES).transpose(1, 0, 2).copy()


@pytest.fixture()
def window(clean_windows) -> np.ndarray:
    return clean_windows[3].astype(np.float64).copy()
