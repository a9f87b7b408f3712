"""Any folder of EDF/BDF/FIF/BrainVision/EEGLAB files, labeled by an optional ``labels.csv``.

``labels.csv`` attaches labels by ``path`` (relative to it): HMS's vote columns give an hms6 window;
``task`` + ``label`` label the whole recording, or with ``start_s`` and ``duration_s`` one window
(several rows per file); an optional ``split`` (train, val or test) is the recording's corpus split.
A FIF split into parts is one item, its first part (``pipelines.readers.fif_parts``).
"""

from __future__ import annotations

import math
import posixpath

from eegfm.core.stores import is_remote, join_path
from eegfm.core.tasks import HMS_VOTE_COLUMNS
from eegfm.pipelines.datasets.adapters import Group, companion_files, log, register, sidecar, split_recordings
from eegfm.pipelines.datasets.hms import votes_window
from eegfm.pipelines.datasets.items import LabeledWindow, SourceItem
from eegfm.pipelines.datasets.tables import csv_rows, number


@companion_files
def _labels_csv(path: str, _listed: set[str]) -> str | None:
    return sidecar(path) if posixpath.basename(path) == "labels.csv" else None


def labeled_path(base: str, cell: str) -> str:
    """The file a labels.csv ``path`` cell names, relative to its folder ``base`` (also ``a\\r1.edf``, ``./r1.edf``)."""
    cell = cell.strip().replace("\\", "/")
    return cell if cell.startswith("/") or is_remote(cell) else join_path(base, posixpath.normpath(cell))


def warn_unmatched_labels(label_files: list[str], recordings: set[str]) -> None:
    """Name the labels.csv rows whose file is no input recording (a typo, a file left out)."""
    for f in label_files:
        base = posixpath.dirname(f)
        unmatched = sorted({labeled_path(base, row["path"]) for _, row in csv_rows(f) if row.get("path")} - recordings)
        if unmatched:
            log.warning(
                "%s: %d labeled file(s) are not among the input recordings, e.g. %s",
                f,
                len(unmatched),
                ", ".join(unmatched[:3]),
            )


def _unusable(task: str, problem: str) -> LabeledWindow:
    """A window standing for a label that cannot be used: quarantined with ``problem``."""
    return LabeledWindow(math.nan, 0.0, task=task, problem=problem)


def label_row(row: dict, where: str) -> LabeledWindow | tuple[str, int]:
    """What a labels.csv row labels: with HMS's vote columns an hms6 window (``votes_window``); with
    ``task`` and ``label`` (an integer >= 0) the window ``start_s`` .. ``start_s + duration_s``, or
    without ``start_s`` the whole recording, ``(task, label)``. An unusable row: an `_unusable` window."""
    task = (row.get("task") or "").strip()
    if not task and any(column in row for column in HMS_VOTE_COLUMNS):
        return votes_window(row, where)
    if not task:
        got = "an empty cell" if "task" in row else "no such column"
        return _unusable(
            task,
            f"{where}: task: expected the label space's name (e.g. abnormal) beside a label, or HMS's vote "
            f"columns ({', '.join(HMS_VOTE_COLUMNS)}); got {got}",
        )
    try:
        label = number(row, "label", minimum=0.0)
        if label != int(label):
            raise ValueError(f"label: expected an integer >= 0 (a class index); got {row['label'].strip()!r}")
        if not (row.get("start_s") or "").strip():
            return task, int(label)
        start = number(row, "start_s", minimum=0.0)
        duration = number(row, "duration_s")
        if duration <= 0:
            raise ValueError(f"duration_s: expected a number of seconds > 0; got {row['duration_s'].strip()!r}")
    except ValueError as err:
        return _unusable(task, f"{where}: {err}")
    return LabeledWindow(start, duration, int(label), (), task)


# A labels.csv ``split`` cell -> the corpus split a benchmark keeps to (``SourceItem.corpus_split``)
SPLITS = {"train": "train", "val": "dev", "dev": "dev", "test": "eval", "eval": "eval"}


def _split_of(row: dict, where: str) -> tuple[str, str]:
    """``(corpus split, problem)`` of a row's optional ``split`` cell: '' where it has none."""
    cell = (row.get("split") or "").strip().lower()
    if not cell or cell in SPLITS:
        return SPLITS.get(cell, ""), ""
    return "", f"{where}: split: expected train, val or test; got {row['split'].strip()[:20]!r}"


def _read_labels(label_files):
    """From labels.csv files: labeled windows by recording, a recording's label ``(task, label, where)``,
    its patient and its corpus split."""
    windows: dict[str, list[LabeledWindow]] = {}
    whole: dict[str, tuple[str, int, str]] = {}
    patients: dict[str, str] = {}
    splits: dict[str, str] = {}
    for f in label_files:
        base = posixpath.dirname(f)
        for where, row in csv_rows(f):
            if not row.get("path"):
                continue
            target = labeled_path(base, row["path"])
            got = label_row(row, where)
            if isinstance(got, LabeledWindow):
                windows.setdefault(target, []).append(got)
            elif target in whole:
                problem = f"{where}: path: {row['path']} has a label for the whole recording already"
                windows.setdefault(target, []).append(
                    _unusable(got[0], f"{problem} ({whole[target][2]}); one per recording")
                )
            else:
                whole[target] = (*got, where)
            if row.get("patient_id"):
                patients[target] = str(row["patient_id"]).strip()
            split, problem = _split_of(row, where)
            if problem or splits.setdefault(target, split) != split:
                problem = (
                    problem
                    or f"{where}: split: {split!r} beside {splits[target]!r} of an earlier row; one per recording"
                )
                windows.setdefault(target, []).append(
                    _unusable(got[0] if isinstance(got, tuple) else got.task, problem)
                )
    return windows, whole, patients, splits


@register("edf")
def list_generic(group: Group):
    recordings, ignored = split_recordings(group.files)
    label_files = group.label_files or [f for f in group.files if posixpath.basename(f) == "labels.csv"]
    labels, whole, patients, splits = _read_labels(label_files)
    items = []
    for path in recordings:
        windows = tuple(labels.get(path, ()))
        task, label, where = whole.get(path, ("", -1, ""))
        if where and any(not w.problem for w in windows):  # labeled windows are cut alone: the label would go unsaid
            problem = f"{where}: a label for the whole recording beside labeled windows of it"
            windows += (_unusable(task, f"{problem}; label either the recording or windows"),)
            task, label = "", -1
        items.append(
            SourceItem(
                path=path,
                dataset="edf",
                site=group.site_of(path),
                subject_key=patients.get(path, ""),
                task=task or ("hms6" if windows else ""),
                recording_label=label,
                windows=windows,
                corpus_split=splits.get(path, ""),
            )
        )
    return items, ignored
