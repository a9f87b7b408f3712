"""Kaggle-HMS-style spectrogram files computed from the 200 Hz rendering.

Rows every 2 s (``time`` = 1, 3, 5, ... s, the row's centre) and 400 columns ``LL_/RL_/LP_/RP_<f>``
of power in µV²/Hz rounded to 0.01 like Kaggle's files; the representation and its method are
:mod:`contract.spectrogram`'s (the pipeline reads these files and computes the same from windows).
"""

from __future__ import annotations

import numpy as np

from eegfm.contract.spectrogram import (  # noqa: F401 (re-exported for the simulator's writers and tests)
    CHAINS,
    FREQ_BINS,
    HMS_SFREQ,
    NFFT,
    PowerStream,
    spectrogram_columns,
)
from eegfm.contract.spectrogram import FRAME_STEP_S as ROW_S  # noqa: F401
from eegfm.contract.spectrogram import chain_power as spectrogram_rows  # noqa: F401
from eegfm.contract.spectrogram import n_frames as n_rows  # noqa: F401


class SpectrogramStream:
    """Spectrogram rows of 200 Hz canonical EEG (19, n) arriving in chunks, keeping a few seconds.

    ``feed`` and ``finish`` return the rows completed so far, (rows, 401) float64: ``time`` then
    the 400 chain spectra rounded to 0.01 like Kaggle's files.
    """

    def __init__(self, n_times: int) -> None:
        self._power = PowerStream(n_times)
        self.n_total = self._power.n_total

    def feed(self, eeg: np.ndarray) -> np.ndarray:
        return _rows(*self._power.feed(eeg))

    def finish(self) -> np.ndarray:
        """The remaining rows (the last windows are clipped at the end of the recording)."""
        return _rows(*self._power.finish())


def _rows(times: np.ndarray, power: np.ndarray) -> np.ndarray:
    return np.column_stack([times, np.round(power, 2)])
