"""A simulated pattern planted on a real recording's own background: the one definition that the
planted-pattern corpus (:mod:`~simulate.planted`) and the planted-seizure evaluation
(:mod:`eegfm.evaluation.planted_seizures`) share.

:func:`plant_episode` is pure numpy: a recording's samples (µV) and an
:class:`~simulate.patterns.Episode` in, the samples with the pattern added on the canonical
electrodes out. The patterns are scalp potentials (before any reference), so they are added to each
recorded electrode as if its reference saw none of them, at the episode's own amplitude. The rest
reads a stretch of a recording with MNE and writes it back as a FIF whose header carries the channel
names, types and rate only: nothing of the source's person, date, device or annotations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, canonical_name
from eegfm.simulate.artifacts import ArtifactPlan, plan_artifacts, render_blinks
from eegfm.simulate.patterns import Episode, render_episodes
from eegfm.simulate.sites import SiteProfile

MIN_ELECTRODES = 10  # of the 19: with fewer, the pipeline would interpolate most of the pattern


def canonical_rows(ch_names: Sequence[str]) -> dict[str, int]:
    """Canonical 10-20 name -> row of the first channel that is that electrode."""
    rows: dict[str, int] = {}
    for i, name in enumerate(ch_names):
        if canonical := canonical_name(name):
            rows.setdefault(canonical, i)
    return rows


# Eyes open: healthy adults blink 10-25 times a minute at rest (the simulator's eyes-closed sites: 4-14).
EYES_OPEN_BLINKS_PER_MIN = (10.0, 25.0)


def draw_eye_artifacts(rng: np.random.Generator, duration_s: float) -> ArtifactPlan:
    """Blinks and lateral eye movements of ``duration_s`` s with the eyes open (the simulator's
    :func:`~simulate.artifacts.plan_artifacts` at a blink rate drawn from ``EYES_OPEN_BLINKS_PER_MIN``;
    only its eye events are rendered)."""
    rate = float(rng.uniform(*EYES_OPEN_BLINKS_PER_MIN))
    return plan_artifacts(rng, duration_s, SiteProfile(blink_rate_per_min=rate))


def plant_episode(
    signal_uv: np.ndarray,
    rows: Mapping[str, int],
    episode: Episode | None,
    t: np.ndarray,
    gain: float = 1.0,
    eyes: ArtifactPlan | None = None,
) -> np.ndarray:
    """``signal_uv`` (channels, n; µV) with ``episode`` rendered at the times ``t`` (s) added to the
    rows of its canonical electrodes (``rows``: name -> row), and ``eyes``' blinks and eye movements
    too where given, then every channel times ``gain``; a new array. ``episode`` None (Other) adds no
    pattern. An electrode the recording lacks gets none of it: the pipeline interpolates it from its
    neighbours, pattern included, as any missing one."""
    out = np.array(signal_uv, dtype=np.float64, copy=True)
    t = np.asarray(t, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] != len(t):
        raise ValueError(f"signal_uv: expected (channels, {len(t)}) beside {len(t)} times; got {out.shape}")
    added = np.zeros((len(CANONICAL_CHANNELS), len(t)))
    if episode is not None:
        added += render_episodes([episode], t)  # (19, n) µV, canonical order
    if eyes is not None:
        added += render_blinks(t, eyes)
    if episode is not None or eyes is not None:
        for name, row in rows.items():
            out[row] += added[CANONICAL_CHANNELS.index(name)]
    return out * gain


@dataclasses.dataclass(frozen=True)
class Stretch:
    """Samples cut from a real recording, in µV (SI units times 1e6 for other channel types)."""

    data_uv: np.ndarray  # (channels, n)
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    sfreq: float

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.data_uv.shape[1]) / self.sfreq

    @property
    def rows(self) -> dict[str, int]:
        return canonical_rows(self.ch_names)

    @property
    def recorded(self) -> tuple[str, ...]:
        return tuple(c for c in CANONICAL_CHANNELS if c in self.rows)


def open_recording(path: str | Path):
    """The recording at ``path`` as MNE opens it, samples not loaded."""
    import mne  # heavy: only when reading

    return mne.io.read_raw(path, preload=False, verbose="error")


def why_unusable(raw, needed_s: float) -> tuple[str, str] | None:
    """(reason, what was expected) if ``raw`` cannot give ``needed_s`` seconds with ``MIN_ELECTRODES``
    of the 19 electrodes, else None. Never names the file: the caller names it by its token."""
    found = len(canonical_rows(raw.ch_names))
    if found < MIN_ELECTRODES:
        return "too_few_electrodes", f"{found} of the 19 10-20 electrodes; expected at least {MIN_ELECTRODES}"
    if raw.n_times < int(round(needed_s * raw.info["sfreq"])):
        return "too_short", f"{raw.n_times / raw.info['sfreq']:.1f} s long; expected at least {needed_s:g} s"
    return None


def read_stretch(raw, start_s: float, duration_s: float) -> Stretch:
    """``duration_s`` of ``raw`` from ``start_s`` (both rounded to samples); only those are read."""
    sfreq = float(raw.info["sfreq"])
    first, n = int(round(start_s * sfreq)), int(round(duration_s * sfreq))
    if first < 0 or first + n > raw.n_times:
        raise ValueError(f"stretch: expected [{start_s:g}, {start_s + duration_s:g}) s inside the recording")
    data = raw.get_data(start=first, stop=first + n) * 1e6
    return Stretch(data, tuple(raw.ch_names), tuple(raw.get_channel_types()), sfreq)


def load_stretch(path: str | Path, start_s: float, duration_s: float) -> Stretch | None:
    """``read_stretch`` of the recording at ``path``; None if it is too short for the stretch or
    names fewer than ``MIN_ELECTRODES`` of the 19 electrodes."""
    raw = open_recording(path)
    return None if why_unusable(raw, start_s + duration_s) else read_stretch(raw, start_s, duration_s)


def write_fif(target: Path, stretch: Stretch, data_uv: np.ndarray) -> Path:
    """``data_uv`` as a float32 FIF with a fresh header: the stretch's channel names, types and
    rate, and nothing else of the source's (no person, date, device or annotation)."""
    import mne  # MNE only when a stretch is written: not for eegfm-planted --help

    info = mne.create_info(list(stretch.ch_names), stretch.sfreq, list(stretch.ch_types))
    mne.io.RawArray(data_uv * 1e-6, info, verbose="error").save(target, fmt="single", verbose="error")
    return target
