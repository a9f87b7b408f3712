"""High-amplitude cerebral patterns as the ACNS critical-care terminology (2021) defines them, to add
to real EEG, and the non-cerebral events they must be told apart from. Each returns (19, n) µV in
canonical channel order for sample times ``t`` (s); fields fall off with distance from a focus."""

from __future__ import annotations

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions

_POS = canonical_positions()


def field(focus: str, width: float = 0.55) -> np.ndarray:
    """(19,) Gaussian fall-off with distance from ``focus``: a cortical generator's scalp field."""
    dist = np.linalg.norm(_POS - _POS[CANONICAL_CHANNELS.index(focus)], axis=1)
    return np.exp(-0.5 * (dist / width) ** 2)


def seizure(t: np.ndarray, focus: str = "T3", peak_uv: float = 450.0) -> np.ndarray:
    """An electrographic seizure: a rhythm evolving in frequency (7 -> 3 Hz), morphology (sine to
    spike-and-wave) and location (a field that widens from the focus) over ``t``'s span (>= 10 s)."""
    tau = (t - t[0]) / (t[-1] - t[0])
    phase = 2 * np.pi * np.cumsum(7.0 - 4.0 * tau) * (t[1] - t[0])
    wave = np.sin(phase) + 0.6 * tau * np.sin(2 * phase - np.pi / 2)
    amplitude = peak_uv * (0.25 + 0.75 * tau)
    spread = np.stack([field(focus, w) for w in (0.45, 0.9)])  # onset field, late field
    topo = spread[0][:, None] * (1 - tau) + spread[1][:, None] * tau
    return topo * (amplitude * wave)[None, :]


def periodic_discharges(t: np.ndarray, rate_hz: float = 1.2, focus: str | None = "F7", peak_uv: float = 300.0):
    """LPDs (a focus) or GPDs (``focus`` None: bilateral, frontally predominant): sharp waves of
    ~70 ms followed by a slow wave, recurring at ``rate_hz`` with a 5 % jittered interval."""
    rng = np.random.default_rng(1)
    times = t[0] + 0.3 + np.cumsum(np.clip(1 + 0.05 * rng.standard_normal(64), 0.8, 1.2) / rate_hz)
    wave = np.zeros_like(t)
    for onset in times[times < t[-1]]:
        wave += -np.exp(-0.5 * ((t - onset) / 0.025) ** 2) + 0.35 * np.exp(-0.5 * ((t - onset - 0.14) / 0.07) ** 2)
    topo = field(focus) if focus else 0.6 + 0.4 * (_POS[:, 1] + 1) / 2
    return peak_uv * topo[:, None] * wave[None, :]


def rhythmic_delta(t: np.ndarray, freq_hz: float = 2.0, focus: str | None = None, peak_uv: float = 250.0):
    """LRDA (a focus) or GRDA (``focus`` None: bilateral, frontally predominant) at 1-4 Hz."""
    topo = field(focus, 0.7) if focus else 0.5 + 0.5 * (_POS[:, 1] + 1) / 2
    return peak_uv * topo[:, None] * np.sin(2 * np.pi * freq_hz * t)[None, :]


def electrode_pop(t: np.ndarray, channel: str = "T4", amplitude_uv: float = 1500.0) -> np.ndarray:
    """An abrupt step on one electrode relaxing over 0.5 s: no field, no rhythm."""
    out = np.zeros((len(CANONICAL_CHANNELS), len(t)))
    onset = t[0] + 0.4 * (t[-1] - t[0])
    out[CANONICAL_CHANNELS.index(channel)] = np.where(t >= onset, amplitude_uv * np.exp(-(t - onset) / 0.5), 0.0)
    return out


def movement(t: np.ndarray, amplitude_uv: float = 1200.0) -> np.ndarray:
    """Irregular large slow swings on every electrode (a head movement pulling the leads)."""
    walk = np.cumsum(np.random.default_rng(2).standard_normal(len(t)))
    walk = amplitude_uv * (walk - walk.mean()) / np.ptp(walk)
    return np.linspace(0.6, 1.0, len(CANONICAL_CHANNELS))[:, None] * walk[None, :]
