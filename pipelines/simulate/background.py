"""Ongoing background EEG: spatially correlated 1/f activity, posterior alpha, sleep-like slowing.

Everything is produced by IIR filters driven by white noise whose state is carried from chunk to
chunk, so a recording rendered in 10 s chunks is identical to one rendered in 60 s chunks. The
channel weights of every simulated source (background and artifacts) live in :data:`TOPOGRAPHIES`.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import signal

from eegfm.pipelines.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.pipelines.simulate.patterns import taper

N_CHANS = len(CANONICAL_CHANNELS)
# Relative amplitude per channel of: the posterior dominant rhythm; NREM-like delta (frontocentral);
# eye blinks; muscle (temporal); photic driving (occipital); ECG reaching the scalp (mostly near
# the left ear/mastoid, as the heart's axis points left).
_TOPOGRAPHY_KINDS = ("alpha", "sleep_delta", "blink", "muscle", "photic", "ecg")
_TOPOGRAPHY_TABLE = {
    "Fp1": (0.05, 0.8, 1.0, 0.4, 0.0, 0.001),
    "F3": (0.12, 1.0, 0.45, 0.25, 0.0, 0.001),
    "C3": (0.3, 0.9, 0.12, 0.15, 0.0, 0.002),
    "P3": (0.7, 0.6, 0.04, 0.1, 0.4, 0.001),
    "F7": (0.1, 0.7, 0.5, 0.9, 0.0, 0.002),
    "T3": (0.25, 0.5, 0.1, 1.0, 0.0, 0.004),
    "T5": (0.6, 0.45, 0.03, 0.6, 0.4, 0.004),
    "O1": (1.0, 0.4, 0.02, 0.3, 1.0, 0.002),
    "Fz": (0.12, 1.0, 0.5, 0.15, 0.0, 0.001),
    "Cz": (0.3, 0.95, 0.15, 0.1, 0.0, 0.001),
    "Pz": (0.65, 0.65, 0.05, 0.08, 0.4, 0.001),
    "Fp2": (0.05, 0.8, 1.0, 0.4, 0.0, 0.001),
    "F4": (0.12, 1.0, 0.45, 0.25, 0.0, 0.001),
    "C4": (0.3, 0.9, 0.12, 0.15, 0.0, 0.001),
    "P4": (0.7, 0.6, 0.04, 0.1, 0.4, 0.001),
    "F8": (0.1, 0.7, 0.5, 0.9, 0.0, 0.001),
    "T4": (0.25, 0.5, 0.1, 1.0, 0.0, 0.001),
    "T6": (0.6, 0.45, 0.03, 0.6, 0.4, 0.001),
    "O2": (1.0, 0.4, 0.02, 0.3, 1.0, 0.001),
}
# (19,) weight vectors in canonical order.
TOPOGRAPHIES: dict[str, np.ndarray] = {
    kind: np.array([_TOPOGRAPHY_TABLE[c][i] for c in CANONICAL_CHANNELS]) for i, kind in enumerate(_TOPOGRAPHY_KINDS)
}
# Noise columns consumed per sample: 19 broadband sources, 2 alpha, 2 delta (left/right).
N_NOISE = N_CHANS + 4


def hemisphere_split(weights: np.ndarray) -> np.ndarray:
    """Split a topography into (2, 19): left source feeds left + half midline, right likewise."""
    left = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS], dtype=float)
    right = np.array([c[-1] in "2468" for c in CANONICAL_CHANNELS], dtype=float)
    mid = 1.0 - left - right
    return np.stack([weights * (left + 0.5 * mid), weights * (right + 0.5 * mid)])


@lru_cache(maxsize=8)
def spatial_mixing(length_scale: float = 0.45) -> np.ndarray:
    """(19, 19) L with L @ L.T = exp(-distance / length_scale): volume conduction correlates
    neighbouring electrodes (~0.3-0.4 with this positive-definite kernel)."""
    pos = canonical_positions()
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    return np.linalg.cholesky(np.exp(-dist / length_scale))


def pink_sos(sfreq: float, exponent: float = 1.6, f_low: float = 0.4) -> np.ndarray:
    """Second-order sections whose power falls as 1/f**exponent above ``f_low``, unit output RMS.

    Real poles evenly spaced on a log-frequency axis, each with a zero ``ratio**(exponent/2)``
    above it, fall by ``10*exponent`` dB per decade on average.
    """
    f_high = 0.45 * sfreq
    n_poles = max(2, int(np.ceil(np.log10(f_high / f_low) * 2)))
    poles_hz = f_low * (f_high / f_low) ** (np.arange(n_poles) / (n_poles - 1))
    ratio = (f_high / f_low) ** (1.0 / (n_poles - 1))
    zeros_hz = poles_hz * ratio ** (exponent / 2.0)
    z_a, p_a = -2 * np.pi * zeros_hz, -2 * np.pi * poles_hz
    z_d, p_d, k_d = signal.bilinear_zpk(z_a, p_a, 1.0, fs=sfreq)
    sos = signal.zpk2sos(z_d, p_d, k_d)
    return _unit_rms(sos, sfreq)


def bandpass_sos(sfreq: float, low: float, high: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass normalized to unit output RMS for unit white noise."""
    sos = signal.butter(order, [low, high], btype="bandpass", fs=sfreq, output="sos")
    return _unit_rms(sos, sfreq)


def _unit_rms(sos: np.ndarray, sfreq: float) -> np.ndarray:
    _, response = signal.sosfreqz(sos, worN=8192, fs=sfreq)
    rms = np.sqrt(np.mean(np.abs(response) ** 2))
    sos = sos.copy()
    sos[0, :3] /= rms
    return sos


def smooth_intervals(t: np.ndarray, intervals: np.ndarray, ramp_s: float) -> np.ndarray:
    """1 inside the (start, end) intervals, 0 outside, raised-cosine ramps of ``ramp_s``."""
    out = np.zeros_like(t, dtype=np.float64)
    for start, end in np.asarray(intervals, dtype=np.float64).reshape(-1, 2):
        out = np.maximum(out, taper(t, start, end, ramp_s))
    return out


@dataclasses.dataclass(frozen=True)
class BackgroundParams:
    """One recording's background: amplitudes in microvolts, frequencies in hertz."""

    broadband_uv: float = 22.0
    exponent: float = 1.6
    alpha_freq: float = 10.0
    alpha_uv: float = 18.0
    alpha_wax_period_s: float = 12.0
    alpha_phase: float = 0.0
    sleep_delta_uv: float = 35.0
    sleep_intervals: tuple[tuple[float, float], ...] = ()
    channel_scale: tuple[float, ...] = (1.0,) * N_CHANS


class _Bilateral:
    """Left and right band-limited generators, partly coherent, projected onto a topography."""

    def __init__(self, sos: np.ndarray, coherence: float, topography: np.ndarray) -> None:
        self.sos = sos
        self.zi = np.zeros((sos.shape[0], 2, 2))
        self.coupling = np.array([[1.0, 0.0], [coherence, np.sqrt(1 - coherence**2)]])
        self.topography = topography

    def __call__(self, noise: np.ndarray, envelope: np.ndarray) -> np.ndarray:
        x, self.zi = signal.sosfilt(self.sos, self.coupling @ noise, axis=-1, zi=self.zi)
        return self.topography @ (x * envelope)


class BackgroundGenerator:
    """Stateful chunk generator of background EEG, shape (19, n) in microvolts."""

    def __init__(self, params: BackgroundParams, sfreq: float) -> None:
        self.params = params
        self.sfreq = float(sfreq)
        self._pink = pink_sos(sfreq, params.exponent)
        self._pink_zi = np.zeros((self._pink.shape[0], N_CHANS, 2))
        scale = np.asarray(params.channel_scale, dtype=np.float64)
        self._mixing = spatial_mixing() * (params.broadband_uv * scale)[:, None]
        # Left and right posterior rhythms are partly coherent, as real ones are.
        alpha_sos = bandpass_sos(sfreq, params.alpha_freq - 1.2, params.alpha_freq + 1.2)
        alpha_topo = hemisphere_split(TOPOGRAPHIES["alpha"]).T * params.alpha_uv
        self._alpha = _Bilateral(alpha_sos, 0.7, alpha_topo)
        delta_topo = hemisphere_split(TOPOGRAPHIES["sleep_delta"]).T * params.sleep_delta_uv
        self._delta = _Bilateral(bandpass_sos(sfreq, 0.5, 2.5), 0.8, delta_topo)

    def sleep_weight(self, t: np.ndarray) -> np.ndarray:
        return smooth_intervals(t, np.array(self.params.sleep_intervals), ramp_s=20.0)

    def step(self, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Background for sample times ``t`` from ``noise`` (N_NOISE, n) standard normal draws."""
        pink, self._pink_zi = signal.sosfilt(self._pink, noise[:N_CHANS], axis=-1, zi=self._pink_zi)
        out = self._mixing @ pink
        sleep = self.sleep_weight(t)
        p = self.params
        wax = 0.75 + 0.25 * np.sin(2 * np.pi * t / p.alpha_wax_period_s + p.alpha_phase)
        out += self._alpha(noise[N_CHANS : N_CHANS + 2], wax * (1.0 - 0.85 * sleep))
        if p.sleep_intervals:
            out += self._delta(noise[N_CHANS + 2 : N_CHANS + 4], sleep)
        return out
