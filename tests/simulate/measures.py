"""Numerical measures of EEG patterns shared by the simulator tests.

They are deliberately simple and clinical: band power per hemisphere for lateralization, the
autocorrelation of the all-channel amplitude envelope for periodicity, Welch peaks for dominant
frequency, global field power (the standard deviation across channels at each instant, unchanged
by any re-referencing) for amplitude growth, and baseline-relative envelope crossings for onset
timing.
"""

import numpy as np
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS

HEMISPHERE = {
    "left": [CANONICAL_CHANNELS.index(c) for c in ("F3", "C3", "P3", "F7", "T3", "T5", "O1")],
    "right": [CANONICAL_CHANNELS.index(c) for c in ("F4", "C4", "P4", "F8", "T4", "T6", "O2")],
}


def band_power(x: np.ndarray, sfreq: float, low: float, high: float) -> np.ndarray:
    """Power in [low, high] Hz per channel (NaN channels give NaN)."""
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=int(4 * sfreq), axis=-1)
    band = (freqs >= low) & (freqs <= high)
    return psd[..., band].sum(axis=-1)


def lateralization(x: np.ndarray, sfreq: float, low: float, high: float, side: str) -> float:
    """Mean band power over ``side``'s hemisphere divided by the other's (>1: toward ``side``)."""
    power = band_power(x, sfreq, low, high)
    other = "right" if side == "left" else "left"
    return float(np.nanmean(power[HEMISPHERE[side]]) / np.nanmean(power[HEMISPHERE[other]]))


def envelope_periodicity(x: np.ndarray, sfreq: float, period_s: float) -> tuple[float, float]:
    """Autocorrelation of the all-channel amplitude envelope at the period and half the period.

    The envelope is the root mean square over channels of the 2-20 Hz signal, smoothed over
    100 ms: every channel's discharges count whatever their sign or the reference.
    """
    band = signal.butter(3, [2.0, 20.0], btype="bandpass", fs=sfreq, output="sos")
    valid = ~np.isnan(x).any(axis=1)
    filtered = signal.sosfiltfilt(band, x[valid], axis=-1)
    amplitude = np.sqrt(np.mean(filtered**2, axis=0))
    envelope = np.convolve(amplitude, np.ones(int(0.1 * sfreq)) / int(0.1 * sfreq), mode="same")
    envelope -= envelope.mean()
    acf = signal.correlate(envelope, envelope, mode="full", method="fft")[len(envelope) - 1 :]
    acf /= acf[0]
    lag = int(round(period_s * sfreq))
    return float(acf[lag]), float(acf[lag // 2])


def dominant_frequency(v: np.ndarray, sfreq: float, low: float = 1.0, high: float = 15.0) -> float:
    freqs, psd = signal.welch(v, fs=sfreq, nperseg=int(2 * sfreq))
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(psd[band])])


def onset_times(x: np.ndarray, sfreq: float, baseline: slice, after: int) -> np.ndarray:
    """Per channel: seconds after sample ``after`` at which the 1.5-14 Hz envelope first exceeds
    twice its level during ``baseline`` (NaN if it never does)."""
    band = signal.butter(3, [1.5, 14.0], btype="bandpass", fs=sfreq, output="sos")
    filtered = signal.sosfiltfilt(band, np.nan_to_num(x), axis=-1)
    window = np.ones((1, int(sfreq))) / int(sfreq)
    envelope = np.sqrt(signal.convolve(filtered**2, window, mode="same"))
    level = np.median(envelope[:, baseline], axis=1)
    onsets = np.full(len(x), np.nan)
    for c in range(len(x)):
        crossing = np.flatnonzero(envelope[c, after:] > 2 * level[c])
        if len(crossing):
            onsets[c] = crossing[0] / sfreq
    return onsets


# Real files, used by path and never copied (see ../shared/data/README.md); one location for the
# whole suite, EEGFM_SHARED_DATA included.
from tests.conftest import SHARED_DATA  # noqa: E402

REAL_EEG = SHARED_DATA / "hms" / "train_eegs" / "1000913311.parquet"
REAL_SPECTROGRAM = SHARED_DATA / "hms" / "train_spectrograms" / "1000189855.parquet"


def gfp_rms(x: np.ndarray, sfreq: float, low: float = 1.5, high: float = 14.0) -> float:
    """RMS over time of the band-passed global field power (reference-independent amplitude)."""
    band = signal.butter(3, [low, high], btype="bandpass", fs=sfreq, output="sos")
    valid = ~np.isnan(x).any(axis=1)
    filtered = signal.sosfiltfilt(band, x[valid], axis=-1)
    return float(np.sqrt(np.mean(filtered.std(axis=0) ** 2)))
