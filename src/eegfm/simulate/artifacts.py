"""Non-cerebral signals: artifacts, mains interference and auxiliary channels.

Each artifact is planned as events in absolute time (:func:`plan_artifacts`) and rendered by a pure
function of sample times, with the morphology a reviewer keys on (ranges checked against real
recordings in ../shared/data, see tests/simulate/test_artifacts.py):

- **Eye blinks**: the cornea-positive eyeball rolls up under the lid, a positive deflection at
  Fp1/Fp2 rising in 0.07-0.11 s, 0.14-0.22 s wide at half its peak and 0.27-0.43 s at 10 %
  (0.7-1.1 x :func:`blink_kernel`; real blinks in PhysioNet EEGMMI S001: medians 0.13-0.17 s at
  half peak, 0.36-0.45 s at 10 %, rise 0.12-0.13 s), 40-450 µV at Fp (median 120 µV; YASA's
  eyes-open F4-A1 recording has F4 blinks of ~60 µV, ~0.4 of Fp; EEGMMI S001's reach 270-410 µV
  at Fp1), ~0.4 at F3/F4/F7/F8/Fz, ~0.15
  centrally, ~0 occipitally (:data:`BLINK_FIELD`, fitted to EEGMMI S001). Rarer in sleep and with
  the eyes closed.
- **Lateral eye movements**: a saccade (50 ms) to one side, a fixation of 0.4-2 s, a saccade
  back; the cornea brings positivity to the side looked at: F7 and F8 of opposite polarity
  (20-80 µV), smaller at Fp1/Fp2, F3/F4 and T3/T4 (:data:`EYE_MOVEMENT_FIELD`).
- **Muscle**: bursts of 0.3-2.5 s of summed motor-unit action potentials (bi-/triphasic,
  1.5-3.5 ms wide, firing at 8-25 Hz with 15 % jitter, log-normal sizes so a few units dominate),
  synthesized at ~2 kHz, anti-aliased to the site's rate and high-passed at 20 Hz: broadband
  20-150 Hz (to Nyquist) and spiky (super-Gaussian), local to the temporalis/frontalis electrodes
  of one or both sides; 8-35 µV RMS at the most affected electrode (real temporal bursts in eegmat
  rest: 10-47 µV RMS in 20-150 Hz, 0.25-2 s, kurtosis 1.3-3.7 at 500 Hz; here a median of 3.6 at
  500 Hz, 1.2 at 200 Hz).
- **Electrode pops**: one electrode only (no field), an abrupt step of 50-500 µV (log-uniform)
  decaying exponentially with a time constant of 0.1-1 s; 70 % of a recording's pops are on one
  loose electrode.
- **Drift**: below 0.1 Hz, different on every electrode.
- **Mains**: 50/60 Hz with 2nd (5-30 %) and 3rd (10-40 %) harmonics, its amplitude on every
  electrode set by that electrode's impedance (log-normal spread) and slowly modulated.
- **ECG** with heart-rate variability, reaching the scalp and the reference at about 1-45 µV
  (log-uniform over recordings: some show the pulse-locked sharp transients on every channel
  that a reviewer must not read as GPDs, as PhysioNet EEGMMI S001 does), and **photic** flash
  trains with occipital driving.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.simulate.background import TOPOGRAPHIES, smooth_intervals
from eegfm.simulate.patterns import event_train, smoothstep
from eegfm.simulate.sites import SiteProfile

N_CHANS = len(CANONICAL_CHANNELS)
PHOTIC_FREQUENCIES = (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 25)
PHOTIC_TRAIN_S, PHOTIC_GAP_S, PHOTIC_PULSE_S = 10.0, 5.0, 0.02
BLINK_PEAK_S = 0.12
SACCADE_S = 0.05
MUAP_RATE = 2000.0  # muscle is synthesized at about this rate, then anti-aliased


def _field(weights: dict[str, float]) -> np.ndarray:
    return np.array([weights.get(c, 0.0) for c in CANONICAL_CHANNELS])


# Blink amplitude relative to Fp1/Fp2 (median over 85 blinks of PhysioNet EEGMMI S001, rounded).
BLINK_FIELD = _field(
    {"Fp1": 1.0, "Fp2": 1.0, "F3": 0.4, "F4": 0.4, "Fz": 0.4, "F7": 0.42, "F8": 0.42, "C3": 0.15, "C4": 0.15}
    | {"Cz": 0.15, "T3": 0.12, "T4": 0.12, "P3": 0.05, "P4": 0.05, "Pz": 0.05, "T5": 0.05, "T6": 0.05}
    | {"O1": 0.02, "O2": 0.02}
)
# A gaze to the left (positive amplitude): positive on the left of the eyes, negative on the right.
EYE_MOVEMENT_FIELD = _field(
    {"F7": 1.0, "F8": -1.0, "Fp1": 0.35, "Fp2": -0.35, "F3": 0.2, "F4": -0.2, "T3": 0.25, "T4": -0.25}
)
# Where temporalis and frontalis motor units lie, by side (channels and relative density).
MUSCLE_SITES = {
    "left": (("F7", 1.0), ("T3", 1.0), ("T5", 0.5), ("Fp1", 0.5), ("F3", 0.2)),
    "right": (("F8", 1.0), ("T4", 1.0), ("T6", 0.5), ("Fp2", 0.5), ("F4", 0.2)),
}


@dataclasses.dataclass(frozen=True)
class MuscleBurst:
    start_s: float
    duration_s: float
    side: str  # 'left', 'right' or 'both'
    amplitude_uv: float  # RMS at the most affected electrode
    seed: int


@dataclasses.dataclass(frozen=True)
class Pop:
    time_s: float
    channel: int
    amplitude_uv: float
    decay_s: float


@dataclasses.dataclass(frozen=True)
class EyeMovement:
    time_s: float
    hold_s: float
    amplitude_uv: float  # at F7; positive: a gaze to the left


@dataclasses.dataclass(frozen=True)
class ArtifactPlan:
    """Every artifact event of one recording, in absolute seconds and microvolts."""

    blink_times: np.ndarray
    blink_amplitudes: np.ndarray
    blink_scales: np.ndarray  # duration of each blink relative to blink_kernel's (0.7-1.1)
    eye_movements: tuple[EyeMovement, ...]
    muscle: tuple[MuscleBurst, ...]
    pops: tuple[Pop, ...]
    drift_freqs: np.ndarray  # (3,)
    drift_phases: np.ndarray  # (3,)
    drift_weights: np.ndarray  # (19, 3) microvolts
    line_freq: float
    line_amplitudes: np.ndarray  # (19,)
    line_phases: np.ndarray  # (19,)
    line_harmonics: tuple[tuple[int, float], ...]  # (multiple, amplitude relative to the fundamental)
    beat_times: np.ndarray
    ecg_amplitude_uv: float
    # How strongly the heart reaches the scalp and the reference, relative to a faint 3 uV: log-uniform
    # 0.3-15, so some recordings show the 10-50 uV pulse-locked sharp transients that mimic GPDs.
    ecg_scalp_gain: float
    photic_trains: tuple[tuple[float, float, float], ...]  # (start, end, flash Hz)

    def counts(self) -> dict[str, int]:
        return {
            "blinks": int(len(self.blink_times)),
            "eye_movements": len(self.eye_movements),
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
    open_intervals: tuple[tuple[float, float], ...] | None = None,
) -> ArtifactPlan:
    """Draw all artifact events of one recording at ``site``: its rates, drift, mains, photic
    stimulation if it records a photic channel, pops on the electrodes it records. Blinks and eye
    movements are rarer during sleep-like periods and, when ``open_intervals`` (eyes-open blocks)
    are given, with the eyes closed (15 % of blinks, 10 % of eye movements kept)."""
    recorded = tuple(i for i, c in enumerate(CANONICAL_CHANNELS) if c not in site.missing_channels)
    blinks = _awake_events(
        rng,
        poisson_times(rng, duration_s, site.blink_rate_per_min, min_gap_s=0.8),
        sleep_intervals,
        open_intervals,
        closed_keep=0.15,
    )
    gazes = _awake_events(
        rng,
        poisson_times(rng, duration_s, 0.5 * site.blink_rate_per_min, min_gap_s=3.0),
        sleep_intervals,
        open_intervals,
        closed_keep=0.1,
    )
    eye_movements = tuple(
        EyeMovement(
            time_s=round(float(g), 4),
            hold_s=round(float(rng.uniform(0.4, 2.0)), 4),
            amplitude_uv=round(float(rng.choice((-1.0, 1.0)) * rng.uniform(20.0, 80.0)), 3),
        )
        for g in gazes
    )
    muscle = tuple(
        MuscleBurst(
            start_s=round(float(s), 4),
            duration_s=round(float(rng.uniform(0.3, 2.5)), 4),
            side=str(rng.choice(("left", "right", "both"))),
            amplitude_uv=round(float(rng.uniform(8.0, 35.0)), 3),
            seed=int(rng.integers(2**31)),
        )
        for s in poisson_times(rng, duration_s, site.muscle_rate_per_min)
    )
    loose = int(rng.choice(recorded))  # the electrode most pops come from
    pops = tuple(
        Pop(
            time_s=round(float(s), 4),
            channel=loose if rng.random() < 0.7 else int(rng.choice(recorded)),
            amplitude_uv=round(float(rng.choice((-1.0, 1.0)) * np.exp(rng.uniform(np.log(50.0), np.log(500.0)))), 3),
            decay_s=round(float(rng.uniform(0.1, 1.0)), 4),
        )
        for s in poisson_times(rng, duration_s, site.pop_rate_per_min)
    )
    return ArtifactPlan(
        blink_times=blinks,
        blink_amplitudes=np.clip(120.0 * rng.lognormal(0.0, 0.45, len(blinks)), 40.0, 450.0),
        blink_scales=rng.uniform(0.7, 1.1, len(blinks)),
        eye_movements=eye_movements,
        muscle=muscle,
        pops=pops,
        drift_freqs=rng.uniform(0.008, 0.06, 3),
        drift_phases=rng.uniform(0, 2 * np.pi, 3),
        drift_weights=site.drift_uv * rng.uniform(-1.0, 1.0, (N_CHANS, 3)) / np.sqrt(3),
        line_freq=site.line_freq,
        line_amplitudes=site.line_noise_uv * rng.lognormal(0.0, 0.6, N_CHANS),
        line_phases=rng.uniform(-0.3, 0.3, N_CHANS) + float(rng.uniform(0, 2 * np.pi)),
        line_harmonics=((1, 1.0), (2, float(rng.uniform(0.05, 0.3))), (3, float(rng.uniform(0.1, 0.4)))),
        beat_times=heartbeat_times(rng, duration_s),
        ecg_amplitude_uv=float(rng.uniform(600.0, 1500.0)),
        ecg_scalp_gain=float(np.exp(rng.uniform(np.log(0.3), np.log(15.0)))),
        photic_trains=photic_trains(rng, duration_s) if "photic" in site.aux_channels else (),
    )


def _awake_events(
    rng: np.random.Generator,
    times: np.ndarray,
    sleep_intervals: tuple[tuple[float, float], ...],
    open_intervals: tuple[tuple[float, float], ...] | None,
    closed_keep: float,
) -> np.ndarray:
    """The eye events of ``times`` kept: 10 % in sleep, ``closed_keep`` with the eyes closed."""
    keep = 1.0 - 0.9 * smooth_intervals(times, np.array(sleep_intervals), ramp_s=20.0)
    if open_intervals is not None:
        is_open = np.zeros(len(times), dtype=bool)
        for start, end in open_intervals:
            is_open |= (times >= start) & (times < end)
        keep = keep * np.where(is_open, 1.0, closed_keep)
    return times[rng.random(len(times)) < keep]


def blink_kernel(tau: np.ndarray) -> np.ndarray:
    """A blink: rises in ~0.1 s, 0.2 s wide at half its peak, 0.39 s at 10 %; peak 1 at
    ``BLINK_PEAK_S``."""
    x = np.maximum(tau, 0.0) / BLINK_PEAK_S
    return x * x * np.exp(2.0 - 2.0 * x)


def blink_signal(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    """(n,) blink waveform at Fp1/Fp2 in microvolts: each blink the kernel stretched by its scale."""
    out = np.zeros(len(t))
    if len(t) == 0 or len(plan.blink_times) == 0:
        return out
    after = 8.0 * BLINK_PEAK_S * float(np.max(plan.blink_scales))
    first = np.searchsorted(plan.blink_times, t[0] - after)
    last = np.searchsorted(plan.blink_times, t[-1], side="right")
    for k in range(first, last):
        tau = t - plan.blink_times[k]
        mask = (tau >= 0.0) & (tau < after)
        out[mask] += plan.blink_amplitudes[k] * blink_kernel(tau[mask] / plan.blink_scales[k])
    return out


def eye_movement_signal(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    """(n,) lateral eye movements at F7 (µV): saccade, fixation, saccade back."""
    out = np.zeros(len(t))
    for move in plan.eye_movements:
        if len(t) == 0 or move.time_s > t[-1] or move.time_s + move.hold_s + SACCADE_S < t[0]:
            continue
        tau = t - move.time_s
        out += move.amplitude_uv * (smoothstep(tau / SACCADE_S) - smoothstep((tau - move.hold_s) / SACCADE_S))
    return out


def render_blinks(t: np.ndarray, plan: ArtifactPlan) -> np.ndarray:
    """(19, n) eye artifacts at the scalp: blinks and lateral eye movements."""
    return np.outer(BLINK_FIELD, blink_signal(t, plan)) + np.outer(EYE_MOVEMENT_FIELD, eye_movement_signal(t, plan))


@lru_cache(maxsize=16)
def _muscle_highpass(sfreq: float) -> np.ndarray:
    return signal.butter(4, min(20.0, 0.4 * sfreq), btype="highpass", fs=sfreq, output="sos")


def _motor_unit_train(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """(n,) one motor unit's action potentials at ``rate`` (samples per second of the train):
    firing at 8-25 Hz with 15 % interval jitter, a bi- or triphasic potential 1.5-3.5 ms wide."""
    fire_hz = float(rng.uniform(8.0, 25.0))
    count = int(n / rate * fire_hz) + 2
    times = float(rng.uniform(0, 1.0 / fire_hz)) + np.cumsum(rng.normal(1.0, 0.15, count).clip(0.5) / fire_hz)
    impulses = np.zeros(n)
    idx = np.round(times * rate).astype(int)
    impulses[idx[idx < n]] = 1.0
    sigma = float(rng.uniform(1.5, 3.5)) * 1e-3 * rate
    x = np.arange(-int(5 * sigma), int(5 * sigma) + 1) / sigma
    if rng.random() < 0.5:
        shape = -x * np.exp(-0.5 * x**2)  # biphasic
    else:
        shape = (1.0 - x**2) * np.exp(-0.5 * x**2)  # triphasic
    return np.convolve(impulses, shape, mode="same")


def _muscle_waveform(burst: MuscleBurst, sfreq: float) -> np.ndarray:
    """(20, samples) of one burst (19 EEG + chin EMG): the summed motor-unit potentials of 10
    scalp units near the temporalis/frontalis electrodes of its side(s) and 5 chin units, each
    electrode seeing the units within a few centimetres; anti-aliased, high-passed at 20 Hz and
    tapered. Seeded per burst, so a burst cut by a chunk boundary renders identically."""
    rng = np.random.default_rng(burst.seed)
    n = int(round(burst.duration_s * sfreq))
    factor = max(1, int(np.ceil(MUAP_RATE / sfreq)))
    fine = n * factor + 2 * factor
    sites = [s for side in ("left", "right") if burst.side in (side, "both") for s in MUSCLE_SITES[side]]
    density = np.array([d for _, d in sites])
    pos = canonical_positions()
    mixing = np.zeros((N_CHANS + 1, 15))
    for u in range(10):
        name = sites[int(rng.choice(len(sites), p=density / density.sum()))][0]
        dist = np.linalg.norm(pos - pos[CANONICAL_CHANNELS.index(name)], axis=1)
        mixing[:N_CHANS, u] = rng.lognormal(0.0, 1.0) * np.exp(-0.5 * (dist / 0.25) ** 2)
    mixing[N_CHANS, 10:] = rng.lognormal(0.0, 0.5, 5)
    trains = np.stack([_motor_unit_train(rng, fine, sfreq * factor) for _ in range(15)])
    waves = signal.resample_poly(mixing @ trains, 1, factor, axis=-1)[:, 1 : n + 1]
    waves = signal.sosfilt(_muscle_highpass(float(sfreq)), waves, axis=-1)
    scalp_rms = waves[:N_CHANS].std(axis=-1).max() + 1e-12
    waves[:N_CHANS] /= scalp_rms
    waves[N_CHANS] /= waves[N_CHANS].std() + 1e-12
    return burst.amplitude_uv * signal.windows.tukey(n, alpha=0.3) * waves


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
    """Electrode pops (19, n), added to ``out`` if given: a step on one electrode decaying
    exponentially."""
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
    harmonics = [(h, rel) for h, rel in plan.line_harmonics if h * plan.line_freq < 0.45 * sfreq]
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
