"""Planning and writing a whole simulated corpus, atomically.

:func:`plan_corpus` makes every random choice (sites, patients, timelines, votes, identifiers,
ids) without rendering a sample; :func:`generate_corpus` renders each recording chunk by chunk
into a temporary sibling directory and renames it into place only when everything succeeded, so
an error or an interruption never leaves a partial corpus at the output path.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.core import __version__
from eegfm.core.config import Config, check_int, check_option, check_range
from eegfm.core.logs import get_logger
from eegfm.simulate.edf import edf_date
from eegfm.simulate.montages import site_montage
from eegfm.simulate.output import check_output, publish, stage_directory
from eegfm.simulate.plan import (
    CENTRE_S,
    SPECTROGRAM_WINDOW_S,
    WINDOW_S,
    RecordingPlan,
    draw_classes,
    ensure_class_coverage,
    letters_code,
    plan_patient,
    plan_recording,
    plan_segments,
)
from eegfm.simulate.render import WARMUP_S, RecordingRenderer
from eegfm.simulate.rng import rng_for, stable_int
from eegfm.simulate.sites import CLASSES, MONTAGES, SiteProfile, default_sites
from eegfm.simulate.writers import (
    HMS_EEG_COLUMNS,
    TRAIN_COLUMNS,
    EdfSink,
    HmsSink,
    label_rows,
    write_csv,
    write_json,
    write_jsonl,
)

FORMATS = ("edf", "hms", "both")
# "site": each site's own montage (SiteProfile.montage); otherwise every site's EDF in this one.
MONTAGE_CHOICES = ("site", *MONTAGES)
MAX_MINUTES = 24 * 60
log = get_logger("simulate")


@dataclasses.dataclass
class CorpusConfig(Config):
    """What to simulate. ``minutes`` is rounded to whole seconds (EDF records last 1 s)."""

    sites: int = 4
    subjects_per_site: int = 3
    recordings_per_subject: int = 2
    minutes: float = 5.0
    seed: int = 0
    format: str = "both"
    montage: str = "site"
    chunk_seconds: int = 60
    site_profiles: tuple[SiteProfile, ...] = ()

    def validate(self) -> None:
        # int(): numpy integers pass check_int but not json.dumps (corpus.json).
        self.sites = int(check_int("sites", self.sites, 1, 1000))
        self.subjects_per_site = int(check_int("subjects_per_site", self.subjects_per_site, 1, 10_000))
        self.recordings_per_subject = int(check_int("recordings_per_subject", self.recordings_per_subject, 1, 999))
        self.seed = int(check_int("seed", self.seed, 0, 2**63 - 1))
        self.chunk_seconds = int(check_int("chunk_seconds", self.chunk_seconds, 1, 3600))
        check_range("minutes", self.minutes, 1, MAX_MINUTES)
        check_option("format", self.format, FORMATS)
        check_option("montage", self.montage, MONTAGE_CHOICES)
        profiles = tuple(p if isinstance(p, SiteProfile) else SiteProfile.from_dict(p) for p in self.site_profiles)
        self.site_profiles = profiles

    @property
    def duration_s(self) -> int:
        return int(round(self.minutes * 60))

    @property
    def write_edf(self) -> bool:
        return self.format in ("edf", "both")

    @property
    def write_hms(self) -> bool:
        return self.format in ("hms", "both")


@dataclasses.dataclass(frozen=True)
class CorpusPlan:
    config: CorpusConfig
    sites: tuple[SiteProfile, ...]
    recordings: tuple[RecordingPlan, ...]

    @property
    def eeg_hours(self) -> float:
        return sum(r.duration_s for r in self.recordings) / 3600.0

    @functools.cached_property
    def label_rows(self) -> list[dict[str, Any]]:
        """train.csv rows of every recording (HMS columns + ``site``)."""
        return [row for r in self.recordings for row in label_rows(r)]


@dataclasses.dataclass(frozen=True)
class CorpusSummary:
    output: Path
    n_recordings: int
    n_patients: int
    n_sites: int
    eeg_hours: float
    n_label_rows: int
    consensus_counts: dict[str, int]
    seconds: float
    files: dict[str, str]


def _unique_ids(seed: int, tag: str, keys: Iterable[tuple[int, ...]], low: int, high: int) -> dict:
    """Deterministic distinct integers per key; a rare collision is redrawn with a counter."""
    keys = list(keys)
    if len(keys) > (high - low) // 4:
        raise ValueError(f"{tag}: {len(keys)} ids do not fit comfortably in [{low}, {high})")
    ids: dict[tuple[int, ...], int] = {}
    used: set[int] = set()
    for key in keys:
        attempt = 0
        value = stable_int(seed, tag, *key, low=low, high=high)
        while value in used:
            attempt += 1
            value = stable_int(seed, tag, *key, 10**6 + attempt, low=low, high=high)
        ids[key] = value
        used.add(value)
    return ids


def plan_corpus(config: CorpusConfig) -> CorpusPlan:
    """Every recording's plan, with classes balanced so that small corpora cover all six."""
    seed = config.seed
    sites = tuple(default_sites(config.sites, seed, config.site_profiles or None))
    if config.montage != "site":  # planning never reads the montage: only the EDF files change
        sites = tuple(site.replace(montage=config.montage) for site in sites)
    subject_keys = [(i, j) for i in range(len(sites)) for j in range(config.subjects_per_site)]
    recording_keys = [(i, j, k) for i, j in subject_keys for k in range(config.recordings_per_subject)]
    # HMS patient ids have 5 digits; very large corpora get more.
    patient_ids = _unique_ids(seed, "patient_id", subject_keys, 10_000, max(100_000, 10_000 + 8 * len(subject_keys)))
    subject_codes = {
        key: letters_code(value) for key, value in _unique_ids(seed, "subject_code", subject_keys, 0, 26**8).items()
    }
    eeg_ids = _unique_ids(seed, "eeg_id", recording_keys, 10**8, 4 * 10**9)
    spectrogram_ids = _unique_ids(seed, "spectrogram_id", recording_keys, 10**6, 2 * 10**9)
    patients = {key: plan_patient(seed, *key, patient_ids[key], subject_codes[key]) for key in subject_keys}

    duration = config.duration_s
    timelines = {key: plan_segments(rng_for(seed, "timeline", *key), duration) for key in recording_keys}
    drawn = []
    for key in recording_keys:
        classes = draw_classes(rng_for(seed, "classes", *key), sites[key[0]], len(timelines[key]))
        drawn.extend((sites[key[0]], cls) for cls in classes)
    balanced = iter(ensure_class_coverage(drawn))

    recordings = []
    for key in recording_keys:
        classes = [next(balanced) for _ in timelines[key]]
        ids = (eeg_ids[key], spectrogram_ids[key])
        patient = patients[key[:2]]
        recordings.append(plan_recording(seed, sites[key[0]], patient, key[2], duration, timelines[key], classes, ids))
    return CorpusPlan(config=config, sites=sites, recordings=tuple(_assign_label_ids(seed, recordings)))


def _assign_label_ids(seed: int, recordings: list[RecordingPlan]) -> list[RecordingPlan]:
    keys = [(*r.key, w.eeg_sub_id) for r in recordings for w in r.windows]
    label_ids = _unique_ids(seed, "label_id", keys, 10**8, 4 * 10**9)
    return [
        dataclasses.replace(
            r, windows=tuple(dataclasses.replace(w, label_id=label_ids[(*r.key, w.eeg_sub_id)]) for w in r.windows)
        )
        for r in recordings
    ]


def render_recording(
    plan: RecordingPlan,
    root: Path,
    *,
    write_edf: bool,
    write_hms: bool,
    chunk_seconds: int = 60,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Render ``plan`` chunk by chunk into ``root/edf/...`` and/or ``root/hms/...``.

    The warm-up always runs, so EDF samples do not depend on the formats written; only the HMS
    sink consumes it and one second past the end (the resampling filter's history and look-ahead).
    """
    sfreq = plan.site.sfreq
    sinks: list[Any] = []
    hms = None
    with threadpool_limits(limits=1, user_api="blas"):
        renderer = RecordingRenderer(plan, warmup_s=WARMUP_S)
        warmup = renderer.render(WARMUP_S * sfreq)
        if write_edf:
            path = root / "edf" / plan.edf_relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            sinks.append(EdfSink(path, plan))
        if write_hms:
            eeg_path = root / "hms" / "train_eegs" / f"{plan.eeg_id}.parquet"
            spectrogram_path = root / "hms" / "train_spectrograms" / f"{plan.spectrogram_id}.parquet"
            for path in (eeg_path, spectrogram_path):
                path.parent.mkdir(parents=True, exist_ok=True)
            hms = HmsSink(eeg_path, spectrogram_path, plan, first_sample=warmup.start_sample)
            hms.write(warmup)
            sinks.append(hms)
        try:
            for start in range(0, plan.duration_s, chunk_seconds):
                seconds = min(chunk_seconds, plan.duration_s - start)
                chunk = renderer.render(seconds * sfreq)
                for sink in sinks:
                    sink.write(chunk)
                if on_progress is not None:
                    on_progress(seconds)
            if hms is not None:
                hms.write(renderer.render(sfreq))  # look-ahead for the resampling filter
            for sink in sinks:
                sink.close()
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise


def truth_record(plan: RecordingPlan, config: CorpusConfig) -> dict[str, Any]:
    """Ground truth for one recording (no identifiers)."""
    site = plan.site
    recorded = site.recorded_channels()
    montage = site_montage(site)
    return {
        "eeg_id": plan.eeg_id,
        "spectrogram_id": plan.spectrogram_id,
        "site": site.name,
        "patient_id": plan.patient.patient_id,
        "subject_code": plan.patient.subject_code,
        "session": plan.session_index + 1,
        "edf_path": plan.edf_relpath if config.write_edf else None,
        "hms_eeg_path": f"train_eegs/{plan.eeg_id}.parquet" if config.write_hms else None,
        "hms_spectrogram_path": (f"train_spectrograms/{plan.spectrogram_id}.parquet" if config.write_hms else None),
        "sfreq": site.sfreq,
        "duration_s": plan.duration_s,
        "n_times": plan.n_times,
        "line_freq": site.line_freq,
        "reference": site.reference,
        "physical_dimension": site.physical_dimension,
        "gain": site.gain,
        "edf_plus": site.edf_plus,
        "recorded_channels": list(recorded),
        "missing_channels": [c for c in CANONICAL_CHANNELS if c in site.missing_channels],
        # Each electrode's own signal label; none in a bipolar montage, whose derivations follow.
        "channel_labels": {c: site.eeg_label(c) for c in recorded} if site.montage == "referential" else {},
        "montage": site.montage,
        "derivations": [[label, *pair] for label, pair in zip(montage.labels, montage.pairs)],
        "aux_channels": {kind: site.aux_label(kind) for kind in site.aux_channels},
        "background": {
            "alpha_freq_hz": round(plan.background.alpha_freq, 3),
            "alpha_uv": round(plan.background.alpha_uv, 2),
            "broadband_uv": round(plan.background.broadband_uv, 2),
            "scalp_scale": round(plan.scalp_scale, 3),
            "slowing_uv": round(plan.background.slowing_uv, 2),
            "slowing_sides": list(plan.background.slowing_sides),
            "sleep_intervals": [list(i) for i in plan.background.sleep_intervals],
            "spindles": len(plan.background.spindle_times),
        },
        "states": plan.background.states(plan.duration_s),
        "artifacts": plan.artifacts.counts(),
        "episodes": [e.summary() for e in plan.episodes],
        "windows": [
            {
                "eeg_sub_id": w.eeg_sub_id,
                "label_id": w.label_id,
                "eeg_label_offset_seconds": w.offset_s,
                "spectrogram_label_offset_seconds": w.spectrogram_offset_s,
                "episode": w.episode_index,
                "class": plan.episodes[w.episode_index].cls,
                "strength": round(plan.episodes[w.episode_index].strength, 4),
                "votes": list(w.votes),
                "expert_consensus": w.consensus,
            }
            for w in plan.windows
        ],
    }


def identifier_record(plan: RecordingPlan, config: CorpusConfig) -> dict[str, Any]:
    """What was planted in this recording's EDF header (ground truth for de-identification)."""
    identity = plan.patient.identity
    return {
        "eeg_id": plan.eeg_id,
        "site": plan.site.name,
        "edf_path": plan.edf_relpath if config.write_edf else None,
        "patient": {
            "first_name": identity.first,
            "last_name": identity.last,
            "sex": identity.sex,
            "birthdate": identity.birthdate.isoformat(),
            "mrn": identity.mrn,
        },
        "technician": {"first_name": plan.technician.first, "last_name": plan.technician.last},
        "recording_start": plan.start.isoformat(),
        # Dates are identifiers too; these are how the EDF header writes the start date.
        "recording_date_formats": [
            plan.start.date().isoformat(),
            edf_date(plan.start.date()),
            plan.start.strftime("%d.%m.%y"),
        ],
        "patient_field": plan.planted.patient,
        "recording_field": plan.planted.recording,
        "annotations": [a.text for a in plan.planted.annotations],
        "search_strings": list(plan.planted.search_strings),
    }


def corpus_manifest(plan: CorpusPlan) -> dict[str, Any]:
    """corpus.json: configuration, site profiles and counts. No wall times (byte-reproducible)."""
    config = plan.config
    rows = plan.label_rows
    per_site = Counter(r.site.name for r in plan.recordings)
    return {
        "generator": "eegfm.simulate",
        "version": __version__,
        "seed": config.seed,
        # chunk_seconds only trades memory for speed; the files do not depend on it.
        "config": {k: v for k, v in config.to_dict().items() if k not in ("site_profiles", "chunk_seconds")},
        "classes": list(CLASSES),
        "conventions": {
            "eeg_window_s": WINDOW_S,
            "labeled_centre_s": CENTRE_S,
            "spectrogram_window_s": SPECTROGRAM_WINDOW_S,
            "spectrogram_offset": "centred on the EEG window's centre, clipped to [0, duration - 600]",
            "hms_sfreq": 200,
            "hms_columns": list(HMS_EEG_COLUMNS),
            "hms_missing_channels": "NaN",
            "hms_units": "microvolts, float32, rounded to 0.01",
            "vote_tie_break": "first class in `classes` order",
        },
        "sites": [{**site.to_dict(), "n_recordings": per_site.get(site.name, 0)} for site in plan.sites],
        "counts": {
            "sites": len(plan.sites),
            "patients": len({r.patient.patient_id for r in plan.recordings}),
            "recordings": len(plan.recordings),
            "eeg_hours": round(plan.eeg_hours, 6),
            "label_rows": len(rows),
            "episodes_per_class": dict(Counter(e.cls for r in plan.recordings for e in r.episodes)),
            "consensus_per_class": dict(Counter(row["expert_consensus"] for row in rows)),
        },
    }


def write_metadata(plan: CorpusPlan, root: Path) -> dict[str, Any]:
    """corpus.json, truth.jsonl, identifiers.json and the label tables; returns corpus.json's counts."""
    config = plan.config
    manifest = corpus_manifest(plan)
    write_json(root / "corpus.json", manifest)
    write_jsonl(root / "truth.jsonl", (truth_record(r, config) for r in plan.recordings))
    warning = (
        "Simulated identities planted in EDF headers, for de-identification tests only. Not an input of the pipeline."
    )
    identifiers = [identifier_record(r, config) for r in plan.recordings]
    write_json(root / "identifiers.json", {"warning": warning, "recordings": identifiers})
    rows = plan.label_rows
    if config.write_edf:
        paths = {r.eeg_id: r.edf_relpath for r in plan.recordings}
        write_csv(
            root / "edf" / "labels.csv",
            (*TRAIN_COLUMNS, "site", "path"),
            ({**row, "path": paths[row["eeg_id"]]} for row in rows),
        )
    if config.write_hms:
        write_csv(root / "hms" / "train.csv", (*TRAIN_COLUMNS, "site"), rows)
    return manifest["counts"]


def generate_corpus(
    config: CorpusConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[float], None] | None = None,
) -> CorpusSummary:
    """Plan, render and write a corpus at ``output`` (atomically). See the package docstring."""
    began = time.perf_counter()
    output = Path(output).absolute()
    ancestor = check_output(output, overwrite)
    plan = plan_corpus(config)
    staging = stage_directory(ancestor, output)
    try:
        log.info("simulating %d recordings (%.2f EEG-hours) into %s", len(plan.recordings), plan.eeg_hours, output)
        for recording in plan.recordings:
            render_recording(
                recording,
                staging,
                write_edf=config.write_edf,
                write_hms=config.write_hms,
                chunk_seconds=config.chunk_seconds,
                on_progress=progress,
            )
        counts = write_metadata(plan, staging)
        publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CorpusSummary(
        output=output,
        n_recordings=counts["recordings"],
        n_patients=counts["patients"],
        n_sites=counts["sites"],
        eeg_hours=plan.eeg_hours,
        n_label_rows=counts["label_rows"],
        consensus_counts=counts["consensus_per_class"],
        seconds=time.perf_counter() - began,
        files=_layout(output, config),
    )


def _layout(output: Path, config: CorpusConfig) -> dict[str, str]:
    """What the summary lists: name -> path of each file or folder the format writes."""
    files = {"corpus": "corpus.json", "truth": "truth.jsonl", "identifiers": "identifiers.json"}
    if config.write_edf:
        files.update(edf="edf", edf_labels="edf/labels.csv")
    if config.write_hms:
        files.update(hms_train_csv="hms/train.csv", hms_eegs="hms/train_eegs")
        files.update(hms_spectrograms="hms/train_spectrograms")
    return {name: str(output / path) for name, path in files.items()}
