"""The six HMS classes as pure functions of absolute time (ACNS critical-care EEG terminology).

Each pattern is ``f(t) -> (19, n)`` microvolts, every random choice fixed beforehand in an
:class:`Episode`, so rendering in chunks equals rendering at once.

- **Seizure**: an evolving rhythm (frequency and amplitude change over seconds) starting around a
  focus and spreading to neighbours at a finite speed, generalizing in some episodes.
- **LPD** / **GPD**: periodic sharp waves at 0.5-2 Hz, over one hemisphere / bilateral and frontal.
- **LRDA** / **GRDA**: rhythmic delta at 0.5-3 Hz, over one hemisphere / bilateral and frontal.
- **Other**: none of the above (background, sleep, artifacts only); renders nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np

from eegfm.pipelines.channels import CANONICAL_CHANNELS, canonical_positions

N_CHANS = len(CANONICAL_CHANNELS)
_POS = canonical_positions()
# Where lateralized patterns and focal seizures are centred (frontal, central, temporal, parietal).
LEFT_FOCI = ("F7", "T3", "F3", "C3", "T5", "P3")
RIGHT_FOCI = ("F8", "T4", "F4", "C4", "T6", "P4")
EPISODE_RAMP_S = 3.0  # onset/offset taper of non-seizure patterns


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
        """A JSON-ready description (discharge times are summarized, not listed)."""
        params = {k: v for k, v in self.params.items() if k != "discharge_times"}
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


def focal_topography(focus: str, width: float = 0.55, floor: float = 0.0) -> np.ndarray:
    """(19,) Gaussian fall-off with unit-sphere distance from ``focus`` (1 at the focus)."""
    dist = np.linalg.norm(_POS - _POS[CANONICAL_CHANNELS.index(focus)], axis=1)
    return floor + (1.0 - floor) * np.exp(-0.5 * (dist / width) ** 2)


def generalized_topography(frontal_bias: float = 0.5) -> np.ndarray:
    """(19,) left-right symmetric weights, largest frontally when ``frontal_bias`` > 0."""
    front = _POS[:, 1]  # y axis points to the nose
    weights = 1.0 + frontal_bias * front
    return weights / weights.max()


def taper(t: np.ndarray, start: float, end: float, ramp: float = EPISODE_RAMP_S) -> np.ndarray:
    """Raised-cosine on/off envelope: 0 outside [start, end], 1 inside after ``ramp`` seconds."""
    x = np.clip(np.minimum(t - start, end - t) / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


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


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def sharp_wave(tau: np.ndarray, width_s: float) -> np.ndarray:
    """A periodic discharge: a sharp transient of peak -1 at ``tau`` = 0 (surface-negative),
    lasting about ``2 * width_s``, then a slow wave ~3 widths later with 40 % amplitude."""
    sharp = -np.exp(-0.5 * (tau / (0.5 * width_s)) ** 2)
    slow = 0.4 * np.exp(-0.5 * ((tau - 2.5 * width_s) / (1.3 * width_s)) ** 2)
    return sharp + slow


def rhythmic_delta(t: np.ndarray, freq: float, phase: float, wander: float = 0.4) -> np.ndarray:
    """Quasi-sinusoidal delta with a slightly sharpened crest and slow phase wander."""
    theta = 2 * np.pi * freq * t + phase + wander * np.sin(2 * np.pi * 0.031 * t + phase)
    return np.sin(theta) + 0.25 * np.sin(2 * theta + 0.5 * np.pi)


def seizure_phase(tau: np.ndarray, f_start: float, f_end: float, time_constant: float) -> np.ndarray:
    """Phase (radians) of a rhythm whose frequency relaxes from ``f_start`` to ``f_end``: the exact
    integral of :func:`seizure_frequency`, so the waveform is smooth however it is chunked."""
    tau = np.maximum(tau, 0.0)
    integral = f_end * tau + (f_start - f_end) * time_constant * (1.0 - np.exp(-tau / time_constant))
    return 2 * np.pi * integral


def seizure_frequency(tau: np.ndarray, f_start: float, f_end: float, time_constant: float) -> np.ndarray:
    return f_end + (f_start - f_end) * np.exp(-np.maximum(tau, 0.0) / time_constant)


def render_rhythmic_delta(episode: Episode, t: np.ndarray) -> np.ndarray:
    """LRDA (focal topography) or GRDA (generalized topography)."""
    p = episode.params
    wave = rhythmic_delta(t, p["freq_hz"], p["phase"]) * taper(t, episode.start_s, episode.end_s)
    return np.outer(p["amplitude_uv"] * np.asarray(p["topography"]), wave)


def render_periodic_discharges(episode: Episode, t: np.ndarray) -> np.ndarray:
    """LPD or GPD: a train of sharp waves at the planned discharge times."""
    p = episode.params
    width, times = p["discharge_width_s"], np.asarray(p["discharge_times"])
    train = event_train(t, times, functools.partial(sharp_wave, width_s=width), before_s=2 * width, after_s=7 * width)
    train *= taper(t, episode.start_s, episode.end_s, ramp=1.0)
    return np.outer(p["amplitude_uv"] * np.asarray(p["topography"]), train)


def render_seizure(episode: Episode, t: np.ndarray) -> np.ndarray:
    """An evolving rhythm that starts at the focus and spreads at a finite speed."""
    p = episode.params
    tau = t - episode.start_s
    phase = seizure_phase(tau, p["f_start_hz"], p["f_end_hz"], p["freq_time_constant_s"])
    progress = smoothstep(tau / (0.8 * episode.duration_s))
    # Later in a seizure the waves sharpen (spike-wave-like): add a phase-locked 2nd harmonic.
    wave = np.sin(phase) + 0.45 * progress * np.sin(2 * phase - 0.5 * np.pi)
    growth = p["initial_fraction"] + (1.0 - p["initial_fraction"]) * progress
    delays = np.asarray(p["onset_delay_s"])[:, None]
    recruited = smoothstep((tau[None, :] - delays) / p["recruit_s"])
    ending = taper(t, episode.start_s - 10.0, episode.end_s, ramp=2.0)
    envelope = recruited * (growth * ending)[None, :]
    return p["amplitude_uv"] * np.asarray(p["topography"])[:, None] * envelope * wave[None, :]


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
        params = {
            "freq_hz": float(rng.uniform(0.75, 2.5)),
            "phase": float(rng.uniform(0, 2 * np.pi)),
            "amplitude_uv": 35.0 + 95.0 * strength,
        }
    elif cls in ("LPD", "GPD"):
        rate = float(rng.uniform(0.5, 2.0))
        jitter = float(rng.uniform(0.02, 0.08))
        params = {
            "rate_hz": rate,
            "jitter": jitter,
            "discharge_width_s": float(rng.uniform(0.035, 0.07)),
            "amplitude_uv": 70.0 + 130.0 * strength,
            "discharge_times": discharge_times(rng, start_s, end_s, rate, jitter),
        }
    elif cls == "Seizure":
        return _draw_seizure(rng, start_s, end_s, strength, side, focus)
    else:
        raise ValueError(f"cls: expected one of {', '.join(RENDERERS)}, Other; got {cls!r}")
    if cls in ("LRDA", "LPD"):  # lateralized
        params["topography"] = focal_topography(focus, width=float(rng.uniform(0.5, 0.7))).tolist()
        return Episode(cls, start_s, end_s, strength, side, focus, params)
    params["topography"] = generalized_topography(float(rng.uniform(0.4, 0.8))).tolist()
    return Episode(cls, start_s, end_s, strength, "bilateral", None, params)


def discharge_times(
    rng: np.random.Generator, start_s: float, end_s: float, rate_hz: float, jitter: float
) -> list[float]:
    """Discharge times at ``rate_hz`` with Gaussian period jitter (fraction of the period)."""
    period = 1.0 / rate_hz
    n = int(np.ceil((end_s - start_s) * rate_hz)) + 2
    intervals = period * np.clip(1.0 + jitter * rng.standard_normal(n), 0.7, 1.3)
    first = start_s + float(rng.uniform(0.2, period))
    times = first + np.concatenate([[0.0], np.cumsum(intervals)[:-1]])
    return [round(float(x), 6) for x in times[times < end_s - 0.5]]


def _draw_seizure(
    rng: np.random.Generator, start_s: float, end_s: float, strength: float, side: str, focus: str
) -> Episode:
    duration = end_s - start_s
    if rng.random() < 0.7:  # the classic course: low-voltage fast onset, then slower and larger
        evolution, f_start, f_end = "slowing", float(rng.uniform(7.0, 11.0)), float(rng.uniform(2.5, 4.0))
    else:  # rhythmic delta onset that accelerates into theta
        evolution, f_start, f_end = "accelerating", float(rng.uniform(1.5, 2.5)), float(rng.uniform(5.0, 7.0))
    generalizes = bool(rng.random() < 0.5)
    speed = float(rng.uniform(0.08, 0.2))  # unit-sphere distance per second
    dist = np.linalg.norm(_POS - _POS[CANONICAL_CHANNELS.index(focus)], axis=1)
    topo = focal_topography(focus, width=0.8, floor=0.3 if generalizes else 0.05)
    params = {
        "evolution": evolution,
        "f_start_hz": f_start,
        "f_end_hz": f_end,
        "freq_time_constant_s": float(duration * rng.uniform(0.25, 0.4)),
        "amplitude_uv": 80.0 + 160.0 * strength,
        "initial_fraction": float(rng.uniform(0.25, 0.4)),
        "spread_speed": speed,
        "generalizes": generalizes,
        "recruit_s": 2.0,
        "onset_delay_s": (dist / speed).tolist(),
        "topography": topo.tolist(),
    }
    return Episode("Seizure", start_s, end_s, strength, side, focus, params)
