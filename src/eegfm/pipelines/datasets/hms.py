"""Kaggle's HMS layout: ``train.csv`` + ``train_eegs/<eeg_id>.parquet``, ``test.csv`` + ``test_eegs/``.

A train parquet's item holds every labeled 50 s window with its six vote counts; a test parquet's
each row's 50 s window (task ``hms6``, no votes). Parquets without csv rows are processed unlabeled;
csv rows without a parquet are reported. A row with an unusable cell (a vote empty, negative, NaN or
all 0, an offset not a number) makes a window with a ``problem``, quarantined alone.

``train_spectrograms/<spectrogram_id>.parquet`` beside ``train_eegs/`` is the spectrogram of the
train.csv rows naming that ``spectrogram_id``: the item carries its path, each labeled window its
``spectrogram_label_offset_seconds`` (the pipeline stores those 10 minutes with the window). A
spectrogram file no row names is reported as ignored.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re

from eegfm.core.tasks import HMS_VOTE_COLUMNS
from eegfm.pipelines.datasets.adapters import Group, companion_files, lower_ext, register, sidecar, split_recordings
from eegfm.pipelines.datasets.items import COMPANION_EXTENSIONS, Ignored, LabeledWindow, SourceItem
from eegfm.pipelines.datasets.tables import csv_rows, number

HMS_WINDOW_S = 50.0
_CSVS = ("train.csv", "test.csv")


def _detect(files: list[str]) -> bool:
    if not any(f.lower().endswith(".parquet") for f in files):
        return False
    return bool(set(_CSVS) & {posixpath.basename(f) for f in files}) or all(
        lower_ext(f) in (".parquet",) + COMPANION_EXTENSIONS for f in files
    )


@companion_files
def _csv_files(path: str, _listed: set[str]) -> str | None:
    return sidecar(path) if posixpath.basename(path) in _CSVS else None


def votes_window(row: dict, where: str, task: str = "hms6") -> LabeledWindow:
    """The labeled 50 s window of a csv row with HMS's vote columns; ``where`` names the row."""
    try:
        offset = number(row, "eeg_label_offset_seconds", default=0.0)
    except ValueError as err:
        return LabeledWindow(math.nan, HMS_WINDOW_S, task=task, problem=f"{where}: {err}")
    try:
        votes = tuple(number(row, c, minimum=0.0) for c in HMS_VOTE_COLUMNS)
        if not sum(votes) > 0:
            raise ValueError(f"no expert votes ({', '.join(HMS_VOTE_COLUMNS)} all 0)")
    except ValueError as err:
        return LabeledWindow(offset, HMS_WINDOW_S, task=task, problem=f"{where}: {err}")
    try:  # only the spectrogram is lost to a bad cell here, never the window
        spectrogram_offset = number(row, "spectrogram_label_offset_seconds", minimum=0.0)
    except ValueError:
        spectrogram_offset = None
    label = max(range(6), key=lambda k: votes[k])
    return LabeledWindow(offset, HMS_WINDOW_S, label, votes, task, spectrogram_offset_s=spectrogram_offset)


def _test_windows(rows: list[tuple[str, dict]]) -> tuple[LabeledWindow, ...]:
    """The 50 s windows that test.csv rows (``(where, row)``) ask about: no votes, label -1, task hms6."""
    offsets, bad = set(), []
    for where, row in rows:
        try:
            offsets.add(number(row, "eeg_label_offset_seconds", default=0.0))
        except ValueError as err:
            bad.append(LabeledWindow(math.nan, HMS_WINDOW_S, task="hms6", problem=f"{where}: {err}"))
    return tuple(LabeledWindow(offset, HMS_WINDOW_S, -1, (), "hms6") for offset in sorted(offsets)) + tuple(bad)


def _id_cell(text: str | None) -> str:
    """An id cell as the file names have it (a csv that went through pandas' floats: ``1000913311.0``)."""
    text = (text or "").strip()
    return text[: text.index(".")] if re.fullmatch(r"\d+\.0+", text) else text


def _root_name(path: str) -> str:
    parent = posixpath.dirname(path)
    if posixpath.basename(parent) in ("train_eegs", "test_eegs"):
        parent = posixpath.dirname(parent)
    return posixpath.basename(parent) or "hms"


def _csv_facts(files: list[str]):
    """From train.csv and test.csv: their rows by eeg_id (``(where, row)``), and each eeg_id's patient and site."""
    rows: dict[str, dict[str, list[tuple[str, dict]]]] = {"train": {}, "test": {}}
    patient_of: dict[str, str] = {}
    site_of: dict[str, str] = {}
    for csv_path in [f for f in files if posixpath.basename(f) in _CSVS]:
        kind = posixpath.basename(csv_path)[:-4]
        for where, row in csv_rows(csv_path):
            eeg_id = _id_cell(row.get("eeg_id"))
            if not eeg_id:
                continue
            patient_of[eeg_id] = _id_cell(row.get("patient_id"))
            if row.get("site"):
                site_of[eeg_id] = row["site"].strip()
            rows[kind].setdefault(eeg_id, []).append((where, row))
    return rows, patient_of, site_of


def _with_spectrogram(
    train_rows: list[tuple[str, dict]], spectrograms: dict[str, str]
) -> tuple[tuple[LabeledWindow, ...], str]:
    """The labeled windows of an EEG's train.csv rows and the path of their spectrogram ("" if its
    file is not among the inputs). An EEG's rows name one spectrogram_id in Kaggle's data; rows
    naming another keep no spectrogram offset (their windows' spectrograms are computed)."""
    windows = [votes_window(row, where) for where, row in train_rows]
    ids = [_id_cell(row.get("spectrogram_id")) for _, row in train_rows]
    path = spectrograms.get(ids[0], "") if ids else ""
    windows = [
        w if spectrogram_id == ids[0] and path else dataclasses.replace(w, spectrogram_offset_s=None)
        for w, spectrogram_id in zip(windows, ids)
    ]
    return tuple(windows), path


@register("hms", detect=_detect)
def list_hms(group: Group):
    recordings, ignored = split_recordings(group.files)
    parquets = [f for f in recordings if f.lower().endswith(".parquet")]
    aux = ("train_spectrograms", "test_spectrograms")
    spectrograms = [f for f in parquets if posixpath.basename(posixpath.dirname(f)) in aux]
    # EEG parquets by path: train_eegs/ and test_eegs/ may hold the same eeg_id, each its own file.
    parquets = sorted(f for f in parquets if f not in spectrograms)
    rows, patient_of, site_of = _csv_facts(group.files)
    train_spectrograms = {
        posixpath.splitext(posixpath.basename(f))[0]: f
        for f in spectrograms
        if posixpath.basename(posixpath.dirname(f)) == "train_spectrograms"
    }
    used: set[str] = set()
    items = []
    found = {"train": set(), "test": set()}  # eeg_ids with a parquet each csv's rows can use
    for path in parquets:
        eeg_id = posixpath.splitext(posixpath.basename(path))[0]
        # A train_eegs/ file takes train.csv's rows, a test_eegs/ file test.csv's; one elsewhere either.
        folder = posixpath.basename(posixpath.dirname(path))
        kinds = {"train_eegs": ("train",), "test_eegs": ("test",)}.get(folder, ("train", "test"))
        train_rows = rows["train"].get(eeg_id, []) if "train" in kinds else []
        windows, spectrogram = _with_spectrogram(train_rows, train_spectrograms)
        used.add(spectrogram)
        if not windows and "test" in kinds:
            windows = _test_windows(rows["test"].get(eeg_id, []))
        for kind in kinds:
            found[kind].add(eeg_id)
        items.append(
            SourceItem(
                path=path,
                dataset="hms",
                site=group.site or site_of.get(eeg_id) or _root_name(path),
                subject_key=patient_of.get(eeg_id, eeg_id),
                session_key=eeg_id,
                task="hms6" if windows else "",
                windows=windows,
                spectrogram_path=spectrogram,
            )
        )
    reason = "HMS spectrogram that no train.csv row names (spectrogram_id) beside its EEG"
    ignored += [Ignored(f, reason) for f in spectrograms if f not in used]
    others = [f for f in recordings if not f.lower().endswith(".parquet")]  # an EDF beside, say: unlabeled
    items += [SourceItem(path=f, dataset="edf", site=group.site_of(f)) for f in others]
    for name in ("train", "test"):
        for eeg_id in sorted(set(rows[name]) - found[name]):
            ignored.append(
                Ignored(
                    f"{name}.csv#eeg_id={eeg_id}",
                    f"{name}.csv rows name eeg_id {eeg_id} but {name}_eegs/{eeg_id}.parquet is not among the inputs",
                )
            )
    return items, ignored
