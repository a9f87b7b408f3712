"""Ongoing background EEG fitted to real recordings: 1/f activity, posterior alpha, states.

The background of one recording is the sum of

- **broadband 1/f activity**: white noise shaped to 1/f**``exponent`` and mixed across channels
  so that the correlation of two electrodes falls with their distance, exp(-d / ``spatial_length``)
  (volume conduction), before the recording's reference is applied (``render``);
- a **posterior dominant (alpha) rhythm** at ``alpha_freq`` that waxes and wanes, present with the
  eyes closed and mostly blocked while they are open (``open_intervals``);
- **theta**, a little while awake and more in **drowsy** stretches (``drowsy_intervals``: alpha
  drops out, theta rises);
- **sleep-like** stretches (``sleep_intervals``): alpha gone, frontocentral delta, theta and
  central sleep spindles (``spindle_times``);
- in some people, continuous **polymorphic delta slowing** (``slowing_uv``), generalized or worse
  over one hemisphere (``slowing_sides``): irregular delta of varying shape, the commonest abnormal
  background in critical care. ACNS 2021 keeps it apart from rhythmic delta (LRDA, GRDA), whose
  waves repeat with uniform shape and no gap, so a model must not read delta power as RDA.

Amplitudes and the distributions :func:`~simulate.plan.plan_background` draws were set
so that the statistics of the pipeline's preprocessed windows (:mod:`~simulate.realism`)
fall inside the range real corpora span. Measured with ``eegfm-realism`` (process_recording
windows, 10 s at 256 Hz, recordings' own references; value = median over files [min, max]):

=====================  =================  =================  ===============  ======  ===========
statistic              eegmat rest (32)   eegmat task (32)   eegmmi (2, EO)   hms (1) nihonkohden
=====================  =================  =================  ===============  ======  ===========
median |µV|            6.7 [4.4, 10.1]    6.3 [4.1, 8.9]     31.1 [31, 31.3]  9.7     10.9
95th pct |µV|          20.7 [13.8, 32.8]  18.7 [12.6, 26.2]  97 [95, 99]      31.3    97
1/f slope              -1.70 [-2.0, -1.2] -1.67 [-2.1, -1.1] -1.57            -0.44   -2.39
delta / theta share    0.33 / 0.16        0.43 / 0.17        0.64 / 0.15      0.51/.09 0.84/.12
alpha / beta share     0.35 / 0.13        0.24 / 0.12        0.09 / 0.11      0.07/.33 0.03/.02
corr near/mid/far      .74 / .59 / .34    .69 / .57 / .36    .82 / .72 / .48  .73/.61/.43 .33/.24/.21
alpha peak, closed     10.5 [7.25, 11.5]  (eyes state not given)
alpha share, closed    0.47 [0.14, 0.74]                     0.15 open, peak 11.4 Hz open
=====================  =================  =================  ===============  ======  ===========

(the realism report, ``eegfm-realism`` as docs/datasets.md gives it: ../shared/data
eegmat Subject*_1 / Subject*_2, eegmmi S001 runs 3-4, HMS train EEG 1000913311,
formats/nihonkohden; shares of 1-30 Hz power;
correlation bins < 0.8, 0.8-1.4, >= 1.4 head radii. eegmat rest is eyes closed: its posterior
alpha holds 47 % of 1-30 Hz power at 10.5 Hz, against 15 % in eyes-open eegmmi.)

Everything is produced by IIR filters driven by white noise whose state is carried from chunk to
chunk, so a recording rendered in 10 s chunks is identical to one rendered in 60 s chunks. The
channel weights of every simulated source (background and artifacts) live in :data:`TOPOGRAPHIES`.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions
from eegfm.simulate.patterns import taper

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
# Noise columns consumed per sample: 19 broadband sources, alpha, delta and theta (left/right
# each), one spindle generator, the reference electrode's own activity.
N_NOISE = N_CHANS + 8
STATES = ("closed", "open", "drowsy", "sleep")  # truth.jsonl's state names


def hemisphere_split(weights: np.ndarray) -> np.ndarray:
    """Split a topography into (2, 19): left source feeds left + half midline, right likewise."""
    left = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS], dtype=float)
    right = np.array([c[-1] in "2468" for c in CANONICAL_CHANNELS], dtype=float)
    mid = 1.0 - left - right
    return np.stack([weights * (left + 0.5 * mid), weights * (right + 0.5 * mid)])


@lru_cache(maxsize=64)
def spatial_mixing(length_scale: float = 0.45) -> np.ndarray:
    """(19, 19) L with L @ L.T = exp(-distance / length_scale) (distances on the unit head sphere):
    volume conduction correlates neighbouring electrodes more than distant ones."""
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
    """One recording's background: amplitudes in microvolts, frequencies in hertz, times in
    seconds. Outside ``open_intervals``, ``drowsy_intervals`` and ``sleep_intervals`` the eyes
    are closed and the subject awake; where intervals overlap, sleep wins over drowsy over open."""

    broadband_uv: float = 12.0
    exponent: float = 1.6
    knee_hz: float = 0.4
    spatial_length: float = 2.0
    reference_uv: float = 6.0
    alpha_freq: float = 10.0
    alpha_uv: float = 10.0
    alpha_wax_period_s: float = 12.0
    alpha_phase: float = 0.0
    open_alpha: float = 0.3
    theta_uv: float = 3.0
    drowsy_theta_uv: float = 8.0
    sleep_delta_uv: float = 35.0
    spindle_uv: float = 10.0
    open_intervals: tuple[tuple[float, float], ...] = ()
    drowsy_intervals: tuple[tuple[float, float], ...] = ()
    sleep_intervals: tuple[tuple[float, float], ...] = ()
    spindle_times: tuple[float, ...] = ()
    channel_scale: tuple[float, ...] = (1.0,) * N_CHANS
    slowing_uv: float = 0.0
    slowing_sides: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        for name in (
            "broadband_uv",
            "reference_uv",
            "alpha_uv",
            "theta_uv",
            "drowsy_theta_uv",
            "sleep_delta_uv",
            "spindle_uv",
            "slowing_uv",
        ):
            if not 0 <= getattr(self, name) <= 500:
                raise ValueError(f"{name}: expected microvolts in [0, 500]; got {getattr(self, name)}")
        if not 0.5 <= self.exponent <= 3.0:
            raise ValueError(f"exponent: expected a 1/f exponent in [0.5, 3]; got {self.exponent}")
        if not 0.1 <= self.knee_hz <= 8.0:
            raise ValueError(f"knee_hz: expected hertz in [0.1, 8]; got {self.knee_hz}")
        if not 0.05 <= self.spatial_length <= 10.0:
            raise ValueError(f"spatial_length: expected [0.05, 10] head radii; got {self.spatial_length}")
        if not 4.0 <= self.alpha_freq <= 14.0:
            raise ValueError(f"alpha_freq: expected hertz in [4, 14]; got {self.alpha_freq}")
        if not 0 <= self.open_alpha <= 1:
            raise ValueError(f"open_alpha: expected a fraction in [0, 1]; got {self.open_alpha}")
        if len(self.slowing_sides) != 2 or not all(0 <= w <= 1 for w in self.slowing_sides):
            raise ValueError(f"slowing_sides: expected (left, right) weights in [0, 1]; got {self.slowing_sides}")
        if len(self.channel_scale) != N_CHANS:
            raise ValueError(f"channel_scale: expected {N_CHANS} values; got {len(self.channel_scale)}")

    def states(self, duration_s: float) -> list[dict]:
        """The recording cut into ``{"state", "start_s", "end_s"}`` stretches of one of
        :data:`STATES` covering [0, duration_s) (truth.jsonl's ``states``)."""
        cuts = {0.0, float(duration_s)}
        for intervals in (self.open_intervals, self.drowsy_intervals, self.sleep_intervals):
            cuts.update(float(np.clip(v, 0, duration_s)) for interval in intervals for v in interval)
        edges = sorted(cuts)
        out: list[dict] = []
        for start, end in zip(edges[:-1], edges[1:]):
            state = self.state_at(0.5 * (start + end))
            if out and out[-1]["state"] == state:
                out[-1]["end_s"] = round(end, 3)
            else:
                out.append({"state": state, "start_s": round(start, 3), "end_s": round(end, 3)})
        return out

    def state_at(self, t: float) -> str:
        for state, intervals in (
            ("sleep", self.sleep_intervals),
            ("drowsy", self.drowsy_intervals),
            ("open", self.open_intervals),
        ):
            if any(start <= t < end for start, end in intervals):
                return state
        return "closed"


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


def central_topography(width: float = 0.55) -> np.ndarray:
    """(19,) weights peaking at the vertex (Cz), where spindles and vertex waves are largest."""
    dist = np.linalg.norm(canonical_positions() - canonical_positions()[CANONICAL_CHANNELS.index("Cz")], axis=1)
    return np.exp(-0.5 * (dist / width) ** 2)


def spindle_envelope(t: np.ndarray, times: tuple[float, ...], width_s: float = 0.3) -> np.ndarray:
    """Sum of Gaussian bumps (standard deviation ``width_s``, ~1 s spindles) at ``times``."""
    out = np.zeros_like(t, dtype=np.float64)
    if not len(t):
        return out
    for centre in times:
        if t[0] - 5 * width_s <= centre <= t[-1] + 5 * width_s:
            out += np.exp(-0.5 * ((t - centre) / width_s) ** 2)
    return out


class BackgroundGenerator:
    """Stateful chunk generator of background EEG, shape (19, n) in microvolts (before the
    recording's reference is applied)."""

    def __init__(self, params: BackgroundParams, sfreq: float) -> None:
        self.params = params
        self.sfreq = float(sfreq)
        self._pink = pink_sos(sfreq, params.exponent, params.knee_hz)
        self._pink_zi = np.zeros((self._pink.shape[0], N_CHANS, 2))
        scale = np.asarray(params.channel_scale, dtype=np.float64)
        self._mixing = spatial_mixing(round(params.spatial_length, 3)) * (params.broadband_uv * scale)[:, None]
        # Left and right posterior rhythms are partly coherent, as real ones are.
        alpha_sos = bandpass_sos(sfreq, params.alpha_freq - 0.7, params.alpha_freq + 0.7)
        self._alpha = _Bilateral(alpha_sos, 0.7, hemisphere_split(TOPOGRAPHIES["alpha"]).T * params.alpha_uv)
        delta_topo = hemisphere_split(TOPOGRAPHIES["sleep_delta"]).T * params.sleep_delta_uv
        self._delta = _Bilateral(bandpass_sos(sfreq, 0.5, 2.5), 0.8, delta_topo)
        theta_topo = hemisphere_split(0.5 + 0.5 * TOPOGRAPHIES["sleep_delta"]).T
        self._theta = _Bilateral(bandpass_sos(sfreq, 4.5, 7.5), 0.6, theta_topo)
        # A first-order band-pass of noise: broadband, irregular delta (not a rhythm), as widespread as theta.
        slowing_topo = theta_topo * np.asarray(params.slowing_sides) * params.slowing_uv
        self._slowing = _Bilateral(bandpass_sos(sfreq, 0.5, 3.5, order=1), 0.5, slowing_topo)
        self._spindle_sos = bandpass_sos(sfreq, 12.0, 14.0, order=3)
        self._spindle_zi = np.zeros((self._spindle_sos.shape[0], 2))
        self._spindle_topo = central_topography() * params.spindle_uv
        self._reference_zi = np.zeros((self._pink.shape[0], 2))

    def reference_activity(self, noise: np.ndarray) -> np.ndarray:
        """(n,) µV of 1/f activity at a common reference electrode that the scalp electrodes do not
        see (``reference_uv`` RMS) from one row of standard normal draws: subtracted from every
        channel, it correlates even distant channels, as in real referential recordings."""
        x, self._reference_zi = signal.sosfilt(self._pink, noise, zi=self._reference_zi)
        return self.params.reference_uv * x

    def weights(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Smoothed 0-1 weights of the eyes-open, drowsy and sleep states at times ``t``."""
        p = self.params
        sleep = smooth_intervals(t, np.array(p.sleep_intervals), ramp_s=20.0)
        drowsy = np.minimum(smooth_intervals(t, np.array(p.drowsy_intervals), ramp_s=5.0), 1.0 - sleep)
        eyes_open = np.minimum(smooth_intervals(t, np.array(p.open_intervals), ramp_s=0.5), 1.0 - sleep - drowsy)
        return {"open": eyes_open, "drowsy": drowsy, "sleep": sleep}

    def sleep_weight(self, t: np.ndarray) -> np.ndarray:
        return smooth_intervals(t, np.array(self.params.sleep_intervals), ramp_s=20.0)

    def step(self, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Background for sample times ``t`` from ``noise`` (N_NOISE, n) standard normal draws."""
        pink, self._pink_zi = signal.sosfilt(self._pink, noise[:N_CHANS], axis=-1, zi=self._pink_zi)
        out = self._mixing @ pink
        w = self.weights(t)
        p = self.params
        wax = 0.75 + 0.25 * np.sin(2 * np.pi * t / p.alpha_wax_period_s + p.alpha_phase)
        closed = 1.0 - (1.0 - p.open_alpha) * w["open"] - 0.8 * w["drowsy"] - 0.95 * w["sleep"]
        out += self._alpha(noise[N_CHANS : N_CHANS + 2], wax * closed)
        theta = p.theta_uv + p.drowsy_theta_uv * (w["drowsy"] + 0.7 * w["sleep"])
        out += self._theta(noise[N_CHANS + 4 : N_CHANS + 6], theta)
        if p.sleep_intervals:
            out += self._delta(noise[N_CHANS + 2 : N_CHANS + 4], w["sleep"])
        if p.slowing_uv:  # the delta sources' draws: the noise stream stays as every seed had it
            out += self._slowing(noise[N_CHANS + 2 : N_CHANS + 4], np.ones_like(t))
        spindles, self._spindle_zi = signal.sosfilt(self._spindle_sos, noise[N_CHANS + 6], zi=self._spindle_zi)
        if p.spindle_times:
            out += self._spindle_topo[:, None] * (spindles * spindle_envelope(t, p.spindle_times))[None, :]
        return out
