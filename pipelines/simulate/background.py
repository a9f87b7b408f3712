"""Ongoing background EEG: spatially correlated 1/f activity, posterior alpha, sleep-like slowing.

Scalp EEG is dominated by broadband activity whose power falls roughly as 1/f^alpha (alpha about
1-2) and which is correlated between nearby electrodes because of volume conduction. On top of it
sits the posterior dominant rhythm (8-12 Hz, largest over O1/O2, waxing and waning) and, in
drowsiness or sleep, diffuse delta with less alpha. Everything here is produced by IIR filters
driven by white noise whose state is carried from chunk to chunk, so a recording rendered in
10 s chunks is identical to one rendered in 60 s chunks.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import signal

from eegfm.pipelines.channels import CANONICAL_CHANNELS, canonical_positions

N_CHANS = len(CANONICAL_CHANNELS)

# Posterior dominant rhythm topography (fraction of the occipital amplitude).
ALPHA_TOPOGRAPHY = {
    "O1": 1.0,
    "O2": 1.0,
    "P3": 0.7,
    "P4": 0.7,
    "Pz": 0.65,
    "T5": 0.6,
    "T6": 0.6,
    "C3": 0.3,
    "C4": 0.3,
    "Cz": 0.3,
    "T3": 0.25,
    "T4": 0.25,
    "F3": 0.12,
    "F4": 0.12,
    "Fz": 0.12,
    "F7": 0.1,
    "F8": 0.1,
    "Fp1": 0.05,
    "Fp2": 0.05,
}
# Sleep-like delta: frontocentral maximum, as slow waves of NREM sleep.
SLEEP_DELTA_TOPOGRAPHY = {
    "Fp1": 0.8,
    "Fp2": 0.8,
    "F3": 1.0,
    "F4": 1.0,
    "Fz": 1.0,
    "F7": 0.7,
    "F8": 0.7,
    "C3": 0.9,
    "C4": 0.9,
    "Cz": 0.95,
    "T3": 0.5,
    "T4": 0.5,
    "P3": 0.6,
    "P4": 0.6,
    "Pz": 0.65,
    "T5": 0.45,
    "T6": 0.45,
    "O1": 0.4,
    "O2": 0.4,
}
# Noise columns consumed per sample: 19 broadband sources, 2 alpha, 2 delta (left/right).
N_NOISE = N_CHANS + 4


def topography(weights: dict[str, float]) -> np.ndarray:
    """A (19,) weight vector in canonical order from a channel -> weight table."""
    return np.array([weights[c] for c in CANONICAL_CHANNELS], dtype=np.float64)


def hemisphere_split(weights: np.ndarray) -> np.ndarray:
    """Split a topography into (2, 19): left source feeds left + half midline, right likewise."""
    left = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS], dtype=float)
    right = np.array([c[-1] in "2468" for c in CANONICAL_CHANNELS], dtype=float)
    mid = 1.0 - left - right
    return np.stack([weights * (left + 0.5 * mid), weights * (right + 0.5 * mid)])


@lru_cache(maxsize=8)
def spatial_mixing(length_scale: float = 0.45) -> np.ndarray:
    """(19, 19) mixing matrix L with L @ L.T = exp(-distance / length_scale) (unit diagonal).

    Volume conduction makes neighbouring electrodes correlate; an exponential kernel on
    unit-sphere distances is positive definite and gives ~0.3-0.4 correlation between neighbours.
    """
    pos = canonical_positions()
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    return np.linalg.cholesky(np.exp(-dist / length_scale))


def pink_sos(sfreq: float, exponent: float = 1.6, f_low: float = 0.4) -> np.ndarray:
    """Second-order sections whose power response falls as 1/f**exponent above ``f_low``.

    Alternating real poles and zeros, spaced evenly on a log-frequency axis, approximate a
    fractional slope: with poles every ``ratio`` and each zero ``ratio**(exponent/2)`` above its
    pole, the magnitude falls by ``10*exponent`` dB per decade on average. The response is
    normalized to unit output RMS for unit-variance white input.
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
        rise = np.clip((t - start) / ramp_s, 0.0, 1.0)
        fall = np.clip((end - t) / ramp_s, 0.0, 1.0)
        out = np.maximum(out, 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall)))
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


class BackgroundGenerator:
    """Stateful chunk generator of background EEG, shape (19, n) in microvolts."""

    def __init__(self, params: BackgroundParams, sfreq: float) -> None:
        self.params = params
        self.sfreq = float(sfreq)
        self._pink = pink_sos(sfreq, params.exponent)
        self._alpha = bandpass_sos(sfreq, params.alpha_freq - 1.2, params.alpha_freq + 1.2)
        self._delta = bandpass_sos(sfreq, 0.5, 2.5)
        self._pink_zi = np.zeros((self._pink.shape[0], N_CHANS, 2))
        self._alpha_zi = np.zeros((self._alpha.shape[0], 2, 2))
        self._delta_zi = np.zeros((self._delta.shape[0], 2, 2))
        scale = np.asarray(params.channel_scale, dtype=np.float64)
        self._mixing = spatial_mixing() * (params.broadband_uv * scale)[:, None]
        self._alpha_topo = hemisphere_split(topography(ALPHA_TOPOGRAPHY)).T * params.alpha_uv
        self._delta_topo = hemisphere_split(topography(SLEEP_DELTA_TOPOGRAPHY)).T * params.sleep_delta_uv
        # Left and right alpha generators are partly coherent, as real posterior rhythms are.
        self._alpha_coupling = np.array([[1.0, 0.0], [0.7, np.sqrt(1 - 0.7**2)]])
        self._delta_coupling = np.array([[1.0, 0.0], [0.8, np.sqrt(1 - 0.8**2)]])

    def sleep_weight(self, t: np.ndarray) -> np.ndarray:
        return smooth_intervals(t, np.array(self.params.sleep_intervals), ramp_s=20.0)

    def step(self, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Background for sample times ``t`` from ``noise`` (N_NOISE, n) standard normal draws."""
        pink, self._pink_zi = signal.sosfilt(self._pink, noise[:N_CHANS], axis=-1, zi=self._pink_zi)
        out = self._mixing @ pink
        sleep = self.sleep_weight(t)
        alpha, self._alpha_zi = signal.sosfilt(
            self._alpha, self._alpha_coupling @ noise[N_CHANS : N_CHANS + 2], axis=-1, zi=self._alpha_zi
        )
        p = self.params
        wax = 0.75 + 0.25 * np.sin(2 * np.pi * t / p.alpha_wax_period_s + p.alpha_phase)
        out += self._alpha_topo @ (alpha * (wax * (1.0 - 0.85 * sleep)))
        if p.sleep_intervals:
            delta, self._delta_zi = signal.sosfilt(
                self._delta,
                self._delta_coupling @ noise[N_CHANS + 2 : N_CHANS + 4],
                axis=-1,
                zi=self._delta_zi,
            )
            out += self._delta_topo @ (delta * sleep)
        return out
