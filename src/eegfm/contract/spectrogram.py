"""The Kaggle HMS spectrogram representation, shared by the pipeline, the simulator and the model.

Layout: 400 rows, four double-banana chains LL (Fp1-F7-T3-T5-O1), RL (Fp2-F8-T4-T6-O2), LP
(Fp1-F3-C3-P3-O1) and RP (Fp2-F4-C4-P4-O2), each at Kaggle's 100 frequencies ``k * 200 / 1024`` Hz,
k = 3..102 (0.59 .. 19.92 Hz), in the order ``LL_0.59 .. LL_19.92, RL_.., LP_.., RP_19.92``
(:func:`row_names`); one frame every 2 s, centred on ``1, 3, 5, ...`` s. Kaggle's files store the
power in µV²/Hz; the pipeline's records and the model take ``log1p`` of it (:func:`log_power`),
NaN where a chain was not recorded.

Kaggle did not publish its method; ours, applied to EEG at 200 Hz: per frame a 1024-sample Hann
window centred on the frame (clipped at the edges of the signal, normalized by the part it
covers), the one-sided PSD in µV²/Hz of each bipolar pair, averaged over the chain's pairs whose
both electrodes were recorded (NaN for a chain with none). :func:`window_spectrogram` gives the
same representation of a pipeline window (19 canonical channels at 256 Hz): resampled to 200 Hz by
``core.dsp.resample``, channels with ``channel_mask`` 0 (interpolated) count as not recorded, one
frame per whole 2 s of the window; a batch of windows gives each window's exactly, with every frame
of a few windows in one transform (:class:`PowerStream` computes the same frames one by one).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.contract.schema import N_SPECTROGRAM_ROWS, SFREQ
from eegfm.core.dsp.resample import plan_resample, resample

HMS_SFREQ = 200
NFFT = 1024
FRAME_STEP_S = 2
FREQ_BINS = np.arange(3, 103)
FREQUENCIES_HZ = FREQ_BINS * HMS_SFREQ / NFFT
CHAINS: dict[str, tuple[tuple[str, str], ...]] = {
    "LL": (("Fp1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1")),
    "RL": (("Fp2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2")),
    "LP": (("Fp1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1")),
    "RP": (("Fp2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2")),
}
assert N_SPECTROGRAM_ROWS == len(CHAINS) * len(FREQ_BINS)  # the contract's layout
# Canonical indices of the 16 bipolar pairs' first and second electrodes, chain by chain.
PAIRS = np.array([[CANONICAL_CHANNELS.index(c) for c in pair] for chain in CHAINS.values() for pair in chain])


def _freq_label(k: int) -> str:
    # k * 200 / 1024 is exact in binary, so Decimal rounds it exactly half-up like Kaggle did.
    text = str((Decimal(k) * HMS_SFREQ / NFFT).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return text.rstrip("0").rstrip(".")


def row_names() -> list[str]:
    """``['LL_0.59', ..., 'RP_19.92']``: the 400 rows in order, named like Kaggle's columns."""
    return [f"{chain}_{_freq_label(int(k))}" for chain in CHAINS for k in FREQ_BINS]


def spectrogram_columns() -> list[str]:
    """``['time', 'LL_0.59', ..., 'RP_19.92']``: a Kaggle spectrogram file's columns."""
    return ["time", *row_names()]


def n_frames(n_times: int) -> int:
    """Frames for ``n_times`` samples at 200 Hz: one per complete 2 s."""
    return n_times // (FRAME_STEP_S * HMS_SFREQ)


def chain_power(frames: np.ndarray, taper: np.ndarray) -> np.ndarray:
    """(n_frames, 400) chain-averaged PSD in µV²/Hz. ``frames`` is (n_frames, 16 pairs, m) bipolar
    µV at 200 Hz (NaN for a pair not recorded), ``taper`` the m-sample window."""
    psd = _pair_psd(frames * taper, np.sum(taper**2))
    return _chain_mean(psd, axis=1).reshape(len(frames), -1)


def _pair_psd(tapered: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """One-sided PSD in µV²/Hz at ``FREQ_BINS`` of tapered frames (..., m <= NFFT), zero-padded to
    NFFT; ``energy`` is the sum of the squared taper, broadcast against (..., bins)."""
    spectrum = np.fft.rfft(tapered, n=NFFT, axis=-1)[..., FREQ_BINS]
    return 2.0 * np.abs(spectrum) ** 2 / (HMS_SFREQ * energy)


def _chain_mean(psd: np.ndarray, axis: int) -> np.ndarray:
    """``psd`` with its 16-pair ``axis`` turned into the 4 chains: each the mean of its recorded
    (not NaN) pairs, NaN for a chain without any."""
    chains = psd.reshape(psd.shape[:axis] + (len(CHAINS), 4) + psd.shape[axis + 1 :])
    nan = np.isnan(chains)
    if not nan.any():  # every pair recorded (the usual case): the same sums, without NaN's passes
        return chains.sum(axis=axis + 1) / 4
    count = (~nan).sum(axis=axis + 1)
    return np.where(count > 0, np.nansum(chains, axis=axis + 1) / np.maximum(count, 1), np.nan)


def log_power(power: np.ndarray) -> np.ndarray:
    """``log1p`` of power in µV²/Hz as float32 (negative rounding noise clipped to 0; NaN stays NaN)."""
    power = np.asarray(power, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.log1p(np.where(np.isnan(power), np.nan, np.maximum(power, 0.0))).astype(np.float32)


class PowerStream:
    """Chain power of 200 Hz canonical EEG (19, n) arriving in chunks, keeping a few seconds.

    ``feed`` and ``finish`` return ``(times, power)`` of the frames completed so far: frame centres
    in seconds (float64) and (frames, 400) float64 µV²/Hz.
    """

    def __init__(self, n_times: int) -> None:
        self.n_total = int(n_times)
        self._first, self._second = PAIRS.T
        self._buffer = np.zeros((len(self._first), 0))
        self._buffer_start = 0
        self._next_row = 0
        self._window = np.hanning(NFFT)

    def feed(self, eeg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bipolar = eeg[self._first] - eeg[self._second]
        self._buffer = np.concatenate([self._buffer, bipolar], axis=1)
        return self._emit(final=False)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The remaining frames (the last windows are clipped at the end of the signal)."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> tuple[np.ndarray, np.ndarray]:
        half = NFFT // 2
        available = self._buffer_start + self._buffer.shape[1]
        first_row = self._next_row
        rows: list[np.ndarray] = []
        interior: list[np.ndarray] = []  # frames with a full window, transformed together
        while self._next_row < n_frames(self.n_total):
            centre = (FRAME_STEP_S * self._next_row + FRAME_STEP_S // 2) * HMS_SFREQ
            lo, hi = centre - half, centre + half
            if hi > available and not final and available < self.n_total:
                break
            a, b = max(lo, 0), min(hi, self.n_total)
            data = self._buffer[:, a - self._buffer_start : b - self._buffer_start]
            if (a, b) == (lo, hi):
                interior.append(data)
            else:  # an edge of the signal: shorter window, normalized by what it covers
                rows.extend(self._transform(interior))
                interior = []
                rows.append(chain_power(data[None], self._window[a - lo : b - lo])[0])
            self._next_row += 1
        rows.extend(self._transform(interior))
        keep_from = max((FRAME_STEP_S * self._next_row + FRAME_STEP_S // 2) * HMS_SFREQ - half, 0)
        drop = max(0, keep_from - self._buffer_start)
        self._buffer = self._buffer[:, drop:]
        self._buffer_start += drop
        power = np.array(rows).reshape(-1, N_SPECTROGRAM_ROWS)
        times = FRAME_STEP_S * np.arange(first_row, self._next_row) + FRAME_STEP_S // 2
        return times.astype(np.float64), power

    def _transform(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return list(chain_power(np.stack(frames), self._window)) if frames else []


# Windows taken through the resampling and transforms together: at most this many frame samples
# (float64, 2 MB). Groups of 6-13 ten-second windows were slower than one window at a time: their
# temporaries came as fresh pages and left the CPU cache between steps.
_MAX_FRAME_SAMPLES = 1 << 18


@lru_cache(maxsize=16)
def _frame_plan(n_times: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``n_times`` samples at 200 Hz, per frame: the samples it covers from its start (index
    (frames, NFFT), 0 past a clipped end), its taper there (0 past the end: the zero padding of a
    clipped frame) and the taper's energy (frames, 1), as :class:`PowerStream` computes them."""
    half, window = NFFT // 2, np.hanning(NFFT)
    frames = n_frames(n_times)
    index = np.zeros((frames, NFFT), dtype=np.intp)
    taper = np.zeros((frames, NFFT))
    energy = np.empty((frames, 1))
    for f in range(frames):
        lo = (FRAME_STEP_S * f + FRAME_STEP_S // 2) * HMS_SFREQ - half
        a, b = max(lo, 0), min(lo + NFFT, n_times)
        index[f, : b - a] = np.arange(a, b)
        taper[f, : b - a] = window[a - lo : b - lo]
        energy[f] = np.sum(window[a - lo : b - lo] ** 2)
    for arr in (index, taper, energy):
        arr.setflags(write=False)
    return index, taper, energy


def _group_spectrograms(eeg: np.ndarray, mask: np.ndarray, sfreq: float) -> np.ndarray:
    """(windows, 400, frames) float32 log1p µV²/Hz of (windows, 19, n) EEG at ``sfreq`` Hz with
    channel masks (windows, 19): one resampling and one transform of every frame of every window."""
    # Rows resample independently (each from its own first sample), so the windows resample as one.
    flat = resample(eeg.reshape(-1, eeg.shape[-1]), sfreq, HMS_SFREQ).astype(np.float64)
    at_200 = flat.reshape(len(eeg), len(CANONICAL_CHANNELS), flat.shape[-1])
    at_200[mask == 0] = np.nan
    first, second = PAIRS.T
    index, taper, energy = _frame_plan(at_200.shape[-1])
    frames = (at_200[:, first] - at_200[:, second])[..., index]  # (windows, 16 pairs, frames, NFFT)
    frames *= taper
    power = _chain_mean(_pair_psd(frames, energy), axis=1)  # (windows, 4 chains, frames, bins)
    return log_power(power.transpose(0, 1, 3, 2).reshape(len(eeg), N_SPECTROGRAM_ROWS, len(index)))


def window_spectrogram(eeg_uv: np.ndarray, channel_mask: np.ndarray, sfreq: float = SFREQ) -> np.ndarray:
    """float32 (400, n_frames) log1p µV²/Hz of one window: ``eeg_uv`` (19, n) canonical channels
    at ``sfreq`` Hz, ``channel_mask`` (19,) 1 measured, 0 interpolated (not recorded). Chains
    without a recorded pair are NaN; ``n_frames`` is the whole 2 s in the window (0 under 2 s).

    A batch of equally long windows, ``eeg_uv`` (windows, 19, n) with ``channel_mask`` (windows,
    19), gives (windows, 400, n_frames), each window's as it alone gives, in a few vectorised calls."""
    eeg = np.asarray(eeg_uv)
    mask = np.asarray(channel_mask)
    if eeg.ndim not in (2, 3) or eeg.shape[-2] != len(CANONICAL_CHANNELS):
        raise ValueError(
            f"eeg_uv: expected shape (19, n_times) in canonical order, or (windows, 19, n_times); got {list(eeg.shape)}"
        )
    if mask.shape != (*eeg.shape[:-2], len(CANONICAL_CHANNELS)):
        raise ValueError(
            f"channel_mask: expected 19 flags in canonical order per window; got shape {list(mask.shape)} "
            f"for eeg_uv of shape {list(eeg.shape)}"
        )
    windows, masks = eeg.reshape(-1, *eeg.shape[-2:]), mask.reshape(-1, len(CANONICAL_CHANNELS))
    frames = n_frames(plan_resample(float(sfreq), HMS_SFREQ).output_length(eeg.shape[-1]))
    group = max(1, _MAX_FRAME_SAMPLES // max(1, len(PAIRS) * frames * NFFT))
    if not len(windows) or not frames:
        spectrograms = np.zeros((len(windows), N_SPECTROGRAM_ROWS, frames), dtype=np.float32)
    else:
        parts = [
            _group_spectrograms(windows[g : g + group], masks[g : g + group], sfreq)
            for g in range(0, len(windows), group)
        ]
        spectrograms = np.concatenate(parts)
    return spectrograms if eeg.ndim == 3 else spectrograms[0]


def kaggle_window(times: np.ndarray, power: np.ndarray, offset_s: float, duration_s: float = 600.0) -> np.ndarray:
    """float32 (400, frames) log1p of a Kaggle spectrogram's frames with ``time`` in
    ``[offset_s, offset_s + duration_s)``: ``times`` (n,), ``power`` (n, 400) µV²/Hz (NaN stays NaN)."""
    keep = (times >= offset_s) & (times < offset_s + duration_s)
    return log_power(power[keep].T)
