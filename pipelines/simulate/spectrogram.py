"""Kaggle-HMS-style spectrograms computed from the 200 Hz rendering.

Rows every 2 s (``time`` = 1, 3, 5, ... s, the row's centre) and 400 columns ``LL_/RL_/LP_/RP_<f>``:
four bipolar chains at ``k * 200 / 1024`` Hz, k = 3..102 (0.59 .. 19.92 Hz). Kaggle did not publish
its method; ours: a 1024-sample Hann window centred on ``time`` (clipped at the recording edges,
normalization adjusted), one-sided PSD in µV²/Hz of each bipolar pair, averaged over the chain's
pairs that the site records (NaN if none).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from eegfm.pipelines.channels import CANONICAL_CHANNELS

HMS_SFREQ = 200
NFFT = 1024
ROW_S = 2
FREQ_BINS = np.arange(3, 103)
CHAINS: dict[str, tuple[tuple[str, str], ...]] = {
    "LL": (("Fp1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1")),
    "RL": (("Fp2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2")),
    "LP": (("Fp1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1")),
    "RP": (("Fp2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2")),
}


def _freq_label(k: int) -> str:
    # k * 200 / 1024 is exact in binary, so Decimal rounds it exactly half-up like Kaggle did.
    text = str((Decimal(k) * HMS_SFREQ / NFFT).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return text.rstrip("0").rstrip(".")


def spectrogram_columns() -> list[str]:
    """``['time', 'LL_0.59', ..., 'RP_19.92']`` in Kaggle's order."""
    return ["time"] + [f"{chain}_{_freq_label(int(k))}" for chain in CHAINS for k in FREQ_BINS]


def n_rows(n_times: int) -> int:
    """Rows for a recording of ``n_times`` at 200 Hz: one per complete 2 s."""
    return n_times // (ROW_S * HMS_SFREQ)


def spectrogram_rows(frames: np.ndarray, taper: np.ndarray) -> np.ndarray:
    """(n_frames, 400) chain-averaged PSD. ``frames`` is (n_frames, 16 pairs, m) bipolar µV."""
    spectrum = np.fft.rfft(frames * taper, n=NFFT, axis=-1)[..., FREQ_BINS]
    psd = 2.0 * np.abs(spectrum) ** 2 / (HMS_SFREQ * np.sum(taper**2))
    psd = psd.reshape(len(frames), len(CHAINS), 4, len(FREQ_BINS))
    count = (~np.isnan(psd)).sum(axis=2)  # recorded pairs per chain; NaN for a chain without any
    chain = np.where(count > 0, np.nansum(psd, axis=2) / np.maximum(count, 1), np.nan)
    return chain.reshape(len(frames), -1)


class SpectrogramStream:
    """Spectrogram rows of 200 Hz canonical EEG (19, n) arriving in chunks, keeping a few seconds.

    ``feed`` and ``finish`` return the rows completed so far, (rows, 401) float64: ``time`` then
    the 400 chain spectra rounded to 0.01 like Kaggle's files.
    """

    def __init__(self, n_times: int) -> None:
        self.n_total = int(n_times)
        # Canonical indices of the 16 bipolar pairs' first and second electrodes, chain by chain.
        pairs = [[CANONICAL_CHANNELS.index(c) for c in pair] for chain in CHAINS.values() for pair in chain]
        self._first, self._second = np.array(pairs).T
        self._buffer = np.zeros((len(self._first), 0))
        self._buffer_start = 0
        self._next_row = 0
        self._window = np.hanning(NFFT)

    def feed(self, eeg: np.ndarray) -> np.ndarray:
        bipolar = eeg[self._first] - eeg[self._second]
        self._buffer = np.concatenate([self._buffer, bipolar], axis=1)
        return self._emit(final=False)

    def finish(self) -> np.ndarray:
        """The remaining rows (the last windows are clipped at the end of the recording)."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> np.ndarray:
        half = NFFT // 2
        available = self._buffer_start + self._buffer.shape[1]
        first_row = self._next_row
        rows: list[np.ndarray] = []
        interior: list[np.ndarray] = []  # frames with a full window, transformed together
        while self._next_row < n_rows(self.n_total):
            centre = (ROW_S * self._next_row + ROW_S // 2) * HMS_SFREQ
            lo, hi = centre - half, centre + half
            if hi > available and not final and available < self.n_total:
                break
            a, b = max(lo, 0), min(hi, self.n_total)
            data = self._buffer[:, a - self._buffer_start : b - self._buffer_start]
            if (a, b) == (lo, hi):
                interior.append(data)
            else:  # a recording edge: shorter window, normalized by what it covers
                rows.extend(self._transform(interior))
                interior = []
                rows.append(spectrogram_rows(data[None], self._window[a - lo : b - lo])[0])
            self._next_row += 1
        rows.extend(self._transform(interior))
        keep_from = max((ROW_S * self._next_row + ROW_S // 2) * HMS_SFREQ - half, 0)
        drop = max(0, keep_from - self._buffer_start)
        self._buffer = self._buffer[:, drop:]
        self._buffer_start += drop
        values = np.array(rows).reshape(-1, len(CHAINS) * len(FREQ_BINS))
        times = ROW_S * np.arange(first_row, self._next_row) + ROW_S // 2
        return np.column_stack([times.astype(np.float64), np.round(values, 2)])

    def _transform(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return list(spectrogram_rows(np.stack(frames), self._window)) if frames else []
