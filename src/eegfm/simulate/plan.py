"""Planning a recording: every random choice made up front, before any sample is rendered.

A :class:`RecordingPlan` fixes a recording's episodes, labeled windows with expert votes,
background, artifacts, identifiers and file names. Rendering is a deterministic function of the
plan, so signals, labels and ground truth never disagree, and a corpus is planned (cheap) as a
whole before it is rendered (expensive).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.simulate.artifacts import ArtifactPlan, plan_artifacts
from eegfm.simulate.background import BackgroundParams
from eegfm.simulate.identities import (
    Identity,
    PlantedHeader,
    Staff,
    draw_identity,
    draw_staff,
    draw_start,
    plant,
)
from eegfm.simulate.patterns import Episode, draw_episode
from eegfm.simulate.rng import rng_for
from eegfm.simulate.sites import CLASSES, SiteProfile
from eegfm.simulate.votes import consensus, draw_rater_count, draw_votes

WINDOW_S = 50.0  # an HMS labeled EEG sub-window
CENTRE_S = 10.0  # the part experts labeled, centred in the window
SPECTROGRAM_WINDOW_S = 600.0
MIN_SEGMENT_S = 60.0
MAX_SEGMENT_S = 240.0
MAX_WINDOWS_PER_SEGMENT = 4


@dataclasses.dataclass(frozen=True)
class LabelWindow:
    """One train.csv row: a 50 s window, its expert votes and where it sits."""

    eeg_sub_id: int
    offset_s: float
    spectrogram_offset_s: float
    episode_index: int
    label_id: int
    votes: tuple[int, ...]

    @property
    def consensus(self) -> str:
        return consensus(np.array(self.votes))


@dataclasses.dataclass(frozen=True)
class Patient:
    """A simulated person at one site (one per subject)."""

    site_index: int
    subject_index: int
    patient_id: int
    subject_code: str
    identity: Identity
    first_visit: datetime
    # How far this person's scalp amplitude lies from their site's typical one, in standard
    # deviations (RecordingPlan.scalp_scale turns it into a factor).
    amplitude_z: float = 0.0


@dataclasses.dataclass(frozen=True)
class RecordingPlan:
    """Everything needed to render one recording and to describe it truthfully."""

    seed: int
    site_index: int
    site: SiteProfile
    patient: Patient
    session_index: int
    eeg_id: int
    spectrogram_id: int
    duration_s: int
    episodes: tuple[Episode, ...]
    windows: tuple[LabelWindow, ...]
    background: BackgroundParams
    artifacts: ArtifactPlan
    channel_gains: tuple[float, ...]
    start: datetime
    technician: Staff
    planted: PlantedHeader

    @property
    def scalp_scale(self) -> float:
        """The factor on everything the brain puts on this person's scalp (background and patterns,
        not artifacts): skull, scalp and age set it, and in real corpora it varies several-fold
        between people (eegmat rest's median |µV| spans 4.4-10.1 within one lab; other real
        corpora here reach 31). A model must not read a pattern from amplitude alone."""
        factor = np.exp(self.site.amplitude_spread * self.patient.amplitude_z)
        return float(np.clip(factor, *SCALP_SCALE_RANGE))

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.site_index, self.patient.subject_index, self.session_index)

    @property
    def edf_relpath(self) -> str:
        """``<site>/<subject code>_s<session>_t000.edf`` (TUH-like; no identifiers)."""
        return f"{self.site.name}/{self.patient.subject_code}_s{self.session_index + 1:03d}_t000.edf"

    @property
    def n_times(self) -> int:
        return int(self.duration_s * self.site.sfreq)


def plan_segments(rng: np.random.Generator, duration_s: int) -> list[tuple[int, int]]:
    """Cut ``[0, duration_s)`` into whole-second segments of 60-240 s (the last may be longer)."""
    if duration_s < MIN_SEGMENT_S:
        raise ValueError(f"duration_s: expected >= {MIN_SEGMENT_S:.0f} s; got {duration_s}")
    segments, start = [], 0
    while start < duration_s:
        length = int(rng.integers(MIN_SEGMENT_S, MAX_SEGMENT_S + 1))
        if duration_s - (start + length) < MIN_SEGMENT_S:
            length = duration_s - start
        segments.append((start, start + length))
        start += length
    return segments


def draw_classes(rng: np.random.Generator, site: SiteProfile, n: int) -> list[str]:
    return [CLASSES[i] for i in rng.choice(len(CLASSES), size=n, p=site.prevalence())]


def ensure_class_coverage(assignments: list[tuple[SiteProfile, str]]) -> list[str]:
    """Reassign a few segments so that every class occurs when there are >= 6 segments (small
    corpora would often miss one). A missing class takes a segment of the most common class, at
    the site where the missing class is most prevalent; ties go to the earliest segment."""
    classes = [cls for _, cls in assignments]
    if len(classes) < len(CLASSES):
        return classes
    for missing in CLASSES:
        if missing in classes:
            continue
        counts = {c: classes.count(c) for c in CLASSES}
        candidates = [i for i, c in enumerate(classes) if counts[c] > 1]
        best = max(
            candidates,
            key=lambda i: (counts[classes[i]], assignments[i][0].prevalence()[CLASSES.index(missing)], -i),
        )
        classes[best] = missing
    return classes


def seizure_lead_s(rng: np.random.Generator, segment: tuple[int, int]) -> float:
    """Seconds of background before a seizure starts in its segment (5-15 s), so its onset is
    visible; >= 50 s of seizure is left for a window."""
    room = segment[1] - segment[0] - WINDOW_S - 4.0
    return round(float(min(rng.uniform(5.0, 15.0), room)), 1)


def plan_windows(rng: np.random.Generator, segment: tuple[int, int], duration_s: int) -> list[tuple[float, float]]:
    """(EEG offset, spectrogram offset) of the labeled windows inside one segment: EEG offsets are
    even seconds (as in HMS), the 10-minute spectrogram window is centred on the EEG window and
    clipped to the recording (offset 0 when it is shorter)."""
    start, end = segment
    first = int(np.ceil(start / 2.0)) * 2
    candidates = np.arange(first, end - WINDOW_S + 1, 2)
    n = min(MAX_WINDOWS_PER_SEGMENT, 1 + int((end - start - WINDOW_S) // 30), len(candidates))
    offsets = np.sort(rng.choice(candidates, size=n, replace=False))
    latest_spec = max(0.0, duration_s - SPECTROGRAM_WINDOW_S)
    return [(float(o), float(np.clip(o + WINDOW_S / 2 - SPECTROGRAM_WINDOW_S / 2, 0.0, latest_spec))) for o in offsets]


def letters_code(value: int, length: int = 8) -> str:
    """``value`` in base 26 as lower-case letters: a TUH-style pseudonymous subject code."""
    return "".join(chr(ord("a") + value // 26**i % 26) for i in reversed(range(length)))


# Bounds of a person's scalp amplitude factor (RecordingPlan.scalp_scale).
SCALP_SCALE_RANGE = (0.3, 4.0)


def plan_patient(seed: int, site_index: int, subject_index: int, patient_id: int, subject_code: str) -> Patient:
    rng = rng_for(seed, "patient", site_index, subject_index)
    first_visit = draw_start(rng)
    return Patient(
        site_index=site_index,
        subject_index=subject_index,
        patient_id=patient_id,
        subject_code=subject_code,
        identity=draw_identity(rng, first_visit.date()),
        first_visit=first_visit,
        amplitude_z=float(rng.standard_normal()),
    )


# Eyes-open and eyes-closed blocks alternate (a technician asks for both); seconds.
CLOSED_BLOCK_S = (30.0, 120.0)
OPEN_BLOCK_S = (20.0, 60.0)
DROWSY_S = (30.0, 90.0)
SPINDLES_PER_MIN = 5.0


def plan_eye_blocks(rng: np.random.Generator, duration_s: float) -> tuple[tuple[float, float], ...]:
    """Eyes-open intervals: blocks alternating with eyes-closed ones from a random first state."""
    intervals, t, is_open = [], 0.0, bool(rng.random() < 0.5)
    while t < duration_s:
        length = float(rng.uniform(*(OPEN_BLOCK_S if is_open else CLOSED_BLOCK_S)))
        if is_open:
            intervals.append((round(t, 2), round(min(t + length, float(duration_s)), 2)))
        t, is_open = t + length, not is_open
    return tuple(intervals)


def plan_sleepiness(
    rng: np.random.Generator, site: SiteProfile, duration_s: float
) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...], tuple[float, ...]]:
    """(drowsy intervals, sleep intervals, spindle times): with ``site.sleep_probability`` one
    drowsy stretch, followed in 60 % of those by a sleep-like one with spindles."""
    if rng.random() >= site.sleep_probability:
        return (), (), ()
    drowsy_len = float(rng.uniform(*DROWSY_S))
    sleep_len = float(rng.uniform(0.25, 0.5)) * duration_s if rng.random() < 0.6 else 0.0
    begin = float(rng.uniform(0.0, max(0.0, duration_s - drowsy_len - sleep_len)))
    drowsy_end = min(begin + drowsy_len, float(duration_s))
    drowsy = ((round(begin, 2), round(drowsy_end, 2)),)
    if sleep_len <= 0 or drowsy_end >= duration_s:
        return drowsy, (), ()
    sleep = ((round(drowsy_end, 2), round(min(drowsy_end + sleep_len, float(duration_s)), 2)),)
    first, last = sleep[0][0] + 20.0, sleep[0][1] - 1.0
    n_spindles = int(rng.poisson(max(0.0, last - first) / 60.0 * SPINDLES_PER_MIN))
    spindles = tuple(sorted(round(float(x), 3) for x in rng.uniform(first, max(first, last), n_spindles)))
    return drowsy, sleep, spindles


def plan_background(rng: np.random.Generator, site: SiteProfile, duration_s: int) -> BackgroundParams:
    """One recording's background, drawn around the site's amplitudes with the spread of
    subjects in real corpora (see :mod:`~simulate.background` for the measured range)."""
    drowsy, sleep, spindles = plan_sleepiness(rng, site, duration_s)
    return BackgroundParams(
        broadband_uv=site.background_uv * float(rng.lognormal(0.0, 0.2)),
        exponent=float(np.clip(rng.normal(1.75, 0.15), 1.3, 2.3)),
        knee_hz=float(rng.uniform(1.5, 4.0)),
        spatial_length=float(rng.uniform(1.8, 2.8)),
        reference_uv=site.background_uv * float(rng.uniform(0.4, 0.8)),
        alpha_freq=float(np.clip(rng.normal(10.5, 0.7), 8.0, 12.0)),
        alpha_uv=site.alpha_uv * float(rng.lognormal(0.0, 0.35)),
        alpha_wax_period_s=float(rng.uniform(8.0, 20.0)),
        alpha_phase=float(rng.uniform(0, 2 * np.pi)),
        open_alpha=float(rng.uniform(0.2, 0.4)),
        theta_uv=float(rng.uniform(1.5, 4.0)),
        drowsy_theta_uv=float(rng.uniform(5.0, 10.0)),
        sleep_delta_uv=float(rng.uniform(20.0, 35.0)),
        spindle_uv=float(rng.uniform(6.0, 12.0)),
        open_intervals=plan_eye_blocks(rng, duration_s),
        drowsy_intervals=drowsy,
        sleep_intervals=sleep,
        spindle_times=spindles,
        channel_scale=tuple(float(x) for x in rng.lognormal(0.0, 0.1, len(CANONICAL_CHANNELS))),
        **plan_slowing(rng, site),
    )


# Of the recordings with polymorphic delta slowing (BackgroundParams.slowing_uv; SiteProfile.
# slowing_probability says how many), the share generalized, worse on the left, worse on the right.
SLOWING_SIDES = (((1.0, 1.0), 0.6), ((1.0, 0.3), 0.2), ((0.3, 1.0), 0.2))


def plan_slowing(rng: np.random.Generator, site: SiteProfile) -> dict:
    """Whether one recording has continuous polymorphic delta slowing, how large (1-2.5x the
    site's broadband amplitude) and on which side; every draw is made either way."""
    present = rng.uniform() < site.slowing_probability
    amplitude = site.background_uv * float(rng.uniform(1.0, 2.5))
    side = int(rng.choice(len(SLOWING_SIDES), p=[p for _, p in SLOWING_SIDES]))
    if not present:
        return {"slowing_uv": 0.0, "slowing_sides": (1.0, 1.0)}
    return {"slowing_uv": amplitude, "slowing_sides": SLOWING_SIDES[side][0]}


def _plan_episodes(
    seed: int,
    key: tuple[int, int, int],
    site: SiteProfile,
    classes: list[str],
    segments: list[tuple[int, int]],
    duration_s: int,
) -> tuple[list[Episode], list[LabelWindow]]:
    """One episode per segment and the labeled windows (with votes) within each; ``key`` is
    (site, subject, session)."""
    episodes, windows = [], []
    for index, (segment, cls) in enumerate(zip(segments, classes)):
        rng = rng_for(seed, "episode", *key, index)
        strength = float(rng.uniform(*site.strength_range))
        start = float(segment[0]) + (seizure_lead_s(rng, segment) if cls == "Seizure" else 0.0)
        episode = draw_episode(rng, cls, start, float(segment[1]), strength, recorded=site.recorded_channels())
        episodes.append(episode)
        span = (int(np.ceil(episode.start_s)), int(episode.end_s))
        for offset, spec_offset in plan_windows(rng_for(seed, "windows", *key, index), span, duration_s):
            vote_rng = rng_for(seed, "votes", *key, len(windows))
            votes = draw_votes(vote_rng, cls, strength, draw_rater_count(vote_rng))
            windows.append(
                LabelWindow(
                    eeg_sub_id=len(windows),
                    offset_s=offset,
                    spectrogram_offset_s=spec_offset,
                    episode_index=index,
                    label_id=0,
                    votes=tuple(int(v) for v in votes),
                )
            )
    return episodes, windows


def plan_recording(
    seed: int,
    site: SiteProfile,
    patient: Patient,
    session_index: int,
    duration_s: int,
    segments: list[tuple[int, int]],
    classes: list[str],
    ids: tuple[int, int],
) -> RecordingPlan:
    """Everything for one recording, given its segments, their classes and (eeg_id,
    spectrogram_id). Windows get ``label_id`` 0; the corpus assigns unique ones."""
    key = (patient.site_index, patient.subject_index, session_index)
    episodes, windows = _plan_episodes(seed, key, site, classes, segments, duration_s)
    background = plan_background(rng_for(seed, "background", *key), site, duration_s)
    artifacts = plan_artifacts(
        rng_for(seed, "artifacts", *key), duration_s, site, background.sleep_intervals, background.open_intervals
    )
    rng = rng_for(seed, "recording", *key)
    start = patient.first_visit + timedelta(
        days=session_index * int(rng.integers(1, 30)), seconds=int(rng.integers(0, 6 * 3600))
    )
    gains = site.gain * rng.uniform(0.95, 1.05, len(CANONICAL_CHANNELS))  # per-channel gain error
    technician = draw_staff(rng)
    planted = plant(
        rng,
        patient.identity,
        technician,
        start,
        edf_plus=site.edf_plus,
        equipment=site.equipment,
        duration_s=duration_s,
    )
    return RecordingPlan(
        seed=seed,
        site_index=patient.site_index,
        site=site,
        patient=patient,
        session_index=session_index,
        eeg_id=ids[0],
        spectrogram_id=ids[1],
        duration_s=duration_s,
        episodes=tuple(episodes),
        windows=tuple(windows),
        background=background,
        artifacts=artifacts,
        channel_gains=tuple(float(g) for g in gains),
        start=start,
        technician=technician,
        planted=planted,
    )
