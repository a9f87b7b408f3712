"""Non-cerebral signals: artifacts, mains interference and auxiliary channels.

Each artifact is planned as events in absolute time (:func:`plan_artifacts`) and rendered by a pure
function of sample times: eye blinks (frontal, and in the EOG), muscle bursts above 20 Hz
(temporal, and in the EMG), electrode pops, slow drift below 0.1 Hz, 50/60 Hz mains with harmonics
(different on every channel), ECG with heart-rate variability, and photic flash trains with
occipital driving.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import signal

from eegfm.pipelines.channels import CANONICAL_CHANNELS
from eegfm.pipelines.simulate.background import TOPOGRAPHIES, smooth_intervals
from eegfm.pipelines.simulate.patterns import event_train
from eegfm.pipelines.simulate.sites import SiteProfile

N_CHANS = len(CANONICAL_CHANNELS)
LINE_HARMONICS = ((1, 1.0), (2, 0.3), (3, 0.15))
PHOTIC_FREQUENCIES = (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 25)
PHOTIC_TRAIN_S, PHOTIC_GAP_S, PHOTIC_PULSE_S = 10.0, 5.0, 0.02
BLINK_PEAK_S = 0.12


@dataclasses.dataclass(frozen=True)
class MuscleBurst:
    start_s: float
    duration_s: float
    side: str  # 'left', 'right' or 'both'
    amplitude_uv: float
    seed: int


@dataclasses.dataclass(frozen=True)
class Pop:
    time_s: float
    channel: int
    amplitude_uv: float
    decay_s: float


@dataclasses.dataclass(frozen=True)
class ArtifactPlan:
    """Every artifact event of one recording, in absolute seconds and microvolts."""

    blink_times: np.ndarray
    blink_amplitudes: np.ndarray
    muscle: tuple[MuscleBurst, ...]
    pops: tuple[Pop, ...]
    drift_freqs: np.ndarray  # (3,)
    drift_phases: np.ndarray  # (3,)
    drift_weights: np.ndarray  # (19, 3) microvolts
    line_freq: float
    line_amplitudes: np.ndarray  # (19,)
    line_phases: np.ndarray  # (19,)
    beat_times: np.ndarray
    ecg_amplitude_uv: float
    photic_trains: tuple[tuple[float, float, float], ...]  # (start, end, flash Hz)

    def counts(self) -> dict[str, int]:
        return {
            "blinks": int(len(self.blink_times)),
            "muscle_bursts": len(self.muscle),
            "electrode_pops": len(self.pops),
            "heartbeats": int(len(self.beat_times)),
            "photic_trains": len(self.photic_trains),
        }


def poisson_times(
    rng: np.random.Generator, duration_s: float, rate_per_min: float, min_gap_s: float = 0.0
) -> np.ndarray:
    """Sorted event times of a Poisson process, dropping events closer than ``min_gap_s``."""
    n = int(rng.poisson(rate_per_min * duration_s / 60.0))
    times = np.sort(rng.uniform(0.0, duration_s, n))
    if min_gap_s > 0 and len(times) > 1:
        keep = [0]
        for i in range(1, len(times)):
            if times[i] - times[keep[-1]] >= min_gap_s:
                keep.append(i)
        times = times[keep]
    return times


def heartbeat_times(rng: np.random.Generator, duration_s: float, start_s: float = -2.0) -> np.ndarray:
    """Beat times with respiratory sinus arrhythmia and beat-to-beat noise."""
    rr = 60.0 / float(rng.uniform(55.0, 100.0))
    n = int((duration_s - start_s) / (0.7 * rr)) + 4
    beats, t = [], start_s + float(rng.uniform(0, rr))
    breath = float(rng.uniform(0.2, 0.3))
    for noise in rng.standard_normal(n):
        beats.append(t)
        t += rr * (1.0 + 0.04 * np.sin(2 * np.pi * breath * t) + 0.015 * noise)
        if t > duration_s + 2.0:
            break
    return np.array(beats)


def photic_trains(rng: np.random.Generator, duration_s: float) -> tuple[tuple[float, float, float], ...]:
    """One photic-stimulation session: 10 s flash trains of rising frequency, 5 s apart."""
    t = float(rng.uniform(0.1, 0.5)) * duration_s
    trains = []
    for freq in PHOTIC_FREQUENCIES:
        if t + PHOTIC_TRAIN_S > duration_s - 1.0:
            break
        trains.append((round(t, 3), round(t + PHOTIC_TRAIN_S, 3), float(freq)))
        t += PHOTIC_TRAIN_S + PHOTIC_GAP_S
    return tuple(trains)


def plan_artifacts(
    rng: np.random.Generator,
    duration_s: float,
    site: SiteProfile,
    sleep_intervals: tuple[tuple[float, float], ...] = (),
) -> ArtifactPlan:
    """Draw all artifact events of one recording at ``site``: its rates, drift, mains, photic
    stimulation if it records a photic channel, pops on the electrodes it records; blinks are
    rarer during sleep-like periods."""
    recorded = tuple(i for i, c in enumerate(CANONICAL_CHANNELS) if c not in site.missing_channels)
    blinks = poisson_times(rng, duration_s, site.blink_rate_per_min, min_gap_s=0.8)
    awake = 1.0 - 0.9 * smooth_intervals(blinks, np.array(sleep_intervals), ramp_s=20.0)
    blinks = blinks[rng.random(len(blinks)) < awake]
    muscle = tuple(
        MuscleBurst(
            start_s=round(float(s), 4),
            duration_s=round(float(rng.uniform(0.5, 3.0)), 4),
            side=str(rng.choice(("left", "right", "both"))),
            amplitude_uv=round(float(rng.uniform(8.0, 35.0)), 3),
            seed=int(rng.integers(2**31)),
        )
        for s in poisson_times(rng, duration_s, site.muscle_rate_per_min)
    )
    pops = tuple(
        Pop(
            time_s=round(float(s), 4),
            channel=int(rng.choice(recorded)),
            amplitude_uv=round(float(rng.choice((-1.0, 1.0)) * rng.uniform(60.0, 250.0)), 3),
            decay_s=round(float(rng.uniform(0.15, 0.8)), 4),
        )
        for s in poisson_times(rng, duration_s, site.pop_rate_per_min)
    )
    return ArtifactPlan(
        blink_times=blinks,
        blink_amplitudes=rng.uniform(70.0, 180.0, len(blinks)),
        muscle=muscle,
        pops=pops,
        drift_freqs=rng.uniform(0.008, 0.06, 3),
        drift_phases=rng.uniform(0, 2 * np.pi, 3),
        drift_weights=site.drift_uv * rng.uniform(-1.0, 1.0, (N_CHANS, 3)) / np.sqrt(3),
        line_freq=site.line_freq,
        line_amplitudes=site.line_noise_uv * rng.lognormal(0.0, 0.6, N_CHANS),
        line_phases=rng.uniform(-0.3, 0.3, N_CHANS) + float(rng.uniform(0, 2 * np.pi)),
        beat_times=heartbeat_times(rng, duration_s),
        ecg_amplitude_uv=float(rng.uniform(600.0, 1500.0)),
        photic_trains=photic_trains(rng, duration_s) if "photic" in site.aux_channels else (),
    )


def blink_kernel(tau: np.ndarray) -> np.ndarray:
    """A blink: rises in ~0.1 s, decays over ~0.3 s; peak 1 at ``BLINK_PEAK_S``."""
    x = np.maximum(tau, 0.0) / BLINK_PEAK_S
    return x * x * np.exp(2.0 - 2.0 * x)


def blink_signal(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    """(n,) blink waveform at Fp1/Fp2 in microvolts."""
    return event_train(t, plan.blink_times, blink_kernel, before_s=0.0, after_s=0.8, amplitudes=plan.blink_amplitudes)


def render_blinks(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    return np.outer(TOPOGRAPHIES["blink"], blink_signal(t, plan))


@lru_cache(maxsize=16)
def _muscle_highpass(sfreq: float) -> np.ndarray:
    return signal.butter(4, min(20.0, 0.4 * sfreq), btype="highpass", fs=sfreq, output="sos")


def _muscle_waveform(burst: MuscleBurst, sfreq: float) -> np.ndarray:
    """(20, samples) of one burst (19 EEG + chin EMG): its own seeded noise, high-passed at
    20 Hz, tapered. Seeded per burst, so a burst cut by a chunk boundary renders identically."""
    n = int(round(burst.duration_s * sfreq))
    noise = np.random.default_rng(burst.seed).standard_normal((N_CHANS + 1, n))
    # Noise has no phase to preserve, so one causal pass is enough; the taper hides its onset.
    hf = signal.sosfilt(_muscle_highpass(float(sfreq)), noise, axis=-1)
    hf /= hf.std(axis=-1, keepdims=True) + 1e-12
    weights = TOPOGRAPHIES["muscle"]
    if burst.side != "both":
        keep = "1357" if burst.side == "left" else "2468"
        weights = weights * np.array(
            [1.0 if c[-1] in keep else 0.35 if c.endswith("z") else 0.1 for c in CANONICAL_CHANNELS]
        )
    envelope = signal.windows.tukey(n, alpha=0.3)
    return burst.amplitude_uv * envelope * np.vstack([weights[:, None] * hf[:N_CHANS], hf[N_CHANS:]])


def render_muscle(t: np.ndarray, plan: ArtifactPlan, sfreq: float, out: np.ndarray) -> np.ndarray:
    """Add muscle artifact to the EEG ``out`` (19, n); return the chin EMG's (n,)."""
    emg = np.zeros(len(t))
    if len(t) == 0:
        return emg
    first = int(round(t[0] * sfreq))
    for burst in plan.muscle:
        start = int(round(burst.start_s * sfreq))
        n = int(round(burst.duration_s * sfreq))
        lo, hi = max(start, first), min(start + n, first + len(t))
        if lo >= hi:
            continue
        wave = _muscle_waveform(burst, sfreq)[:, lo - start : hi - start]
        out[:, lo - first : hi - first] += wave[:N_CHANS]
        emg[lo - first : hi - first] += 3.0 * wave[N_CHANS]
    return emg


def render_pops(t: np.ndarray, plan: ArtifactPlan, out: np.ndarray | None = None) -> np.ndarray:
    """Electrode pops (19, n), added to ``out`` if given."""
    out = np.zeros((N_CHANS, len(t))) if out is None else out
    for pop in plan.pops:
        if len(t) == 0 or pop.time_s > t[-1] or pop.time_s + 8 * pop.decay_s < t[0]:
            continue
        tau = t - pop.time_s
        mask = (tau >= 0) & (tau < 8 * pop.decay_s)
        out[pop.channel, mask] += pop.amplitude_uv * np.exp(-tau[mask] / pop.decay_s)
    return out


def render_drift(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    waves = np.sin(2 * np.pi * plan.drift_freqs[:, None] * t[None, :] + plan.drift_phases[:, None])
    return plan.drift_weights @ waves


def render_line_noise(t: np.ndarray, plan: ArtifactPlan, sfreq: float) -> np.ndarray:
    """Mains interference per channel; harmonics above 0.45 * sfreq are left out (anti-aliasing)."""
    harmonics = [(h, rel) for h, rel in LINE_HARMONICS if h * plan.line_freq < 0.45 * sfreq]
    # sin/cos of the fundamental once; harmonics by the multiple-angle identities (cheaper).
    s1, c1 = np.sin(2 * np.pi * plan.line_freq * t), np.cos(2 * np.pi * plan.line_freq * t)
    basis_of = {1: (s1, c1), 2: (2 * s1 * c1, 1 - 2 * s1 * s1), 3: (s1 * (3 - 4 * s1 * s1), c1 * (4 * c1 * c1 - 3))}
    basis = np.stack([b for h, _ in harmonics for b in basis_of[h]])
    amplitudes, phases = plan.line_amplitudes[:, None], plan.line_phases
    coef = np.hstack([rel * amplitudes * np.stack([np.cos(h * phases), np.sin(h * phases)], 1) for h, rel in harmonics])
    modulation = 1.0 + 0.2 * np.sin(2 * np.pi * t / 37.0)
    return (coef @ basis) * modulation


def ecg_kernel(tau: np.ndarray) -> np.ndarray:
    """One heartbeat (P, Q, R, S, T waves) normalized to R = 1."""
    waves = ((-0.16, 0.025, 0.12), (-0.03, 0.008, -0.12), (0.0, 0.01, 1.0), (0.03, 0.01, -0.25), (0.28, 0.05, 0.3))
    return sum(a * np.exp(-0.5 * ((tau - c) / w) ** 2) for c, w, a in waves)


def render_ecg(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    return event_train(t, plan.beat_times, ecg_kernel, before_s=0.3, after_s=0.5) * plan.ecg_amplitude_uv


def render_photic(t: np.ndarray, plan: ArtifactPlan, out: np.ndarray) -> np.ndarray:
    """Add occipital photic driving (µV) to ``out`` (19, n); return the stimulator marker (n,) of 0/1
    flashes."""
    marker, driving = np.zeros(len(t)), np.zeros(len(t))
    for start, end, freq in plan.photic_trains:
        inside = (t >= start) & (t < end)
        if not inside.any():
            continue
        phase = ((t[inside] - start) * freq) % 1.0
        marker[inside] = (phase < PHOTIC_PULSE_S * freq).astype(float)
        if 4.0 <= freq <= 25.0:  # the visual cortex follows flashes in this range
            driving[inside] = 4.0 * np.sin(2 * np.pi * phase)
    if plan.photic_trains:
        out += TOPOGRAPHIES["photic"][:, None] * driving[None, :]
    return marker
