"""Waveforms of the HMS patterns, each normalized to a peak-to-trough of 1 (see
:mod:`~simulate.patterns` for the ACNS rules and ranges they follow).

Periodic discharges are sums of Gaussian phases (:func:`wavelets`, drawn by
:func:`discharge_waves`); rhythmic delta is a sinusoid with a sharpened crest; seizure rhythms blend
a sinusoid into spike-and-wave and relax in frequency with an exactly integrated phase, so every
waveform is a pure function of time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import special


def wavelets(tau: np.ndarray, waves: Sequence[Sequence[float]]) -> np.ndarray:
    """Sum of Gaussian phases ``(centre_s, width_s, amplitude, freq_hz)``: a plain Gaussian when
    ``freq_hz`` is 0, a Gaussian-windowed cosine (superimposed fast activity) otherwise."""
    out = np.zeros_like(tau, dtype=np.float64)
    for centre, width, amplitude, freq in waves:
        x = tau - centre
        bump = amplitude * np.exp(-0.5 * (x / width) ** 2)
        out += bump * np.cos(2 * np.pi * freq * x) if freq else bump
    return out


def wavelet_support(waves: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(before_s, after_s) outside which every phase of ``waves`` is below 0.03 % of its peak."""
    before = max(4.0 * w - c for c, w, _, _ in waves)
    after = max(c + 4.0 * w for c, w, _, _ in waves)
    return max(before, 0.0), max(after, 0.0)


def discharge_waves(
    rng: np.random.Generator, triphasic_p: float, plus_fast_p: float, max_extent_s: float
) -> tuple[list[list[float]], str, str | None]:
    """One periodic discharge as Gaussian phases (see :func:`wavelets`), lasting at most
    ``max_extent_s`` (so an interval stays between discharges), normalized to a peak-to-trough of
    1 with the main phase at time 0; returns (waves, morphology, plus modifier or None)."""
    triphasic = bool(rng.random() < triphasic_p)
    # Main phase at its base (10 % of its peak, 4.3 sigma): a spike or a sharp wave, 60-200 ms;
    # a whole discharge lasts ~2.0 (biphasic) or ~2.7 (triphasic) times its main phase.
    longest = min(0.2, max_extent_s / (2.7 if triphasic else 2.0))
    sigma = float(rng.uniform(0.06, max(0.06, longest))) / 4.3
    if triphasic:  # short negative, tall positive, long negative phase
        s1, s3 = 0.5 * sigma, float(rng.uniform(1.5, 2.0)) * sigma
        waves = [
            [-1.7 * (sigma + s1), s1, -float(rng.uniform(0.25, 0.4)), 0.0],
            [0.0, sigma, 1.0, 0.0],
            [1.7 * (sigma + s3), s3, -float(rng.uniform(0.45, 0.7)), 0.0],
        ]
    else:  # surface-negative sharp wave or spike, then a smaller positive phase
        s2 = float(rng.uniform(1.2, 1.6)) * sigma
        waves = [[0.0, sigma, -1.0, 0.0], [1.6 * (sigma + s2), s2, float(rng.uniform(0.25, 0.45)), 0.0]]
    start = min(c - 2.0 * w for c, w, _, _ in waves)
    end = max(c + 2.0 * w for c, w, _, _ in waves)
    slow = float(rng.uniform(0.15, 0.35))
    if rng.random() < 0.5 and end + slow - start <= max_extent_s:  # after-going slow wave
        waves.append([end + 0.5 * slow, slow / 4.0, -float(rng.uniform(0.2, 0.4)), 0.0])
    plus = None
    if rng.random() < plus_fast_p:  # ACNS "+F": superimposed fast activity
        plus = "+F"
        waves.append(
            [0.0, min(float(rng.uniform(0.025, 0.04)), 0.25 * max_extent_s), 0.2, float(rng.uniform(12.0, 20.0))]
        )
    shape = wavelets(np.arange(-0.6, 1.2, 0.0005), waves)
    scale = 1.0 / float(shape.max() - shape.min())
    morphology = "triphasic" if triphasic else "biphasic"
    return [[round(c, 6), round(w, 6), round(a * scale, 6), f] for c, w, a, f in waves], morphology, plus


def rhythmic_delta(t: np.ndarray, freq: float, phase: float, wander: float = 0.4, harmonic: float = 0.25) -> np.ndarray:
    """Quasi-sinusoidal delta of peak-to-trough 1: a sharpened crest (2nd harmonic of relative size
    ``harmonic``) and a slow phase wander of ``wander`` radians (at 0.07 Hz: <=0.03 Hz per rad)."""
    theta = 2 * np.pi * freq * t + phase + wander * np.sin(2 * np.pi * 0.07 * t + phase)
    return (np.sin(theta) + harmonic * np.sin(2 * theta + 0.5 * np.pi)) / _delta_p2p(round(harmonic, 6))


@lru_cache(maxsize=256)
def _delta_p2p(harmonic: float) -> float:
    theta = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    wave = np.sin(theta) + harmonic * np.sin(2 * theta + 0.5 * np.pi)
    return float(wave.max() - wave.min())


# Spike-and-wave in phase: a narrow surface-negative spike (von Mises, kappa 30: ~20-70 ms at
# 2.6-9 Hz) and a broad, larger negative slow wave half a cycle later, zero-mean. The slow wave
# carries the fundamental (its 2nd harmonic is 0.6 of it), as in real spike-and-wave.
_SPIKE_KAPPA, _WAVE_KAPPA, _WAVE_SIZE = 30.0, 1.0, 1.5


def _von_mises(phase: np.ndarray, kappa: float) -> np.ndarray:
    return np.exp(kappa * (np.cos(phase) - 1.0)) - special.i0e(kappa)  # i0e: its mean


def _spike_wave(phase: np.ndarray) -> np.ndarray:
    return -_von_mises(phase, _SPIKE_KAPPA) - _WAVE_SIZE * _von_mises(phase - np.pi, _WAVE_KAPPA)


@lru_cache(maxsize=1)
def _seizure_wave_table() -> tuple[np.ndarray, np.ndarray, float]:
    """(spikiness grid, peak-to-trough of the blend at each, peak-to-trough of spike-and-wave)."""
    phase = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    spike_wave = _spike_wave(phase)
    p2p = float(np.ptp(spike_wave))
    grid = np.linspace(0.0, 1.0, 101)
    blends = [np.ptp((1 - s) * 0.5 * np.sin(phase) + s * spike_wave / p2p) for s in grid]
    return grid, np.array(blends), p2p


def seizure_wave(phase: np.ndarray, spikiness: np.ndarray) -> np.ndarray:
    """A rhythm of peak-to-trough 1 blended from a sinusoid (``spikiness`` 0) into spike-and-wave
    (``spikiness`` 1)."""
    grid, blend_p2p, p2p = _seizure_wave_table()
    wave = (1.0 - spikiness) * 0.5 * np.sin(phase) + spikiness * _spike_wave(phase) / p2p
    return wave / np.interp(spikiness, grid, blend_p2p)


def seizure_phase(tau: np.ndarray, f_start: float, f_end: float, time_constant: float) -> np.ndarray:
    """Phase (radians) of a rhythm whose frequency relaxes from ``f_start`` to ``f_end``: the exact
    integral of :func:`seizure_frequency`, so the waveform is smooth however it is chunked."""
    tau = np.maximum(tau, 0.0)
    integral = f_end * tau + (f_start - f_end) * time_constant * (1.0 - np.exp(-tau / time_constant))
    return 2 * np.pi * integral


def seizure_frequency(tau: np.ndarray, f_start: float, f_end: float, time_constant: float) -> np.ndarray:
    return f_end + (f_start - f_end) * np.exp(-np.maximum(tau, 0.0) / time_constant)
