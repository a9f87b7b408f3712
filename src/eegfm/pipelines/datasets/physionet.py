"""PhysioNet's EEG databases: eegmat (mental arithmetic), EEGMMI (motor movement/imagery), CHB-MIT and Siena (seizures).

- eegmat: ``SubjectNN_1.edf`` rest, ``SubjectNN_2.edf`` task; ``subject-info.csv`` age and sex.
- EEGMMI: ``SNNN/SNNNRKK.edf``, 14 runs per subject; T1 and T2 annotations mark 4 s trials.
- CHB-MIT: ``chbNN/chbNN_MM.edf``, seizures in ``chbNN/chbNN-summary.txt`` (seconds from each file's
  start), age and sex in ``SUBJECT-INFO``; chb21 is chb01 recorded 1.5 years later (one patient).
- Siena: ``PNxx/PNxx-N.edf``, seizures in ``PNxx/Seizures-list-PNxx.txt`` as clock times, counted
  from each file's registration start. CHB-MIT's and Siena's windows: 0 background, 1 seizure.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable
from typing import Any

from eegfm.pipelines.datasets.adapters import (
    Group,
    by_name,
    companion_files,
    every_edf,
    log,
    lower_ext,
    register,
    sidecar,
)
from eegfm.pipelines.datasets.items import RECORDING_EXTENSIONS, LabeledInterval, SourceItem
from eegfm.pipelines.datasets.tables import age_cell, csv_rows, label_files, read_events
from eegfm.pipelines.privacy.deid import normalize_sex

_EEGMAT_NAME = re.compile(r"^Subject(\d+)_([12])\.edf$", re.IGNORECASE)
# The split EEG foundation-model papers evaluate eegmat on (CBraMod, LaBraM, BIOT): as the corpus's
# own split it lets fine-tuning reproduce their numbers and keeps the test subjects out of pretraining.
EEGMAT_SPLIT = (("train", range(0, 28)), ("dev", range(28, 32)), ("eval", range(32, 36)))
EEGMMI_TRIAL_S = 4.0
_EEGMMI_NAME = re.compile(r"^(S\d{3})R(\d{2})\.edf$", re.IGNORECASE)
# run -> (task, label of T1; T2's is the next): left or right fist, then both fists or both feet
# (T0, rest between trials, and runs 1-2, eyes open and closed, stay unlabeled).
_EEGMMI_RUNS = {
    run: (task, first)
    for runs, task, first in (
        ((3, 7, 11), "eegmmi_movement", 0),
        ((4, 8, 12), "eegmmi_imagery", 0),
        ((5, 9, 13), "eegmmi_movement", 2),
        ((6, 10, 14), "eegmmi_imagery", 2),
    )
    for run in runs
}
_CHBMIT_NAME = re.compile(r"^(chb\d{2})[a-z]?_\d+\+?\.edf$", re.IGNORECASE)
_CHBMIT_SUMMARY = re.compile(r"^chb\d{2}-summary\.txt$", re.IGNORECASE)
_CHBMIT_SAME_PATIENT = {"chb21": "chb01"}
_SIENA_NAME = re.compile(r"^(PN\d{2})-\d+\.edf$", re.IGNORECASE)
_SIENA_LIST = re.compile(r"^Seizures-list-PN\d{2}\.txt$", re.IGNORECASE)
# A seizure listed as lasting longer is a typo in its clock times (the list has one: an end hour
# off by one), not a seizure: its file is quarantined rather than labelled seizure for an hour.
SIENA_MAX_SEIZURE_S = 1800.0
_SIENA_KEYS = ("registration start time", "seizure start time", "start time", "seizure end time", "end time")
# PhysioNet's index files beside a database's recordings.
_INDEX = ("RECORDS", "RECORDS-WITH-SEIZURES", "ANNOTATORS", "SUBJECT-INFO", "wfdbcal")


@companion_files
def _physionet_files(path: str, _listed: set[str]) -> str | None:
    name = posixpath.basename(path)
    if _CHBMIT_SUMMARY.match(name):
        return "CHB-MIT summary (each file's seizures), read by the chbmit adapter"
    if _SIENA_LIST.match(name):
        return "Siena seizure list (each file's seizures), read by the siena adapter"
    if name.lower().endswith(".edf.event"):
        return "PhysioNet annotation file (.event), not a recording; the EDF's own annotations hold the same events"
    if lower_ext(path) == ".seizures":
        return (
            "CHB-MIT seizure annotation (binary), not a recording; the chbmit adapter reads the same times "
            "from the case's summary"
        )
    if name == "SUBJECT-INFO":
        return "PhysioNet subject table (age, sex), read by the chbmit adapter"
    if name in _INDEX:
        return "PhysioNet index (a list of records, annotators or calibrations), not a recording"
    return sidecar(path) if name == "subject-info.csv" else None


def _edfs_named(pattern: re.Pattern, beside: Callable[[str], object]):
    """Detects a folder whose EDFs all match ``pattern``, beside a file whose name ``beside`` accepts."""

    def detect(files: list[str]) -> bool:
        named = every_edf(files, lambda f: pattern.match(posixpath.basename(f)) is not None)
        return named and any(beside(posixpath.basename(f)) for f in files)

    return detect


def _all_named(pattern: re.Pattern):
    def detect(files: list[str]) -> bool:
        recordings = [n for n in map(posixpath.basename, files) if lower_ext(n) in RECORDING_EXTENSIONS]
        return bool(recordings) and all(pattern.match(n) for n in recordings)

    return detect


def eegmat_split(subject: int) -> str:
    """The benchmark split of eegmat subject number ``subject``; '' outside the data set's 00-35."""
    return next((name for name, numbers in EEGMAT_SPLIT if subject in numbers), "")


@register("eegmat", detect=_all_named(_EEGMAT_NAME))
def list_eegmat(group: Group):
    items, ignored, named = by_name(group, _EEGMAT_NAME)
    # subject-info.csv (Subject, Age, Gender, ...) is the data set's own record of age and sex;
    # it wins over the EDF headers, which disagree with it for some subjects.
    info = {
        row.get("Subject", "").strip(): row
        for f in group.files
        if posixpath.basename(f) == "subject-info.csv"
        for _, row in csv_rows(f)
    }
    for path, m in named:
        subject, state = m.group(1), int(m.group(2))
        row = info.get(f"Subject{subject}", {})
        # File 1 is the resting baseline, file 2 serial subtraction: label 0 rest, 1 task.
        items.append(
            SourceItem(
                path=path,
                dataset="eegmat",
                site=group.site_of(path),
                subject_key=f"eegmat-{subject}",
                session_key=str(state),
                task="eegmat_rest_task",
                recording_label=state - 1,
                age=age_cell(row.get("Age")),
                sex=normalize_sex(row.get("Gender")),
                corpus_split=eegmat_split(int(subject)),
            )
        )
    return items, ignored


@register("eegmmi", detect=_all_named(_EEGMMI_NAME))
def list_eegmmi(group: Group):
    items, ignored, named = by_name(group, _EEGMMI_NAME)
    for path, found in named:
        subject, run = found.group(1).upper(), int(found.group(2))
        task, first = _EEGMMI_RUNS.get(run, ("", -1))
        items.append(
            SourceItem(
                path=path,
                dataset="eegmmi",
                site=group.site_of(path),
                subject_key=f"eegmmi-{subject}",
                session_key=f"R{run:02d}",
                task=task,
                event_labels=(("T1", first), ("T2", first + 1)) if task else (),
                event_window_s=EEGMMI_TRIAL_S if task else 0.0,
            )
        )
    return items, ignored


def _seizure_item(
    dataset: str, path: str, group: Group, found: tuple[tuple[float, float], ...] | str | None, **fields: Any
) -> SourceItem:
    """A CHB-MIT or Siena recording labelled by its seizures ``found``: intervals (1 seizure, 0 the
    background around them to the end), a label problem (quarantined at "labels"), or with None
    (not listed) unlabeled. Its site: the corpus folder above its patient folder (chbNN/, PNxx/)
    where the inputs reach it (one hospital, one site), else the patient folder."""
    labels: dict[str, Any] = {}
    if isinstance(found, str):
        labels = {"label_problem": found}
    elif found is not None:
        out, reach = [], 0.0
        for start, end in sorted(found):
            if start > reach:
                out.append(LabeledInterval(reach, start, 0))
            out.append(LabeledInterval(start, end, 1))
            reach = max(reach, end)
        labels = {"intervals": (*out, LabeledInterval(reach, math.inf, 0))}
    case = posixpath.dirname(path)
    corpus = posixpath.dirname(case)
    inside = any(corpus == r.rstrip("/") or corpus.startswith(r.rstrip("/") + "/") for r in group.roots)
    site = group.site or posixpath.basename(corpus if inside else case)
    task = f"{dataset}_seizure" if labels else ""
    return SourceItem(path=path, dataset=dataset, site=site, task=task, **labels, **fields)


def _summary_entry(entries: dict, name: str, current: str, count: int, starts: list, ends: list) -> None:
    """A CHB-MIT summary's entry for the file ``current``: its seizures, or why they cannot be used."""
    if not current:
        return
    if count < 0:
        entries[current] = f"{name}: {current}: Number of Seizures in File: missing"
    elif not (len(starts) == len(ends) == count):
        entries[current] = (
            f"{name}: {current}: expected {count} seizure start and end times (its Number of "
            f"Seizures in File); got {len(starts)} start and {len(ends)} end"
        )
    elif bad := [(a, b) for a, b in zip(starts, ends) if not 0 <= a < b]:
        entries[current] = (
            f"{name}: {current}: expected start < end; got a seizure from {bad[0][0]:g} s to {bad[0][1]:g} s"
        )
    else:
        entries[current] = tuple(zip(starts, ends))


def chbmit_seizures(text: str, name: str) -> dict[str, tuple[tuple[float, float], ...] | str]:
    """Each file a CHB-MIT case summary describes: its seizures as (start_s, end_s), or why its entry cannot be used
    (naming the summary, line and field). Both 'Seizure Start Time' and 'Seizure 1 Start Time' occur."""
    entries: dict[str, tuple[tuple[float, float], ...] | str] = {}
    current, count, starts, ends = "", -1, [], []
    for k, line in enumerate(text.splitlines(), start=1):
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "file name":
            _summary_entry(entries, name, current, count, starts, ends)
            current, count, starts, ends = value, -1, [], []
        elif not current:
            continue
        elif key == "number of seizures in file":
            if not value.isdigit():
                entries[current] = f"{name}: line {k}, Number of Seizures in File: expected a count; got {value!r}"
                current = ""
            else:
                count = int(value)
        elif re.fullmatch(r"seizure(\s+\d+)?\s+(start|end)\s+time", key):
            found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:seconds?|secs?|s)?", value)
            if not found:
                entries[current] = f"{name}: line {k}, {line.split(':')[0].strip()}: expected seconds; got {value!r}"
                current = ""
                continue
            (starts if key.endswith("start time") else ends).append(float(found.group(1)))
    _summary_entry(entries, name, current, count, starts, ends)
    return entries


def _subject_info(text: str, _name: str = "") -> dict[str, tuple[str, float | None]]:
    """CHB-MIT's SUBJECT-INFO (Case, Gender, Age in years; tab- or space-separated): case -> (sex, age)."""
    out = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 3 and re.fullmatch(r"chb\d{2}", cells[0], re.IGNORECASE):
            out[cells[0].lower()] = (normalize_sex(cells[1]), age_cell(cells[2]))
    return out


@register("chbmit", detect=_edfs_named(_CHBMIT_NAME, lambda n: n == "SUBJECT-INFO" or _CHBMIT_SUMMARY.match(n)))
def list_chbmit(group: Group):
    items, ignored, named_files = by_name(group, _CHBMIT_NAME)
    summaries, unreadable = label_files(group.files, _CHBMIT_SUMMARY, chbmit_seizures)
    listed = {name: found for entries in summaries.values() for name, found in entries.items()}
    people: dict[str, tuple[str, float | None]] = {}
    for f in group.files:
        if posixpath.basename(f) == "SUBJECT-INFO":
            found, problem = read_events(f, _subject_info)
            if problem:
                log.warning("%s: age and sex not read (%s)", f, problem)
            people.update(found or {})
    for path, named in named_files:
        case = named.group(1).lower()
        sex, age = people.get(case, ("", None))
        # A file its case summary does not list is processed unlabeled: its seizures are unknown.
        found = listed.get(posixpath.basename(path), unreadable.get(posixpath.dirname(path)))
        subject_key = f"chbmit-{_CHBMIT_SAME_PATIENT.get(case, case)}"
        items.append(
            _seizure_item("chbmit", path, group, found, subject_key=subject_key, session_key=case, age=age, sex=sex)
        )
    return items, ignored


def _clock_s(text: str) -> float | None:
    """Seconds after midnight of a clock time '19.58.36' or '19:58:36', else None."""
    found = re.fullmatch(r"(\d{1,2})[.:](\d{2})[.:](\d{2})", text.strip())
    if not found:
        return None
    hours, minutes, seconds = map(int, found.groups())
    return hours * 3600.0 + minutes * 60 + seconds if hours < 24 and minutes < 60 and seconds < 60 else None


def siena_seizures(text: str, name: str) -> dict[str, tuple[tuple[float, float], ...] | str]:
    """Each file a Siena seizure list names: its seizures as (start_s, end_s) from the file's registration start (clock
    times past midnight wrap), or why its entry cannot be used (naming the list, line and field)."""
    entries: dict[str, list[tuple[float, float]] | str] = {}
    current, registered, start = "", None, None
    for k, line in enumerate(text.splitlines(), start=1):
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "file name":
            current, registered, start = value.split()[0] if value else "", None, None
            if current and current not in entries:
                entries[current] = []
            continue
        if not current or isinstance(entries.get(current), str) or key not in _SIENA_KEYS:
            continue
        clock = _clock_s(value)
        if clock is None:
            entries[current] = (
                f"{name}: line {k}, {line.split(':')[0].strip()}: expected a clock time hh.mm.ss; got {value!r}"
            )
        elif key == "registration start time":
            registered = clock
        elif key.endswith("start time"):
            start = clock
        elif registered is None or start is None:
            entries[current] = (
                f"{name}: line {k}: a seizure end time before the file's registration start "
                "and the seizure's start time"
            )
        else:
            begin, length = (start - registered) % 86400.0, (clock - start) % 86400.0
            if not 0 < length <= SIENA_MAX_SEIZURE_S:
                entries[current] = (
                    f"{name}: line {k}: a seizure ending at {value} lasts {length / 60:.0f} min "
                    f"after its start; expected up to {SIENA_MAX_SEIZURE_S / 60:.0f} min (a typo "
                    "in its clock times?)"
                )
            else:
                entries[current].append((begin, begin + length))
            start = None
    # An entry that gives no seizure says nothing of its file (the lists name files for their seizures).
    return {f: v if isinstance(v, str) else tuple(v) for f, v in entries.items() if v}


def _siena_file(listed: str, recordings: dict[str, str]) -> str:
    """The recording a seizure list names, by name as written, else as the lists misspell it
    (case, a letter O for a zero, punctuation); '' where none or several match."""
    if listed.lower() in recordings:
        return recordings[listed.lower()]

    def plain(n: str) -> str:
        return re.sub(r"[^a-z0-9]", "", n.lower().replace("o", "0"))

    found = [path for name, path in recordings.items() if plain(name) == plain(listed)]
    return found[0] if len(found) == 1 else ""


@register("siena", detect=_edfs_named(_SIENA_NAME, _SIENA_LIST.match))
def list_siena(group: Group):
    items, ignored, named_files = by_name(group, _SIENA_NAME)
    by_folder: dict[str, dict[str, str]] = {}
    for path, _ in named_files:
        by_folder.setdefault(posixpath.dirname(path), {})[posixpath.basename(path).lower()] = path
    lists, unreadable = label_files(group.files, _SIENA_LIST, siena_seizures)
    seizures: dict[str, tuple[tuple[float, float], ...] | str] = {}
    for f, entries in lists.items():
        for listed, found in entries.items():
            path = _siena_file(listed, by_folder.get(posixpath.dirname(f), {}))
            if not path:
                log.warning(
                    "%s names %s, which is not among its folder's recordings: its seizures are not used", f, listed
                )
                continue
            earlier = seizures.get(path, ())
            if not isinstance(earlier, str):  # a file named twice (two spellings): its seizures add up
                seizures[path] = found if isinstance(found, str) else earlier + found
    for path, named in named_files:
        # Every file of the database has a seizure; one its list does not name is processed unlabeled.
        found = seizures.get(path, unreadable.get(posixpath.dirname(path)))
        items.append(_seizure_item("siena", path, group, found, subject_key=f"siena-{named.group(1).upper()}"))
    return items, ignored
