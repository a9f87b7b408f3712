"""The planting behind ``eegfm-planted`` (``planted``, whose docstring describes the corpus): each
real recording cut into stretches, a pattern planted in most, votes drawn for each, and the corpus
written (labels.csv, truth.json, planted.json, one FIF per stretch).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.core.config import ConfigError
from eegfm.core.logs import setup_logging
from eegfm.simulate.artifacts import ArtifactPlan
from eegfm.simulate.output import check_output, publish, stage_directory
from eegfm.simulate.patterns import Episode, draw_episode
from eegfm.simulate.plan import WINDOW_S  # an HMS labeled window: what the pipeline cuts a vote row to
from eegfm.simulate.planted import PlantOptions
from eegfm.simulate.planting import (
    MIN_ELECTRODES,
    canonical_rows,
    draw_eye_artifacts,
    open_recording,
    plant_episode,
    read_stretch,
    why_unusable,
    write_fif,
)
from eegfm.simulate.rng import rng_for
from eegfm.simulate.sites import CLASSES
from eegfm.simulate.votes import VOTE_COLUMNS, consensus, draw_rater_count, draw_votes

log = logging.getLogger(__name__)

MIN_STEP_S = 10.0  # stretches of one recording start this far apart at least (HMS: 2 s)
PATTERNS = tuple(c for c in CLASSES if c != "Other")
# What MNE's read_raw opens (a folder-like .mff is left out: the listing takes files).
EXTENSIONS = (".edf", ".bdf", ".gdf", ".fif", ".fif.gz", ".vhdr", ".set", ".cnt", ".cdt", ".nxe", ".lay", ".nedf")
SKIP_REASONS = ("unreadable", "too_short", "too_few_electrodes")
LABEL_COLUMNS = ("path", "patient_id", "eeg_label_offset_seconds", *VOTE_COLUMNS, "expert_consensus")


def draw_stretch_episode(
    rng: np.random.Generator, cls: str, strength: float, recorded: tuple[str, ...]
) -> Episode | None:
    """The episode planted into one stretch (its time, 0 at its start), None for Other. As an HMS
    labeled window lies inside one episode, it covers the whole 50 s: a pattern starts 5-20 s before
    (its onset taper done) and ends 5-20 s after; a seizure starts 0-20 s before, so some windows
    hold its build-up, and ends 16-40 s after, so its ictal part (post-ictal delta takes at most
    0.12 of it, 13 s) outlasts the window."""
    if cls == "Other":
        return None
    if cls == "Seizure":
        start, end = -round(float(rng.uniform(0.0, 20.0)), 3), WINDOW_S + round(float(rng.uniform(16.0, 40.0)), 3)
    else:
        start, end = -round(float(rng.uniform(5.0, 20.0)), 3), WINDOW_S + round(float(rng.uniform(5.0, 20.0)), 3)
    return draw_episode(rng, cls, start, end, strength, recorded)


def stretch_starts(duration_s: float, count: int) -> list[float]:
    """Up to ``count`` whole-second starts of 50 s stretches spread evenly over ``duration_s``, at
    least ``MIN_STEP_S`` apart (a short recording gives fewer); [] if it is shorter than one."""
    room = duration_s - WINDOW_S
    if room < 0:
        return []
    n = max(1, min(count, 1 + int(room // MIN_STEP_S)))
    return sorted({float(s) for s in np.floor(np.linspace(0.0, room, n))})


@dataclasses.dataclass(frozen=True)
class StretchPlan:
    """One stretch of a recording: where it is cut, what goes into it, and its window's votes."""

    index: int
    start_s: float  # in the source recording
    cls: str
    strength: float
    gain: float
    votes: tuple[int, ...]
    episode: Episode | None
    eyes: ArtifactPlan | None = None  # blinks and eye movements added, the eyes open


def plan_stretches(
    options: PlantOptions, recording: int, duration_s: float, recorded: tuple[str, ...]
) -> list[StretchPlan]:
    """The stretches of recording number ``recording`` (``duration_s`` long, with the canonical
    electrodes ``recorded``). Each stretch's draws come from its own keyed stream, so a recording
    skipped or added leaves every other stretch as it was."""
    weights = np.array([(1.0 - options.other_fraction) / len(PATTERNS)] * len(PATTERNS) + [options.other_fraction])
    plans = []
    for k, start in enumerate(stretch_starts(duration_s, options.per_recording)):
        rng = rng_for(options.seed, "planted", recording, k)
        cls = CLASSES[int(rng.choice(len(CLASSES), p=weights / weights.sum()))]  # CLASSES ends with Other
        strength = float(rng.uniform(*options.strength_range))
        low, high = np.log(options.gain_range)
        gain = float(np.exp(rng.uniform(low, high)))  # log-uniform: as many halvings as doublings
        episode = draw_stretch_episode(rng, cls, strength, recorded)
        votes = draw_votes(rng, cls, strength, draw_rater_count(rng))
        # a stream of its own: the eyes leave every other draw of the stretch as it was without them
        eye_rng = rng_for(options.seed, "planted-eyes", recording, k)
        eyes = draw_eye_artifacts(eye_rng, WINDOW_S) if eye_rng.random() < options.eye_artifact_fraction else None
        plans.append(StretchPlan(k, start, cls, strength, gain, tuple(int(v) for v in votes), episode, eyes))
    return plans


def person_tokens(relpaths: Sequence[str], pattern: str | None) -> list[str]:
    """``p<NNNN>`` per path, numbered by first appearance: paths whose ``pattern`` match gives the same
    first group (or whole match) share one; a path it does not match, or every path without a
    pattern, is a person of its own."""
    compiled = re.compile(pattern) if pattern else None
    tokens: dict[str, str] = {}
    out = []
    for i, rel in enumerate(relpaths):
        match = compiled.search(rel) if compiled else None
        key = f"person:{match.group(1) if match.groups() else match.group(0)}" if match else f"recording:{i}"
        out.append(tokens.setdefault(key, f"p{len(tokens):04d}"))
    return out


def stretch_records(plan: StretchPlan, recording: str, patient: str, relpath: str) -> tuple[dict, dict]:
    """The stretch's labels.csv row (one 50 s window at offset 0) and its truth.json record."""
    votes = dict(zip(VOTE_COLUMNS, plan.votes))
    label = {"path": relpath, "patient_id": patient, "eeg_label_offset_seconds": 0, **votes}
    label["expert_consensus"] = consensus(np.array(plan.votes))
    episode = plan.episode.summary() if plan.episode else None
    truth = {
        "path": relpath,
        "recording": recording,
        "patient_id": patient,
        "stretch": plan.index,
        "source_start_s": plan.start_s,
        "duration_s": WINDOW_S,
        "class": plan.cls,
        "strength": round(plan.strength, 4),
        "gain": round(plan.gain, 4),
        "hemisphere": plan.episode.side if plan.episode else None,
        "focus": plan.episode.focus if plan.episode else None,
        "n_raters": int(sum(plan.votes)),
        "votes": votes,
        "expert_consensus": label["expert_consensus"],
        "episode": episode,
        "eye_artifacts": {k: v for k, v in plan.eyes.counts().items() if k in ("blinks", "eye_movements")}
        if plan.eyes
        else None,
    }
    return label, truth


def plant_recording(
    raw, options: PlantOptions, recording: int, patient: str, folder: Path, site: str
) -> list[tuple[dict, dict]]:
    """Write every stretch of an opened, usable recording into ``folder`` (OUT/<site>); their
    labels.csv rows and truth records."""
    recorded = tuple(c for c in CANONICAL_CHANNELS if c in canonical_rows(raw.ch_names))
    records = []
    for plan in plan_stretches(options, recording, raw.n_times / raw.info["sfreq"], recorded):
        stretch = read_stretch(raw, plan.start_s, WINDOW_S)
        data = plant_episode(stretch.data_uv, stretch.rows, plan.episode, stretch.times, plan.gain, plan.eyes)
        name = f"r{recording:04d}_s{plan.index:02d}_raw.fif"
        write_fif(folder / name, stretch, data)
        records.append(stretch_records(plan, f"r{recording:04d}", patient, f"{site}/{name}"))
    return records


def list_recordings(folder: Path) -> list[str]:
    """Paths (posix, relative to ``folder``) of the files MNE can open, sorted; hidden ones left out."""
    found = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return sorted(
        rel
        for rel in found
        if rel.lower().endswith(EXTENSIONS) and not any(part.startswith(".") for part in rel.split("/"))
    )


def write_corpus(out: Path, records: list[tuple[dict, dict]], summary: dict) -> None:
    """labels.csv, truth.json and planted.json into ``out``."""
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(label for label, _ in records)
    lines = ",\n".join(json.dumps(truth, sort_keys=True) for _, truth in records)
    (out / "truth.json").write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    (out / "planted.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def plant_corpus(
    background: Path, out: Path, options: PlantOptions, relpaths: list[str | None], people: list[str], site: str
) -> tuple[list[tuple[dict, dict]], dict[str, int]]:
    """Plant every recording (``relpaths`` under ``background``, None where excluded; their people)
    into ``out``; one that cannot be used is logged by its token, counted by reason and passed over."""
    (out / site).mkdir(parents=True)
    records: list[tuple[dict, dict]] = []
    counts = dict.fromkeys(SKIP_REASONS, 0)
    # An excluded recording keeps its number, so the others' tokens do not move with --exclude.
    chosen = [(index, rel) for index, rel in enumerate(relpaths) if rel is not None]
    for index, rel in tqdm(chosen, unit="rec", desc="planting", disable=None):
        try:
            raw = open_recording(background / rel)
        except Exception as err:  # any reader's failure (format, header, I/O) skips this file only
            log.warning("r%04d skipped: MNE could not read it (%s)", index, type(err).__name__)
            counts["unreadable"] += 1
            continue
        problem = why_unusable(raw, WINDOW_S)
        if problem:
            log.warning("r%04d skipped: %s", index, problem[1])
            counts[problem[0]] += 1
            continue
        records += plant_recording(raw, options, index, people[index], out / site, site)
    return records, counts


def summarize(options: PlantOptions, records: list, counts: dict, relpaths: list[str | None], site: str) -> dict:
    """planted.json: the options and what came of them. No path, glob or pattern: they may hold names."""
    truths = [truth for _, truth in records]
    return {
        "seed": options.seed,
        "options": {
            "per_recording": options.per_recording,
            "gain_range": list(options.gain_range),
            "strength_range": list(options.strength_range),
            "other_fraction": options.other_fraction,
            "eye_artifact_fraction": options.eye_artifact_fraction,
            "site": site,
        },
        "window_s": WINDOW_S,
        "recordings": {
            "listed": len(relpaths),
            "excluded": sum(rel is None for rel in relpaths),
            "planted": len({t["recording"] for t in truths}),
            "skipped": counts,
        },
        "people": len({t["patient_id"] for t in truths}),
        "stretches": len(truths),
        "stretches_by_class": {c: sum(t["class"] == c for t in truths) for c in CLASSES},
    }


def excluding(relpaths: list[str], globs: Sequence[str]) -> list[str | None]:
    """``relpaths`` with None for each whose path or file name matches one of ``globs``."""
    return [
        None if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], g) for g in globs) else rel
        for rel in relpaths
    ]


class Refused(ValueError):
    """What the command cannot plant with its checked options (the output folder, no usable
    recording): reported as a usage error naming the flag."""


def plant_command(args: argparse.Namespace, options: PlantOptions) -> int:
    """eegfm-planted once its options are checked: the corpus from ``args.background`` published at
    ``args.output``; Refused where it cannot be (nothing is left behind)."""
    setup_logging()
    try:
        ancestor = check_output(args.output, args.overwrite)
    except ConfigError as err:
        raise Refused(f"--{err}") from None
    listed = list_recordings(args.background)
    relpaths = excluding(listed, args.exclude)
    if all(rel is None for rel in relpaths):
        raise Refused(
            f"--background: {args.background}: no recording ({', '.join(EXTENSIONS)}) left to plant in "
            f"({len(listed)} listed, {len(listed)} excluded)"
        )
    people = person_tokens(listed, args.person)
    staging = stage_directory(ancestor, args.output)
    try:
        records, counts = plant_corpus(args.background, staging, options, relpaths, people, args.site)
        if not records:
            raise Refused(
                f"--background: {args.background}: no recording of at least {WINDOW_S:g} s with "
                f"{MIN_ELECTRODES} of the 19 10-20 electrodes (skipped: {counts})"
            )
        summary = summarize(options, records, counts, relpaths, args.site)
        write_corpus(staging, records, summary)
        publish(staging, args.output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "%d stretches from %d recordings of %d people",
        summary["stretches"],
        summary["recordings"]["planted"],
        summary["people"],
    )
    print(json.dumps({k: summary[k] for k in ("recordings", "people", "stretches", "stretches_by_class")}))
    return 0
