"""What ``eegfm-predict`` writes besides recordings.json: predictions.csv's rows, the Kaggle HMS
submission, the timelines' names; and how it knows the files of a run already in ``--output``.

A run's files are recognized by name alone, the names eegfm-predict gives them: ``predictions.csv``,
``recordings.csv``, ``recordings.json`` and their ``.partial`` forms, ``timelines/NNN_<name>.png``
and ``explanations/NNN_<name>_w<k>.json`` / ``.png`` (``NNN``: three or more digits; ``<name>``:
up to 60 of letters, digits, ``.``, ``_``, ``-``). Anything else in the folder is the user's and
is never touched; links are removed, never followed (a linked ``timelines/`` is not looked into).

Every CSV cell of text (a name, a label, a reason) goes through ``core.text_safety.csv_text``: a
spreadsheet must show ``=HYPERLINK(...)`` as text. Numbers the run formats stay numbers.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eegfm.core.logs import get_logger
from eegfm.core.tasks import HMS_CLASSES, HMS_VOTE_COLUMNS
from eegfm.core.text_safety import csv_text
from eegfm.serving.recording_table import FILE as RECORDINGS_CSV

log = get_logger(__name__)
PREDICTIONS_CSV = "predictions.csv"
RECORDINGS_JSON = "recordings.json"
PARTIAL = (f".{PREDICTIONS_CSV}.partial", f".{RECORDINGS_CSV}.partial")  # written, then renamed when complete
RUN_FILES = (PREDICTIONS_CSV, RECORDINGS_CSV, RECORDINGS_JSON, *PARTIAL)
_STEM = r"\d{3,}_[A-Za-z0-9._-]{0,60}"
RUN_FOLDERS = {
    "timelines": re.compile(rf"{_STEM}\.png"),
    "explanations": re.compile(rf"{_STEM}_w\d+\.(?:json|png)"),
}
CLINICAL_COLUMNS = [
    "confidence",
    "entropy",
    "mutual_information",
    "mc_passes",
    "clinical_recommendation",
    "recommendation_rule",
    "model_version",
]


def _not_a_folder(entry: os.DirEntry | Path) -> bool:
    """A file or a link (to anything): what may be unlinked without touching what it points to."""
    if isinstance(entry, Path):
        return entry.is_symlink() or entry.is_file()
    return entry.is_symlink() or entry.is_file(follow_symlinks=False)


def previous_run(output: Path) -> list[Path]:
    """The files of an eegfm-predict run in ``output`` (recognized by name: the module docstring)."""
    if not output.is_dir():
        return []
    found = [output / name for name in RUN_FILES if _not_a_folder(output / name)]
    for folder, pattern in RUN_FOLDERS.items():
        where = output / folder
        if where.is_dir() and not where.is_symlink():
            with os.scandir(where) as entries:
                found += sorted(where / e.name for e in entries if pattern.fullmatch(e.name) and _not_a_folder(e))
    return found


def run_summary(output: Path, files: Sequence[Path]) -> str:
    """``predictions.csv, recordings.json and 3 files in timelines/``: what :func:`previous_run` found."""
    said = [f.name for f in files if f.parent == output]
    for folder in RUN_FOLDERS:
        if n := sum(f.parent == output / folder for f in files):
            said.append(f"{n} file{'s' * (n > 1)} in {folder}/")
    return ", ".join(said[:-1]) + (" and " if len(said) > 1 else "") + said[-1]


def remove_run(output: Path, files: Sequence[Path]) -> None:
    """Unlink ``files`` (:func:`previous_run`'s), then the run's folders where nothing else is left."""
    for path in files:
        path.unlink(missing_ok=True)
    for folder in RUN_FOLDERS:
        try:
            (output / folder).rmdir()
        except OSError:  # absent, or the user's own files are in it: it stays
            pass


def plot_name(index: int, name: str) -> str:
    """``NNN_<stem>.png``; ``name``: a recording's path, or its token under redaction."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0])[:60]
    return f"{index:03d}_{stem}.png"


def prediction_header(labels: Sequence[str]) -> list[str]:
    """predictions.csv's header (a model's labels are free text)."""
    best = ["predicted"] if len(labels) > 1 else []
    fixed = ["index", "input", "start_s", "duration_s"]
    return [*fixed, *map(csv_text, labels), *best, "artifact_score", "masked_channels", "votes", *CLINICAL_COLUMNS]


def prediction_row(prediction, w, labels: Sequence[str]) -> list[str]:
    """predictions.csv's row of the window ``w`` of ``prediction``."""
    best = [csv_text(labels[int(np.argmax(w.outputs))])] if len(labels) > 1 else []
    return [
        str(prediction.index),
        csv_text(prediction.input),
        f"{w.start_s:.4f}",
        f"{w.duration_s:g}",
        *(f"{v:.6g}" for v in w.outputs),
        *best,
        f"{w.artifact_score:.4f}",
        csv_text(";".join(w.masked_channels)),
        ";".join(f"{v:g}" for v in w.votes),
        *_reading_cells(w),
    ]


def _reading_cells(w) -> list[str]:
    """predictions.csv's cells of CLINICAL_COLUMNS for the window ``w`` ('' for a null)."""
    number = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    u = w.uncertainty
    return [
        number(w.confidence),
        number(u.get("entropy")),
        number(u.get("mutual_information")),
        str(u.get("passes", 0)),
        csv_text(w.clinical_recommendation),
        csv_text(w.recommendation_rule),
        csv_text(w.model_version),
    ]


def write_submission(path: Path, recordings: list[dict], prior: tuple[float, ...] | None) -> int:
    """The Kaggle HMS submission for the recordings' summaries (``RecordingPrediction.summary``):
    a row per HMS parquet recording, sorted by eeg_id; the number of rows."""
    fallback = prior or tuple(1 / len(HMS_CLASSES) for _ in HMS_CLASSES)
    rows, unscored, skipped = [], [], []
    for recording in recordings:
        eeg_id = recording.get("eeg_id")  # under redaction the input is a token, not the parquet's name
        if not eeg_id:
            skipped.append(recording["input"])
            continue
        if recording["status"] == "processed":
            probabilities = [recording["mean_outputs"][label] for label in HMS_CLASSES]
        else:
            probabilities = list(fallback)
            unscored.append(eeg_id)
        rows.append([eeg_id, *probabilities])
    if skipped:
        log.warning(
            "--submission: %d input(s) are not HMS parquet recordings and have no row: %s",
            len(skipped),
            ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
        )
    if unscored:
        log.warning(
            "--submission: eeg_id %s could not be scored (recordings.json says why); their rows hold the %s",
            ", ".join(unscored),
            "class prior of the model's training windows"
            if prior
            else "uniform distribution (the model folder has no run.json with a prior)",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fileobj:
        writer = csv.writer(fileobj)
        writer.writerow(["eeg_id", *HMS_VOTE_COLUMNS])
        for row in sorted(rows, key=lambda r: r[0]):
            writer.writerow([csv_text(row[0]), *(f"{p:.6g}" for p in row[1:])])
    return len(rows)
