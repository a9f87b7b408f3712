"""The six HMS classes as pure functions of absolute time, following the ACNS Standardized Critical
Care EEG Terminology (Hirsch et al., J Clin Neurophysiol 2021;38:1-29).

Each pattern is ``f(t) -> (19, n)`` microvolts at the scalp (before any reference), every random
choice fixed beforehand in an :class:`Episode` by :func:`draw_episode`, so rendering in chunks
equals rendering at once. Amplitudes are peak-to-trough at the field maximum and grow linearly
with the episode's ``strength`` (0..1; :mod:`~simulate.votes` makes raters agree more
on strong episodes), times a per-episode factor of 0.85-1.15.

- **Seizure** (ACNS electrographic seizure: epileptiform discharges averaging >2.5 Hz for >=10 s,
  or any pattern with definite evolution lasting >=10 s; evolution = unequivocal sequential
  changes in frequency, morphology or location). Episodes last >=50 s (plan.py) and evolve in all
  three: onset either as low-voltage fast activity (35 %: 15-25 Hz, 15-40 µV, 1-3 s, confined to
  the focus) followed by a rhythm, or as a rhythm building up directly; the rhythm starts at
  theta/alpha (4.5-9 Hz) and slows toward 2.6-4 Hz (never <=2.5 Hz, so the >2.5 Hz criterion
  holds throughout) with a time constant of 25-40 % of the duration; it grows from 20-35 % to
  100 % of 100-500 µV (clinical ictal amplitudes), and turns from sinusoidal into spike-and-wave
  (surface-negative spike of ~20-70 ms, then a slow wave) over the middle of the seizure. The
  field starts over the focus and its neighbours (radius 0.25-0.4 on the unit head sphere,
  neighbouring 10-20 electrodes are 0.5-0.8 apart) and spreads at 0.08-0.2 per second with a
  Gaussian fall-off (width 0.8-1.2); 40 % generalize (the contralateral floor reaches 35-60 %).
  Seizures of >=90 s end 6-15 s before the episode does, followed by post-ictal polymorphic delta
  (0.5-2 Hz); labeled window centres never fall in the last 20 s of an episode (plan.py).
- **LPD** / **GPD** (ACNS periodic discharges: relatively uniform morphology and duration, a
  clearly discernible inter-discharge interval, recurring at nearly regular intervals, period
  varying <50 % between consecutive cycles; >=6 cycles): discharges at 0.5-2.5 Hz (PDs averaging
  >2.5 Hz for >=10 s would qualify as a seizure), interval jitter 3-10 % of the period (at most
  60 ms),
  discharge-to-discharge amplitude variation of ~10 %. Morphology: a sharp wave or spike with a
  main phase of 60-200 ms at its base (ACNS sharpness: spiky <70 ms, sharp 70-200 ms),
  biphasic (surface-negative, then a smaller positive phase) or triphasic (ACNS: 2-3 phases, each
  longer than the previous, the positive phase highest; 50 % of GPDs, 15 % of LPDs), with an
  after-going slow wave in half the episodes and the "+F" modifier (superimposed 12-20 Hz fast
  activity) in 20 % of LPDs. Amplitude 50-300 µV (ACNS medium 50-199, high >=200 µV). LPDs are
  lateralized (ACNS: unilateral, or bilateral synchronous but asymmetric: a contralateral
  homologous field of <=30 % in 30 % of episodes); GPDs bilateral, symmetric and synchronous,
  frontally predominant in 80 % (anterior >=50 % above posterior, ACNS "frontally predominant"),
  midline predominant (parasagittal >=2x the temporal chain) in the others.
- **LRDA** / **GRDA** (ACNS rhythmic delta activity: rhythmic activity >0.5 to <=4 Hz, uniform
  morphology and duration with no interval between waves, >=6 cycles): 1.0-2.75 Hz (the typical
  LRDA/GRDA range; GRDA includes FIRDA at 1.5-2.5 Hz), sharply contoured in part (a 2nd harmonic
  of 10-35 %), frequency wandering by <=0.1 Hz and amplitude waxing and waning by <=40 %.
  Amplitude 50-150 µV. Lateralized (same fields as LPDs) or generalized (as GPDs; FIRDA-like).
- **Other**: none of the above (background, sleep, artifacts only); renders nothing.

Fields are Gaussian in the distance on the unit head sphere from the focus (a smooth fall-off
over neighbouring electrodes, 1 at the focus); generalized fields are left-right symmetric and
lower over the temporal chain than parasagittally. The waveforms live in
:mod:`~simulate.waveforms`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.simulate.waveforms import (  # noqa: F401 (re-exported)
    discharge_waves,
    rhythmic_delta,
    seizure_frequency,
    seizure_phase,
    seizure_wave,
    wavelet_support,
    wavelets,
)

N_CHANS = len(CANONICAL_CHANNELS)
_POS = canonical_positions()
# Where lateralized patterns and focal seizures are centred (frontal, central, temporal, parietal).
LEFT_FOCI = ("F7", "T3", "F3", "C3", "T5", "P3")
RIGHT_FOCI = ("F8", "T4", "F4", "C4", "T6", "P4")
EPISODE_RAMP_S = 3.0  # onset/offset taper of non-seizure patterns
# Peak-to-trough amplitude ranges (µV at the field maximum), spanned by strength 0..1.
PD_AMPLITUDE_UV = (50.0, 300.0)
RDA_AMPLITUDE_UV = (50.0, 150.0)
SEIZURE_AMPLITUDE_UV = (100.0, 500.0)
PD_RATE_HZ = (0.5, 2.5)
RDA_FREQ_HZ = (1.0, 2.75)
SEIZURE_END_HZ = (2.6, 4.0)
_SUMMARIZED = ("discharge_times", "discharge_gains")  # long lists reported as a count


@dataclasses.dataclass(frozen=True)
class Episode:
    """One stretch of a recording generated as one class.

    ``side`` is 'left', 'right', 'bilateral' (GPD, GRDA) or None (Other); ``focus`` the channel at
    the centre of a lateralized pattern or where a seizure starts; ``params`` the class-specific
    numbers, reported in truth.jsonl.
    """

    cls: str
    start_s: float
    end_s: float
    strength: float
    side: str | None = None
    focus: str | None = None
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def summary(self) -> dict:
        """A JSON-ready description (per-discharge times and gains are counted, not listed)."""
        params = {k: v for k, v in self.params.items() if k not in _SUMMARIZED}
        if "discharge_times" in self.params:
            params["n_discharges"] = len(self.params["discharge_times"])
        return {
            "class": self.cls,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "strength": round(self.strength, 4),
            "hemisphere": self.side,
            "focus": self.focus,
            "params": _jsonable(params),
        }


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def distances_from(focus: str) -> np.ndarray:
    """(19,) unit-sphere distance of every channel from ``focus``."""
    return np.linalg.norm(_POS - _POS[CANONICAL_CHANNELS.index(focus)], axis=1)


def focal_topography(focus: str, width: float = 0.55, floor: float = 0.0) -> np.ndarray:
    """(19,) Gaussian fall-off with unit-sphere distance from ``focus`` (1 at the focus)."""
    return floor + (1.0 - floor) * np.exp(-0.5 * (distances_from(focus) / width) ** 2)


def lateralized_topography(focus: str, width: float, contralateral: float = 0.0) -> np.ndarray:
    """(19,) a focal field plus, for bilateral asymmetric patterns, ``contralateral`` times the same
    field mirrored onto the other hemisphere; maximum 1."""
    mirror = _POS[CANONICAL_CHANNELS.index(focus)] * np.array([-1.0, 1.0, 1.0])
    dist = np.linalg.norm(_POS - mirror, axis=1)
    weights = focal_topography(focus, width) + contralateral * np.exp(-0.5 * (dist / width) ** 2)
    return weights / weights.max()


def generalized_topography(frontal_bias: float = 0.5, lateral_drop: float = 0.25) -> np.ndarray:
    """(19,) left-right symmetric weights, largest frontally when ``frontal_bias`` > 0 and lower
    toward the ears by ``lateral_drop``; maximum 1."""
    x, front = _POS[:, 0], _POS[:, 1]  # x to the right ear, y to the nose
    weights = (1.0 + frontal_bias * front) * (1.0 - lateral_drop * x**2)
    return weights / weights.max()


def taper(t: np.ndarray, start: float, end: float, ramp: float = EPISODE_RAMP_S) -> np.ndarray:
    """Raised-cosine on/off envelope: 0 outside [start, end], 1 inside after ``ramp`` seconds."""
    x = np.clip(np.minimum(t - start, end - t) / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def scaled_amplitude(rng: np.random.Generator, strength: float, bounds: tuple[float, float]) -> float:
    """Peak-to-trough µV: ``bounds`` spanned by ``strength``, times 0.85-1.15, kept in ``bounds``."""
    low, high = bounds
    value = (low + (high - low) * float(np.clip(strength, 0.0, 1.0))) * float(rng.uniform(0.85, 1.15))
    return float(np.clip(value, low, high))


def event_train(
    t: np.ndarray,
    times: np.ndarray,
    kernel: Callable[[np.ndarray], np.ndarray],
    *,
    before_s: float,
    after_s: float,
    amplitudes: np.ndarray | None = None,
) -> np.ndarray:
    """Sum of ``amplitude_k * kernel(t - times[k])`` for kernels supported on ``[-before_s, after_s]``
    (``times`` sorted). Only events overlapping ``t`` are evaluated, so chunking does not matter."""
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros_like(t)
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0 or len(t) == 0:
        return out
    first = np.searchsorted(times, t[0] - after_s, side="left")
    last = np.searchsorted(times, t[-1] + before_s, side="right")
    if last <= first:
        return out
    times = times[first:last]
    amps = None if amplitudes is None else np.asarray(amplitudes, dtype=np.float64)[first:last]
    # For every sample, the range [lo, hi) of events covering it; loop over the few that overlap.
    lo = np.searchsorted(times, t - after_s, side="left")
    hi = np.searchsorted(times, t + before_s, side="right")
    for j in range(int((hi - lo).max())):
        idx = lo + j
        mask = idx < hi
        if not mask.any():
            continue
        k = idx[mask]
        values = kernel(t[mask] - times[k])
        out[mask] += values if amps is None else amps[k] * values
    return out


def render_rhythmic_delta(episode: Episode, t: np.ndarray) -> np.ndarray:
    """LRDA (lateralized field) or GRDA (generalized field), waxing and waning."""
    p = episode.params
    wave = rhythmic_delta(t, p["freq_hz"], p["phase"], p["wander_rad"], p["harmonic"])
    wax = 1.0 - p["wax_depth"] * (0.5 - 0.5 * np.cos(2 * np.pi * t / p["wax_period_s"] + p["phase"]))
    wave *= wax * taper(t, episode.start_s, episode.end_s)
    return np.outer(p["amplitude_uv"] * np.asarray(p["topography"]), wave)


def render_periodic_discharges(episode: Episode, t: np.ndarray) -> np.ndarray:
    """LPD or GPD: the episode's discharge waveform at the planned times, with per-discharge gains."""
    p = episode.params
    waves = p["waves"]
    before, after = wavelet_support(waves)
    train = event_train(
        t,
        np.asarray(p["discharge_times"]),
        lambda tau: wavelets(tau, waves),
        before_s=before,
        after_s=after,
        amplitudes=np.asarray(p["discharge_gains"]),
    )
    train *= taper(t, episode.start_s, episode.end_s, ramp=1.0)
    return np.outer(p["amplitude_uv"] * np.asarray(p["topography"]), train)


def seizure_field(episode: Episode, tau: np.ndarray) -> np.ndarray:
    """(19, n) weight of every channel ``tau`` seconds into the seizure: recruited when the spreading
    front (``onset_radius`` + ``spread_speed`` * tau) passes it, Gaussian fall-off from the focus,
    a contralateral floor when the seizure generalizes."""
    p = episode.params
    dist = distances_from(episode.focus)
    delays = np.maximum(dist - p["onset_radius"], 0.0) / p["spread_speed"]
    recruited = smoothstep((tau[None, :] - delays[:, None]) / p["recruit_s"])
    falloff = np.maximum(np.exp(-0.5 * (dist / p["field_width"]) ** 2), p["generalized_floor"])
    return recruited * falloff[:, None]


def render_seizure(episode: Episode, t: np.ndarray) -> np.ndarray:
    """Onset (low-voltage fast or rhythmic), an evolving rhythm spreading from the focus, and
    optional post-ictal delta; see the module docstring for the ranges."""
    p = episode.params
    tau = t - episode.start_s
    rhythm_tau = tau - p["rhythm_start_s"]
    ictal_s = episode.duration_s - p["postictal_s"]
    phase = seizure_phase(rhythm_tau, p["f_start_hz"], p["f_end_hz"], p["freq_time_constant_s"])
    spikiness = p["spikiness"] * smoothstep((tau - 0.25 * ictal_s) / (0.4 * ictal_s))
    growth = p["initial_fraction"] + (1.0 - p["initial_fraction"]) * smoothstep(rhythm_tau / (0.6 * ictal_s))
    envelope = growth * smoothstep(rhythm_tau / 1.5) * (1.0 - smoothstep((tau - ictal_s + 1.5) / 1.5))
    out = seizure_field(episode, tau) * (p["amplitude_uv"] * envelope * seizure_wave(phase, spikiness))[None, :]
    if p["onset"] == "lvfa":
        lvfa_env = smoothstep(tau / 0.5) * (1.0 - smoothstep((tau - p["rhythm_start_s"]) / 1.0))
        lvfa = 0.5 * p["lvfa_uv"] * lvfa_env * np.sin(2 * np.pi * p["lvfa_hz"] * tau)
        out += np.outer(focal_topography(episode.focus, p["onset_radius"] + 0.1), lvfa)
    if p["postictal_s"] > 0:
        after = tau - ictal_s
        slow = sum(np.sin(2 * np.pi * f * after + ph) for f, ph in zip(p["postictal_hz"], p["postictal_phase"]))
        gate = smoothstep(after / 1.5) * np.exp(-np.maximum(after, 0.0) / 20.0)
        weights = np.exp(-0.5 * (distances_from(episode.focus) / p["field_width"]) ** 2)
        out += np.outer(p["postictal_uv"] * weights, gate * slow / 3.0)
    return out


# "Other" has no renderer: it is background, sleep and artifacts only.
RENDERERS: dict[str, Callable[[Episode, np.ndarray], np.ndarray]] = {
    "Seizure": render_seizure,
    "LPD": render_periodic_discharges,
    "GPD": render_periodic_discharges,
    "LRDA": render_rhythmic_delta,
    "GRDA": render_rhythmic_delta,
}


def render_episodes(episodes: Sequence[Episode], t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sum of all episodes overlapping the sample times ``t`` (19, n), added to ``out`` if given."""
    out = np.zeros((N_CHANS, len(t))) if out is None else out
    if len(t) == 0:
        return out
    for episode in episodes:
        if episode.cls == "Other" or episode.end_s <= t[0] or episode.start_s > t[-1]:
            continue
        inside = (t >= episode.start_s) & (t < episode.end_s)
        lo, hi = np.flatnonzero(inside)[[0, -1]]
        out[:, lo : hi + 1] += RENDERERS[episode.cls](episode, t[lo : hi + 1])
    return out


def draw_episode(
    rng: np.random.Generator,
    cls: str,
    start_s: float,
    end_s: float,
    strength: float,
    recorded: tuple[str, ...] = CANONICAL_CHANNELS,
) -> Episode:
    """Random parameters for one episode of ``cls`` (amplitudes scale with ``strength``); foci are
    drawn among ``recorded`` channels, so the truth never names an electrode missing from the file."""
    side = str(rng.choice(("left", "right")))
    foci = LEFT_FOCI if side == "left" else RIGHT_FOCI
    focus = str(rng.choice([c for c in foci if c in recorded] or foci))
    if cls == "Other":
        return Episode(cls, start_s, end_s, strength)
    if cls in ("LRDA", "GRDA"):
        params = _rda_params(rng, strength)
    elif cls in ("LPD", "GPD"):
        params = _pd_params(rng, cls, start_s, end_s, strength)
    elif cls == "Seizure":
        return Episode("Seizure", start_s, end_s, strength, side, focus, _seizure_params(rng, start_s, end_s, strength))
    else:
        raise ValueError(f"cls: expected one of {', '.join(RENDERERS)}, Other; got {cls!r}")
    if cls in ("LRDA", "LPD"):  # lateralized: unilateral, or bilateral asymmetric
        contralateral = float(rng.uniform(0.1, 0.3)) if rng.random() < 0.3 else 0.0
        width = float(rng.uniform(0.4, 0.65))
        params.update(field_width=width, contralateral=contralateral)
        params["topography"] = lateralized_topography(focus, width, contralateral).tolist()
        return Episode(cls, start_s, end_s, strength, side, focus, params)
    if rng.random() < 0.8:  # frontally predominant
        frontal, lateral = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.1, 0.35))
    else:  # midline predominant
        frontal, lateral = float(rng.uniform(0.05, 0.25)), float(rng.uniform(0.5, 0.7))
    params.update(frontal_bias=frontal, lateral_drop=lateral)
    params["topography"] = generalized_topography(frontal, lateral).tolist()
    return Episode(cls, start_s, end_s, strength, "bilateral", None, params)


def _rda_params(rng: np.random.Generator, strength: float) -> dict:
    return {
        "freq_hz": float(rng.uniform(*RDA_FREQ_HZ)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "wander_rad": float(rng.uniform(0.2, 1.4)),
        "harmonic": float(rng.uniform(0.1, 0.35)),
        "wax_depth": float(rng.uniform(0.0, 0.4)),
        "wax_period_s": float(rng.uniform(4.0, 12.0)),
        "amplitude_uv": scaled_amplitude(rng, strength, RDA_AMPLITUDE_UV),
    }


def _pd_params(rng: np.random.Generator, cls: str, start_s: float, end_s: float, strength: float) -> dict:
    rate = float(rng.uniform(*PD_RATE_HZ))
    jitter = min(float(rng.uniform(0.03, 0.1)), 0.06 * rate)  # at most 60 ms of interval jitter
    lateral = cls == "LPD"
    max_extent = 0.6 * 0.7 / rate  # 60 % of the shortest interval (0.7 periods)
    waves, morphology, plus = discharge_waves(
        rng, triphasic_p=0.15 if lateral else 0.5, plus_fast_p=0.2 if lateral else 0.0, max_extent_s=max_extent
    )
    times = discharge_times(rng, start_s, end_s, rate, jitter)
    return {
        "rate_hz": rate,
        "jitter": jitter,
        "morphology": morphology,
        "plus": plus,
        "waves": waves,
        "amplitude_uv": scaled_amplitude(rng, strength, PD_AMPLITUDE_UV),
        "discharge_times": times,
        "discharge_gains": [round(float(g), 4) for g in np.exp(0.1 * rng.standard_normal(len(times)))],
    }


def discharge_times(
    rng: np.random.Generator, start_s: float, end_s: float, rate_hz: float, jitter: float
) -> list[float]:
    """Discharge times at ``rate_hz`` with Gaussian period jitter (fraction of the period), each
    interval kept within 0.7-1.3 periods."""
    period = 1.0 / rate_hz
    n = int(np.ceil((end_s - start_s) * rate_hz)) + 2
    intervals = period * np.clip(1.0 + jitter * rng.standard_normal(n), 0.7, 1.3)
    first = start_s + float(rng.uniform(0.2, period))
    times = first + np.concatenate([[0.0], np.cumsum(intervals)[:-1]])
    return [round(float(x), 6) for x in times[times < end_s - 0.5]]


def _seizure_params(rng: np.random.Generator, start_s: float, end_s: float, strength: float) -> dict:
    duration = end_s - start_s
    lvfa = bool(rng.random() < 0.35)
    postictal = float(rng.uniform(6.0, min(15.0, 0.12 * duration))) if duration >= 90.0 and rng.random() < 0.6 else 0.0
    ictal = duration - postictal
    amplitude = scaled_amplitude(rng, strength, SEIZURE_AMPLITUDE_UV)
    return {
        "onset": "lvfa" if lvfa else "rhythmic",
        "lvfa_hz": float(rng.uniform(15.0, 25.0)) if lvfa else 0.0,
        "lvfa_uv": float(rng.uniform(15.0, 40.0)) if lvfa else 0.0,
        "rhythm_start_s": float(rng.uniform(1.0, 3.0)) if lvfa else 0.0,
        "f_start_hz": float(rng.uniform(4.5, 9.0)),
        "f_end_hz": float(rng.uniform(*SEIZURE_END_HZ)),
        "freq_time_constant_s": float(ictal * rng.uniform(0.25, 0.4)),
        "amplitude_uv": amplitude,
        "initial_fraction": float(rng.uniform(0.2, 0.35)),
        "spikiness": float(rng.uniform(0.5, 1.0)),
        "onset_radius": float(rng.uniform(0.25, 0.4)),
        "spread_speed": float(rng.uniform(0.08, 0.2)),  # unit-sphere distance per second
        "recruit_s": float(rng.uniform(2.0, 3.0)),
        "field_width": float(rng.uniform(0.8, 1.2)),
        "generalized_floor": float(rng.uniform(0.35, 0.6)) if rng.random() < 0.4 else 0.0,
        "postictal_s": postictal,
        "postictal_uv": 0.3 * amplitude if postictal else 0.0,
        "postictal_hz": rng.uniform(0.5, 2.0, 3).tolist(),
        "postictal_phase": rng.uniform(0, 2 * np.pi, 3).tolist(),
    }
