"""Rendering a planned recording chunk by chunk: brain, body, electrodes, amplifier.

The signal path mirrors a real recording, so sites differ for the right physical reason: scalp
potentials (background and episodes, scaled by the person's scalp amplitude; blinks, muscle,
photic driving, a little ECG); then the reference (linked ears that see nearby brain activity and
ECG, or the average of recorded channels); then pops, drift and mains per electrode; then the
amplifier's gain and per-channel gain error. Channels a site does not record are NaN.
:class:`RecordingRenderer` carries filter states and the noise stream from call to call and
starts ``warmup_s`` before time 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_positions, electrode_position
from eegfm.simulate.artifacts import (
    blink_signal,
    render_blinks,
    render_drift,
    render_ecg,
    render_line_noise,
    render_muscle,
    render_photic,
    render_pops,
)
from eegfm.simulate.background import N_NOISE, TOPOGRAPHIES, BackgroundGenerator
from eegfm.simulate.patterns import render_episodes
from eegfm.simulate.plan import RecordingPlan
from eegfm.simulate.rng import seed_sequence

N_CHANS = len(CANONICAL_CHANNELS)
WARMUP_S = 4
REFERENCE_ECG_LEAK = 0.003
EMG_TONIC_UV = 4.0


@dataclasses.dataclass(frozen=True)
class RenderedChunk:
    """Samples ``[start_sample, start_sample + n)``: ``eeg`` (19, n) µV as measured, canonical order;
    ``aux`` maps 'ecg'/'eog'/'emg' to µV and 'photic' to the 0/1 stimulator marker."""

    start_sample: int
    eeg: np.ndarray
    aux: dict[str, np.ndarray]


def linked_ears_weights(width: float = 0.5, pickup: float = 0.5) -> np.ndarray:
    """(19,) weights giving the potential at linked ear electrodes from the scalp channels: an ear
    reference sees nearby (temporal) activity, which appears inverted in every channel."""
    pos = canonical_positions()
    weights = np.zeros(N_CHANS)
    for ear in ("A1", "A2"):
        dist = np.linalg.norm(pos - electrode_position(ear), axis=1)
        w = np.exp(-0.5 * (dist / width) ** 2)
        weights += 0.5 * pickup * w / w.sum()
    return weights


class RecordingRenderer:
    """Sequential renderer of one :class:`RecordingPlan` at the site's sampling rate."""

    def __init__(self, plan: RecordingPlan, warmup_s: int = WARMUP_S) -> None:
        self.plan = plan
        self.sfreq = float(plan.site.sfreq)
        self.position = -int(warmup_s * plan.site.sfreq)
        self._noise = np.random.default_rng(seed_sequence(plan.seed, "noise", *plan.key))
        self._background = BackgroundGenerator(plan.background, self.sfreq)
        self._emg_sos = signal.butter(2, min(25.0, 0.4 * self.sfreq), btype="highpass", fs=self.sfreq, output="sos")
        self._emg_zi = np.zeros((self._emg_sos.shape[0], 2))
        self._recorded = np.array([c not in plan.site.missing_channels for c in CANONICAL_CHANNELS])
        self._reference = linked_ears_weights()
        self._ecg_leak = TOPOGRAPHIES["ecg"]
        self._gains = np.asarray(plan.channel_gains)[:, None]

    def render(self, n_times: int) -> RenderedChunk:
        """The next ``n_times`` samples (continuing from the previous call)."""
        if n_times < 0:
            raise ValueError(f"n_times: expected >= 0; got {n_times}")
        start = self.position
        t = (start + np.arange(n_times)) / self.sfreq
        # Draw (n, k) then transpose: the stream is consumed in time order, so any chunking
        # of the recording consumes the same numbers for the same samples.
        # float32 draws are ~3x faster and indistinguishable once filtered in float64.
        draws = self._noise.standard_normal((n_times, N_NOISE + 2), dtype=np.float32)
        noise = np.ascontiguousarray(draws.T, dtype=np.float64)
        artifacts = self.plan.artifacts
        scalp = self._background.step(noise[:N_NOISE], t)
        render_episodes(self.plan.episodes, t, out=scalp)
        scalp *= self.plan.scalp_scale
        scalp += render_blinks(t, artifacts)
        emg_bursts = render_muscle(t, artifacts, self.sfreq, out=scalp)
        photic = render_photic(t, artifacts, out=scalp)
        ecg = render_ecg(t, artifacts)
        line = render_line_noise(t, artifacts, self.sfreq)
        own = self._background.reference_activity(noise[N_NOISE - 1])
        eeg = self._measure(scalp, ecg, line, t, own)
        # Auxiliary channels; their leads share the mains pick-up of Fp1/F3.
        gain = self.plan.site.gain
        aux_line = line[:2].mean(axis=0)
        tonic, self._emg_zi = signal.sosfilt(self._emg_sos, noise[N_NOISE], zi=self._emg_zi)
        awake = 1.0 - 0.7 * self._background.sleep_weight(t)
        aux = {
            "ecg": gain * (ecg + aux_line),
            "eog": gain * (1.6 * blink_signal(t, artifacts) + aux_line + 3.0 * noise[N_NOISE + 1]),
            "emg": gain * (EMG_TONIC_UV * awake * tonic + emg_bursts + aux_line),
            "photic": photic,
        }
        self.position += n_times
        return RenderedChunk(start_sample=start, eeg=eeg, aux=aux)

    def _measure(
        self, scalp: np.ndarray, ecg: np.ndarray, line: np.ndarray, t: np.ndarray, own: np.ndarray
    ) -> np.ndarray:
        artifacts = self.plan.artifacts
        eeg = scalp  # modified in place from here on
        ecg = artifacts.ecg_scalp_gain * ecg  # as the scalp and the reference pick it up
        eeg += self._ecg_leak[:, None] * ecg[None, :]
        if self.plan.site.reference == "common":
            reference = self._reference @ eeg + REFERENCE_ECG_LEAK * ecg + own
        else:
            reference = eeg[self._recorded].mean(axis=0)
        eeg -= reference[None, :]
        render_pops(t, artifacts, out=eeg)
        eeg += render_drift(t, artifacts)
        eeg += line
        eeg *= self._gains
        eeg[~self._recorded] = np.nan
        return eeg
