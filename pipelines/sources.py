"""Input discovery and dataset adapters: `--input` patterns -> one `SourceItem` per input file.

Discovery runs on the launcher (as Beam's own file-pattern sources do), through Beam's
FileSystems, so local paths, globs (`**` recurses), folders, `gs://` and `s3://` all work. Each
dataset adapter knows how its layout names subjects, sessions, sites and labels:

- `hms`: Kaggle's `train.csv` + `train_eegs/<eeg_id>.parquet`; one item per parquet with every
  labeled 50 s sub-window and its six vote counts. `test.csv` + `test_eegs/`: each row's 50 s
  window (from `eeg_label_offset_seconds`, else the start), task `hms6` without votes: what a model
  is asked to classify. Parquets without csv rows are processed unlabeled; csv rows whose parquet
  is absent are reported, never dropped silently. A row with a cell that is not a usable number
  (a vote that is empty, negative or NaN, all six votes 0, an offset that is not a number) makes a
  window with a `problem`: quarantined with the csv line and column, the recording's other
  windows kept.
- `bids`: `sub-<label>[/ses-<label>]/eeg/*_eeg.<ext>`; `participants.tsv` supplies age and sex,
  `*_channels.tsv` the bad channels (interpolated) and `*_eeg.json` the mains frequency
  (``pipelines.bids``). Recordings in its `sourcedata/`, `derivatives/`, `code/` and `stimuli/`
  folders are `Ignored`: the data set's recordings before conversion or after processing.
- `eegmat`: PhysioNet mental arithmetic, `SubjectNN_1.edf` rest / `SubjectNN_2.edf` task; the
  subjects split as the foundation-model papers' benchmark splits them (`corpus_split`: 00-27
  train, 28-31 dev, 32-35 eval).
- `edf`: any folder of EDF/BDF/FIF/BrainVision/EEGLAB files; an optional `labels.csv` attaches
  labels by `path` (relative to it): HMS's vote columns give an hms6 window (the simulator's
  layout); `task` + `label` give every window of the recording that label, or with `start_s` and
  `duration_s` one labeled window (events; several rows per file). A FIF recording split
  into parts is one item, its first part (``pipelines.fif_parts``); the later parts are `Ignored`.
- `auto`: picks one of the above from what it finds.

Every file the patterns match is either an item or an `Ignored` entry with the reason (sidecars
such as `.vmrk`/`.eeg` that belong to a `.vhdr`, READMEs ...), so the manifest can account for it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from eegfm.pipelines.bids import SidecarIndex
from eegfm.core.config import check_option
from eegfm.pipelines.deid import safe_age, normalize_sex
from eegfm.pipelines.fif_parts import GZIPPED_PART, previous_part, previous_part_names
from eegfm.core.logs import get_logger
from eegfm.core.stores import STORE_ERRORS, match_below, match_path, storage_error

log = get_logger("sources")

HMS_CLASSES = ("Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other")
HMS_VOTE_COLUMNS = ("seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote")
HMS_WINDOW_S = 50.0
DATASETS = ("auto", "edf", "hms", "bids", "eegmat", "eegmmi", "tuab", "tuep", "tusz", "tuev", "tuar", "chbmit",
            "siena")
RECORDING_EXTENSIONS = (".edf", ".bdf", ".fif", ".fif.gz", ".edf.gz", ".bdf.gz", ".vhdr", ".set", ".parquet",
                        ".mff")
# Files that belong to another recording file and are read through it.
COMPANION_EXTENSIONS = (".vmrk", ".eeg", ".fdt", ".json", ".tsv", ".csv", ".md", ".txt")

_EEGMAT = re.compile(r"^Subject(\d+)_([12])\.edf$", re.IGNORECASE)
# The TUH EEG corpora's file names: <patient>_<session>_<token>.edf (aaaaaaaq_s004_t000.edf).
_TUH_NAME = re.compile(r"^([a-z]{8})_(s\d{3})_t\d{3}\.edf$")
# TUAB, the TUH Abnormal EEG Corpus: edf/{train,eval}/{normal,abnormal}/<montage>/<file>.edf;
# the folder is the neurologist's reading of the whole recording.
TUAB_LABELS = ("normal", "abnormal")
_TUAB_FOLDERS = {name: k for k, name in enumerate(TUAB_LABELS)}
# TUEP, the TUH Epilepsy Corpus: 00_epilepsy/ and 01_no_epilepsy/ hold the patients a neurologist
# diagnosed with epilepsy or not (<patient>/<session>/<montage>/<file>.edf); 1 epilepsy.
TUEP_LABELS = ("no_epilepsy", "epilepsy")
_TUEP_FOLDERS = {"01_no_epilepsy": 0, "00_epilepsy": 1}
# TUSZ, the TUH Seizure Corpus: beside each <file>.edf a <file>.csv_bi of its term-based events
# (channel TERM; bckg, or seiz where a neurologist marked a seizure) and a <file>.csv of its
# channel-based ones (seizure types: fnsz, gnsz, cpsz ...). Windows: 0 background, 1 seizure.
SEIZURE_LABELS = ("background", "seizure")  # TUSZ's, CHB-MIT's and Siena's windows
TUSZ_LABELS = SEIZURE_LABELS
TUSZ_SEIZURE_TYPES = frozenset({"seiz", "fnsz", "gnsz", "spsz", "cpsz", "absz", "tnsz", "cnsz", "tcsz", "atsz",
                                "mysz", "nesz"})
# TUAR, the TUH EEG Artifact Corpus: edf/<montage>/<patient>_<session>_<token>.edf, each with a
# <file>.csv of artifact events per channel (channel,start_time,stop_time,label,confidence; as TUSZ
# writes them). Its classes: the five artifact kinds and the pairs the annotators marked together
# (an order the corpus does not use, musc_eyem say, reads as its pair; elpp, electrode pop in older
# releases, as elec). Stretches it left unannotated are not known to be clean: windows there stay
# unlabeled.
TUAR_LABELS = ("eyem", "chew", "shiv", "elec", "musc", "eyem_musc", "musc_elec", "eyem_elec", "eyem_chew",
               "chew_musc", "chew_elec", "eyem_shiv", "shiv_elec")
_TUAR_CODES = {frozenset(name.split("_")): k for k, name in enumerate(TUAR_LABELS)}
# TUEV, the TUH EEG Events Corpus: beside each <file>.edf a <file>.rec of its events, one row per
# event and channel of the corpus's bipolar montage: channel,start_s,stop_s,code (1 spsw ... 6 bckg).
# Training files are named <patient>_<n>.edf, evaluation files <class>_<patient>_<segment>_.edf.
TUEV_LABELS = ("spsw", "gped", "pled", "eyem", "artf", "bckg")
# An event's window reaches this far either side of it (5 s around the corpus's 1 s events, the
# context the TUEV benchmarks classify); at a recording's edge it moves inside by up to as much.
TUEV_CONTEXT_S = 2.0
# CHB-MIT (PhysioNet's Children's Hospital Boston scalp EEG): chbNN/chbNN_MM.edf (chb17a_03 ...),
# each case's seizures in chbNN/chbNN-summary.txt (seconds from each file's start), age and sex in
# SUBJECT-INFO. chb21 is chb01 recorded 1.5 years later: one patient. Windows: 0 background, 1 seizure.
_CHBMIT_NAME = re.compile(r"^(chb\d{2})[a-z]?_\d+\+?\.edf$", re.IGNORECASE)
_CHBMIT_SUMMARY = re.compile(r"^chb\d{2}-summary\.txt$", re.IGNORECASE)
_CHBMIT_SAME_PATIENT = {"chb21": "chb01"}
# EEGMMI (PhysioNet's EEG Motor Movement/Imagery): SNNN/SNNNRKK.edf, 14 runs per subject. Each
# run's annotations T1 and T2 mark a 4 s trial whose meaning the run gives: runs 3, 7, 11 move
# the left or right fist, 4, 8, 12 imagine it; 5, 9, 13 move both fists or both feet, 6, 10, 14
# imagine it (T0: rest between trials, unlabeled; runs 1 and 2: eyes open, closed, no trials).
EEGMMI_LABELS = ("left_fist", "right_fist", "both_fists", "both_feet")
EEGMMI_TRIAL_S = 4.0
_EEGMMI_NAME = re.compile(r"^(S\d{3})R(\d{2})\.edf$", re.IGNORECASE)
# run -> (task, label of T1; T2's is the next)
_EEGMMI_RUNS = {run: (task, first) for runs, task, first in (
    ((3, 7, 11), "eegmmi_movement", 0), ((4, 8, 12), "eegmmi_imagery", 0),
    ((5, 9, 13), "eegmmi_movement", 2), ((6, 10, 14), "eegmmi_imagery", 2)) for run in runs}
# The Siena Scalp EEG Database (PhysioNet): PNxx/PNxx-N.edf, each patient's seizures in
# PNxx/Seizures-list-PNxx.txt as clock times, with each file's registration start time to count
# from. Windows: 0 background, 1 seizure (as CHB-MIT's).
_SIENA_NAME = re.compile(r"^(PN\d{2})-\d+\.edf$", re.IGNORECASE)
_SIENA_LIST = re.compile(r"^Seizures-list-PN\d{2}\.txt$", re.IGNORECASE)
# A seizure listed as lasting longer is a typo in its clock times (the list has one: an end hour
# off by one), not a seizure: its file is quarantined rather than labelled seizure for an hour.
SIENA_MAX_SEIZURE_S = 1800.0
# PhysioNet's index files beside a database's recordings.
_PHYSIONET_INDEX = ("RECORDS", "RECORDS-WITH-SEIZURES", "ANNOTATORS", "SUBJECT-INFO", "wfdbcal")
# Documents that ship beside recordings (EEGMMI's montage drawing, a data set's README).
_DOCUMENTATION = (".md", ".txt", ".pdf", ".png", ".jpg", ".jpeg", ".html", ".htm", ".rtf", ".doc", ".docx")
_TUEV_NAME = re.compile(r"^(?:(?:spsw|gped|pled|eyem|artf|bckg)_)?([A-Za-z0-9]+)_\w*\.edf$")
_BIDS_ENTITY = re.compile(r"(sub|ses|task|run)-([A-Za-z0-9]+)")
# The classes of each labelled ``task`` the adapters write (the manifest lists them).
TASK_CLASSES = {"hms6": HMS_CLASSES, "eegmat_rest_task": ("rest", "task"), "eegmmi_movement": EEGMMI_LABELS,
                "eegmmi_imagery": EEGMMI_LABELS, "tuab_abnormal": TUAB_LABELS, "tuep_epilepsy": TUEP_LABELS,
                "tusz_seizure": SEIZURE_LABELS, "tuev_event": TUEV_LABELS, "tuar_artifact": TUAR_LABELS,
                "chbmit_seizure": SEIZURE_LABELS,
                "siena_seizure": SEIZURE_LABELS}


@dataclasses.dataclass(frozen=True)
class LabeledWindow:
    """A window with a label: offset and length in seconds, and HMS votes or a class index."""

    offset_s: float
    duration_s: float
    label: int = -1
    votes: tuple[float, ...] = ()
    task: str = ""
    problem: str = ""  # why the window cannot be used (a bad csv cell): it is quarantined, not the recording
    slack_s: float = 0.0  # where it overhangs the recording's start or end by at most this, it moves inside


@dataclasses.dataclass(frozen=True)
class LabeledInterval:
    """A stretch of a recording with one label (seconds from its start): the sliding windows
    that lie mostly inside it take the label."""

    start_s: float
    stop_s: float
    label: int


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One input file and everything the adapters know about it (no patient identifiers)."""

    path: str
    dataset: str
    site: str
    subject_key: str = ""  # raw subject key; only ever passed to deid.pseudonym
    session_key: str = ""
    task: str = ""
    windows: tuple[LabeledWindow, ...] = ()  # empty: slide windows over the whole recording
    recording_label: int = -1  # a label for every window of the recording (eegmat rest/task)
    age: float | None = None
    sex: str = ""
    channels_tsv: str = ""  # BIDS: the channels.tsv that applies (bad channels), if any
    eeg_json: tuple[str, ...] = ()  # BIDS: the *_eeg.json files that apply, farthest first
    electrodes_tsv: str = ""  # BIDS: the electrodes.tsv that applies (positions, for --montage file), if any
    coordsystem_json: str = ""  # BIDS: the coordsystem.json of its coordinates, if any
    intervals: tuple[LabeledInterval, ...] = ()  # labels of stretches (TUSZ seizures), for sliding windows
    label_problem: str = ""  # why its label file cannot be used: the recording is quarantined, stage "labels"
    corpus_split: str = ""  # the corpus's own split (TUH: train, dev, eval), for benchmarks that keep to it
    # Labels of the recording's own annotations (code -> class, case-insensitive: EEGMMI's T1, T2):
    # a window of event_window_s from each such annotation's onset.
    event_labels: tuple[tuple[str, int], ...] = ()
    event_window_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Ignored:
    path: str
    reason: str


def _join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts) if "://" in base else posixpath.join(base, *parts)


def _read_text(path: str) -> str:
    with FileSystems.open(path) as fh:
        return fh.read().decode("utf-8-sig")


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def _is_dir(path: str) -> bool:
    if "://" in path:
        # An object store has no folders, only keys: a "folder" is a prefix with keys below it,
        # maybe only in deeper "sub-folders" (** crosses "/"; * would not).
        return not _exists(path) and bool(match_below(path, "**", limit=1))
    import os

    return os.path.isdir(path)


def expand_inputs(patterns: list[str]) -> list[str]:
    """Every file the patterns name (a folder means all files below it), sorted, de-duplicated."""
    return sorted(_file_sizes(_normalized(patterns)))


def _normalized(patterns: list[str]) -> list[str]:
    """Local paths spelled one way (``a//b``, ``a/./b``, ``a/x/../b``: ``a/b``), so one file is
    one input and its site the folder's name, not "."; object-store paths are left as given."""
    return [p if "://" in p else os.path.normpath(p) for p in patterns]


def _under_any(path: str, roots: Sequence[str]) -> bool:
    def norm(p: str) -> str:
        return p.rstrip("/") if "://" in p else os.path.abspath(p)

    path = norm(path)
    return any(path == root or path.startswith(root + "/") for root in map(norm, roots))


def _globstar_variants(pattern: str) -> list[str]:
    """``pattern`` and, for each ``/**/`` in it, the same with zero folders there.

    Beam's ``**`` matches any characters, "/" included, so ``raw/**/*.edf`` needs a folder between
    ``raw/`` and the file; as in bash's globstar and Python's glob it should also match
    ``raw/x.edf``, which would otherwise be left out without a word.
    """
    parts = pattern.split("/**/")
    variants = [parts[0]]
    for part in parts[1:]:
        variants = [v + sep + part for v in variants for sep in ("/**/", "/")]
    return sorted(set(variants))


def _file_sizes(patterns: list[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for pattern in patterns:
        folder = _is_dir(pattern)
        # A folder or file that is there is itself, whatever characters its name holds ("EEG [2019]").
        there = not folder and _exists(pattern)
        globs = [] if folder or there else _globstar_variants(pattern)
        below = [pattern] if folder else []  # folders, listed by match_below
        wildcard = bool(globs) and re.search(r"[*?\[]", pattern) is not None
        links = [] if "://" in pattern or not (folder or wildcard) else \
            linked_folders(pattern.rstrip("/") if folder else _root(pattern) or ".")
        if links and folder:  # Beam's local listing (os.walk) does not enter linked folders
            below += links
        elif links:
            log.warning("--input %s: symbolic links to folders below %s are not followed by a glob (%s); give "
                        "them as --input folders", pattern, _root(pattern) or ".", ", ".join(links[:5]))
        try:
            matched = [m for result in FileSystems.match(globs) for m in result.metadata_list] if globs else []
            matched += [m for top in below for m in match_below(top, "**")]
            if there:
                matched += match_path(pattern)
        except STORE_ERRORS as err:  # an object store: credentials, endpoint, bucket, network
            raise OSError(f"--input {pattern}: cannot list it ({storage_error(err)})") from None
        if not matched:
            raise FileNotFoundError(f"--input {pattern}: matched no files")
        sizes.update((m.path, m.size_in_bytes) for m in matched)
    return sizes


def linked_folders(folder: str) -> list[str]:
    """Symbolic links to folders anywhere below the local ``folder`` (a site folder linked into a
    data set folder, say), reached through the links too. A link into a tree already listed, or
    to a folder above one (a cycle), is left out with a warning: its files would come twice."""
    if not os.path.isdir(folder):
        return []
    listed = [os.path.realpath(folder)]
    links, pending = [], [folder]
    while pending:
        for root, dirs, _ in os.walk(pending.pop(0)):
            for name in sorted(dirs):
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    continue
                real = os.path.realpath(path)
                if any(real == t or real.startswith(t + os.sep) or t.startswith(real + os.sep) for t in listed):
                    log.warning("%s -> %s: a link into (or above) a folder already listed, not followed", path, real)
                    continue
                listed.append(real)
                links.append(path)
                pending.append(path)
    return links


def _lower_ext(path: str) -> str:
    name = posixpath.basename(path).lower()
    if GZIPPED_PART.search(name):
        return ".fif.gz"
    for double in (".fif.gz", ".edf.gz", ".bdf.gz"):
        if name.endswith(double):
            return double
    return posixpath.splitext(name)[1]


def site_from_path(path: str, roots: list[str]) -> str:
    """The first folder below the input root, e.g. `<root>/site-a/x.edf` -> 'site-a'."""
    for root in sorted(roots, key=len, reverse=True):
        root = root.rstrip("/")
        if path.startswith(root + "/"):
            rel = path[len(root) + 1:]
            head = rel.split("/", 1)
            if len(head) == 2:
                return head[0]
            return posixpath.basename(root) or "default"
    return posixpath.basename(posixpath.dirname(path)) or "default"


def detect_dataset(files: list[str]) -> str:
    names = {posixpath.basename(f) for f in files}
    if {"train.csv", "test.csv"} & names and any(f.lower().endswith(".parquet") for f in files):
        return "hms"
    if any(f.lower().endswith(".parquet") for f in files) and all(
        _lower_ext(f) in (".parquet",) + COMPANION_EXTENSIONS for f in files
    ):
        return "hms"
    if "dataset_description.json" in names or "participants.tsv" in names:
        return "bids"
    recs = [n for n in names if _lower_ext(n) in RECORDING_EXTENSIONS]
    if recs and all(_EEGMAT.match(n) for n in recs):
        return "eegmat"
    if recs and all(_EEGMMI_NAME.match(n) for n in recs):
        return "eegmmi"
    edfs = [f for f in files if _lower_ext(f) == ".edf"]
    for kind, folders in (("tuab", _TUAB_FOLDERS), ("tuep", _TUEP_FOLDERS)):
        if edfs and all(_folder_label(f, folders) >= 0 and _TUH_NAME.match(posixpath.basename(f)) for f in edfs):
            return kind
    listed = set(files)
    if edfs and all(_TUH_NAME.match(posixpath.basename(f)) and f[:-4] + ".csv_bi" in listed for f in edfs):
        return "tusz"
    if edfs and all(f[:-4] + ".rec" in listed for f in edfs):
        return "tuev"
    if edfs and all(_TUH_NAME.match(posixpath.basename(f)) and f[:-4] + ".csv" in listed for f in edfs):
        return "tuar"
    if edfs and all(_SIENA_NAME.match(posixpath.basename(f)) for f in edfs) and any(
            _SIENA_LIST.match(n) for n in names):
        return "siena"
    if edfs and all(_CHBMIT_NAME.match(posixpath.basename(f)) for f in edfs) and (
            "SUBJECT-INFO" in names or any(_CHBMIT_SUMMARY.match(n) for n in names)):
        return "chbmit"
    return "edf"


def discover(
    patterns: list[str], *, dataset: str = "auto", site: str | None = None, exclude: Sequence[str] = (),
    warn_sidecars: bool = True,
) -> tuple[list[SourceItem], list[Ignored], dict[str, str]]:
    """Items to process, files deliberately not processed (with reasons), and the dataset used
    per site. With `auto`, each top-level folder below an input folder is detected on its own,
    so one run can cover a mixed tree such as an HMS export beside a folder of EDF files.

    ``exclude``: files, and folders with all below them, that are not inputs wherever the
    patterns reach them (the job's own output folder and key file). ``warn_sidecars``: warn of
    label files beside the inputs that the patterns leave out (off where labels do not matter:
    predictions)."""
    check_option("--dataset", dataset, DATASETS)
    patterns = _normalized(patterns)
    sizes = _file_sizes(patterns)
    left_out = [path for path in sizes if _under_any(path, exclude)]
    for path in left_out:
        del sizes[path]
    if left_out:
        log.info("%d of the files the inputs match are the job's own (%s): not inputs", len(left_out),
                 ", ".join(exclude))
    if not sizes:
        raise FileNotFoundError(f"--input {' '.join(patterns)}: matched no files but the job's own "
                                f"({', '.join(exclude)})")
    files, inside = _folder_recordings(sorted(sizes), sizes)
    folders = [p.rstrip("/") for p in patterns if _is_dir(p)]
    # A file or glob inside an input folder takes its site from that folder, as the folder's own files do.
    roots = folders + [root for root in map(_root, patterns) if not _under_any(root, folders)]
    groups = _group_by_layout(files, roots)
    items: list[SourceItem] = []
    ignored: list[Ignored] = []
    used: dict[str, str] = {}
    for group, group_files in sorted(groups.items()):
        kind = detect_dataset(group_files) if dataset == "auto" else dataset
        adapter = {"hms": _hms, "bids": _bids, "eegmat": _eegmat, "eegmmi": _eegmmi, "tuab": _tuab, "tuep": _tuep,
                   "tusz": _tusz, "tuev": _tuev, "tuar": _tuar, "chbmit": _chbmit, "siena": _siena,
                   "edf": _generic}[kind]
        # Label sidecars may sit above the site folders they describe (simulator: edf/labels.csv).
        label_files = [f for f in files if posixpath.basename(f) == "labels.csv"]
        got, skipped = (adapter(group_files, roots, site, label_files) if kind == "edf"
                        else adapter(group_files, roots, site))
        items += got
        ignored += skipped
        used[group] = kind
    ignored += inside
    if "edf" in used.values():
        _warn_unmatched_labels(label_files, {item.path for item in items})
    for sidecar in _sidecars_left_out(patterns, set(files)) if warn_sidecars else ():
        log.warning("%s is not among the inputs, so what it says of them (labels, votes, age, sex) is not used; "
                    "give its folder %s as --input to read it", sidecar, posixpath.dirname(sidecar))
    # Largest recordings first: runners hand out work in input order (the DirectRunner deals it
    # to its workers in turn, Dataflow starts it first), so the long tail ends balanced.
    items.sort(key=lambda item: (-sizes.get(item.path, 0), item.path))
    return items, ignored, used


# Files an adapter reads beside the recordings: labels, votes, age and sex; BIDS's per-recording ones.
_SIDECARS = ("labels.csv", "train.csv", "test.csv", "participants.tsv", "subject-info.csv")
_BIDS_SIDECARS = ("_channels.tsv", "_eeg.json", "_electrodes.tsv", "_coordsystem.json")


def _sidecars_left_out(patterns: list[str], files: set[str]) -> list[str]:
    """Sidecars that describe what the inputs match but are not inputs themselves: in the folder a
    file or glob input starts in, above a train_eegs/ or test_eegs/ folder (HMS's csv files), or at
    the top of a BIDS data set (participants.tsv), e.g. ``--input 'hms/train_eegs/*.parquet'``."""
    places: set[tuple[str, tuple[str, ...]]] = set()
    for pattern in patterns:
        folder = _is_dir(pattern)
        root = pattern.rstrip("/") if folder else _root(pattern)
        if not folder:
            places.add((root, _SIDECARS))
        # labels.csv may sit above the site folders it describes (the simulator's edf/labels.csv),
        # CHB-MIT's SUBJECT-INFO above its case folders; not above a bucket ("gs://b" is no folder
        # of "gs:").
        for above in (posixpath.dirname(root), posixpath.dirname(posixpath.dirname(root))):
            if above and above != root and ("://" in above) == ("://" in root):
                places.add((above, ("labels.csv", "SUBJECT-INFO")))
        if posixpath.basename(root) in ("train_eegs", "test_eegs"):
            places.add((posixpath.dirname(root), ("train.csv", "test.csv")))
        if "/sub-" in root + "/":
            places.add(((root + "/").split("/sub-", 1)[0], ("participants.tsv",)))
    found = []
    for folder, names in sorted(places):
        for name in names:
            path = _join(folder, name) if folder else name
            if path in files or not _exists(path):
                continue
            if name == "labels.csv" and not any(
                    _labeled_path(folder, row["path"]) in files for _, row in _csv_rows(path) if row.get("path")):
                continue  # describes other files than these
            found.append(path)
    return sorted(set(found))


def _labeled_path(base: str, cell: str) -> str:
    """The file a labels.csv ``path`` cell names, relative to the csv's folder ``base``: written on
    Windows (``site-a\\r1.edf``) or with ``./`` it is the same file."""
    cell = cell.strip().replace("\\", "/")
    return cell if cell.startswith("/") or "://" in cell else _join(base, posixpath.normpath(cell))


def _warn_unmatched_labels(label_files: list[str], recordings: set[str]) -> None:
    """Name the labels.csv rows whose file is no input recording (a typo, a file left out)."""
    for f in label_files:
        base = posixpath.dirname(f)
        unmatched = sorted({target for _, row in _csv_rows(f) if row.get("path")
                            and (target := _labeled_path(base, row["path"])) not in recordings})
        if unmatched:
            log.warning("%s: %d labeled file(s) are not among the input recordings, e.g. %s", f, len(unmatched),
                        ", ".join(unmatched[:3]))


def _root(pattern: str) -> str:
    """The folder a file or glob input starts in: a file's folder, a glob's folder before its
    first wildcard (``raw/**/*.edf`` and ``raw/site*/x.edf``: ``raw``, as for the folder ``raw/``)."""
    return posixpath.dirname(re.split(r"[*?\[]", pattern, maxsplit=1)[0])


# Files whose presence directly in a folder makes that folder one data set root.
_LAYOUT_MARKERS = ("train.csv", "test.csv", "dataset_description.json", "participants.tsv", "SUBJECT-INFO")


def _group_by_layout(files: list[str], roots: list[str]) -> dict[str, list[str]]:
    """Files grouped by data set: a root holding a layout marker is one group, otherwise each
    first-level folder below the root is one (a site, in the usual multi-site layout)."""
    marked = {r for r in roots if any(f == _join(r, m) for f in files for m in _LAYOUT_MARKERS)}
    groups: dict[str, list[str]] = {}
    for f in files:
        root = next((r for r in sorted(marked, key=len, reverse=True) if f.startswith(r + "/")), None)
        key = posixpath.basename(root) if root else site_from_path(f, roots)
        groups.setdefault(key, []).append(f)
    return groups


def mff_folder(path: str) -> str:
    """The EGI MFF recording (a folder ``x.mff``) a file is part of, or ''."""
    parts = path.split("/")
    for k, part in enumerate(parts[:-1]):
        if part.lower().endswith(".mff") and not ("://" in path and k <= 2):  # a bucket is no recording
            return "/".join(parts[:k + 1])
    return ""


def _folder_recordings(files: list[str], sizes: dict[str, int]) -> tuple[list[str], list[Ignored]]:
    """``files`` with each EGI MFF folder's files replaced by the folder, a recording of its own
    (its size the sum of theirs, in ``sizes``), and those files, listed as read through it."""
    kept: dict[str, None] = {}
    inside = []
    for f in files:
        folder = mff_folder(f)
        if folder:
            sizes[folder] = sizes.get(folder, 0) + sizes.get(f, 0)
            inside.append(Ignored(f, f"part of the EGI MFF recording {posixpath.basename(folder)} (a folder, "
                                     "read as one recording)"))
        kept[folder or f] = None
    return list(kept), inside


def _split_recordings(files: list[str]) -> tuple[list[str], list[Ignored]]:
    recordings, ignored = [], []
    listed = set(files)
    for f in files:
        ext, name = _lower_ext(f), posixpath.basename(f)
        if name.startswith("._") or name in (".DS_Store", "Thumbs.db", "desktop.ini"):
            ignored.append(Ignored(f, "file-system metadata (macOS '._' and .DS_Store, Windows Thumbs.db), "
                                      "not a recording"))
        elif ext in RECORDING_EXTENSIONS:
            recordings.append(f)
        elif _CHBMIT_SUMMARY.match(name):
            ignored.append(Ignored(f, "CHB-MIT summary (each file's seizures), read by the chbmit adapter"))
        elif _SIENA_LIST.match(name):
            ignored.append(Ignored(f, "Siena seizure list (each file's seizures), read by the siena adapter"))
        elif ext in _DOCUMENTATION:
            ignored.append(Ignored(f, f"documentation ({ext}), not a recording"))
        elif name.lower().endswith(".edf.event"):
            ignored.append(Ignored(f, "PhysioNet annotation file (.event), not a recording; the EDF's own "
                                      "annotations hold the same events"))
        elif ext == ".seizures":
            ignored.append(Ignored(f, "CHB-MIT seizure annotation (binary), not a recording; the chbmit adapter "
                                      "reads the same times from the case's summary"))
        elif name in _PHYSIONET_INDEX:
            ignored.append(Ignored(f, "PhysioNet subject table (age, sex), read by the chbmit adapter"
                                   if name == "SUBJECT-INFO"
                                   else "PhysioNet index (a list of records, annotators or calibrations), "
                                        "not a recording"))
        elif ext in (".csv", ".tsv", ".json", ".csv_bi"):
            read = (name in _SIDECARS or name == "dataset_description.json" or name.endswith(_BIDS_SIDECARS)
                    or _is_tuh_events(f, listed))
            ignored.append(Ignored(f, f"metadata sidecar ({ext}), read by the data set adapter" if read else
                                   f"metadata ({ext}), not a recording; no data set adapter reads {name}"))
        elif ext in COMPANION_EXTENSIONS:
            ignored.append(Ignored(f, f"data part of another recording ({ext}), read through its header file"))
        elif ext == ".rec" and f[:-4] + ".edf" in listed:
            ignored.append(Ignored(f, "TUEV event file (.rec) of the EDF beside it, read by the tuev adapter"))
        else:
            recordings.append(f)  # unknown type: the reader quarantines it with a clear reason
    continued = _fif_continuations(recordings)
    ignored += [Ignored(f, reason) for f, reason in continued.items()]
    return [f for f in recordings if f not in continued], ignored


def _fif_continuations(recordings: list[str]) -> dict[str, str]:
    """``{part: reason}`` for the FIF files that continue another input FIF (``pipelines.fif_parts``):
    read through the recording's first part, never as recordings of their own. Only FIF files
    sharing a folder with another are opened (a part always lies beside the one before it)."""
    fifs = [f for f in recordings if _lower_ext(f) in (".fif", ".fif.gz")]
    folders: dict[str, list[str]] = {}
    for f in fifs:
        folders.setdefault(posixpath.dirname(f), []).append(f)
    previous: dict[str, tuple[str, int | None]] = {}
    for folder, files in folders.items():
        if len(files) < 2:
            continue
        names = {posixpath.basename(f): f for f in files}
        for f in files:
            try:
                with FileSystems.open(f) as fh:
                    ref = previous_part(fh)
            except (OSError, EOFError, *STORE_ERRORS):
                continue  # the reader quarantines what it cannot read, with the reason
            if ref is None:
                continue
            before = next((n for n in previous_part_names(posixpath.basename(f), ref) if n in names), None)
            if before:
                previous[f] = (names[before], ref.number)
            else:
                log.warning("%s continues a split FIF recording whose part %s is not among the inputs: "
                            "read from this part on", f, ref.basename or ref.number)
    reasons = {}
    for f, (before, number) in previous.items():
        first, seen = before, {f}
        while first in previous and first not in seen:
            seen.add(first)
            first = previous[first][0]
        part = f"part {number + 2} " if isinstance(number, int) and number >= 0 else "a later part "
        reasons[f] = (f"{part}of a split FIF recording; its data are read through the first part, "
                      f"{posixpath.basename(first)}")
    return reasons


def _site(path: str, roots: list[str], site: str | None) -> str:
    return site or site_from_path(path, roots)


def _number(row: dict, column: str, default: float | None = None, minimum: float | None = None) -> float:
    """The finite number in ``row[column]`` (an empty or absent cell: ``default``); ValueError
    names the column, what it expects and the cell's text."""
    text = row.get(column)
    if text is None or not str(text).strip():
        if default is not None:
            return default
        got = "no such column" if text is None else "an empty cell"
    else:
        got = repr(str(text).strip())
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and (minimum is None or value >= minimum):
            return value
    expected = "a number" if minimum is None else f"a number >= {minimum:g}"
    raise ValueError(f"{column}: expected {expected}; got {got}")


def _votes_window(row: dict, where: str, task: str = "hms6") -> LabeledWindow:
    """The labeled 50 s window of a csv row with HMS's vote columns; ``where`` names the row."""
    try:
        offset = _number(row, "eeg_label_offset_seconds", default=0.0)
    except ValueError as err:
        return LabeledWindow(math.nan, HMS_WINDOW_S, task=task, problem=f"{where}: {err}")
    try:
        votes = tuple(_number(row, c, minimum=0.0) for c in HMS_VOTE_COLUMNS)
    except ValueError as err:
        return LabeledWindow(offset, HMS_WINDOW_S, task=task, problem=f"{where}: {err}")
    if not sum(votes) > 0:
        return LabeledWindow(offset, HMS_WINDOW_S, task=task,
                             problem=f"{where}: no expert votes ({', '.join(HMS_VOTE_COLUMNS)} all 0)")
    return LabeledWindow(offset, HMS_WINDOW_S, max(range(6), key=lambda k: votes[k]), votes, task)


def _csv_rows(path: str) -> list[tuple[str, dict]]:
    """``(where, row)`` for each row of a csv file; ``where`` is "<file name> line <n>" (a line
    number, not an id from the row: those can be patient codes)."""
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    return [(f"{posixpath.basename(path)} line {reader.line_num}", row) for row in reader]


def _hms(files, roots, site):
    recordings, ignored = _split_recordings(files)
    spectrograms = [f for f in recordings if f.lower().endswith(".parquet")
                    and posixpath.basename(posixpath.dirname(f)) in ("train_spectrograms", "test_spectrograms")]
    ignored += [Ignored(f, "HMS spectrogram (auxiliary modality, not a recording)") for f in spectrograms]
    # EEG parquets by path: train_eegs/ and test_eegs/ may hold the same eeg_id, each its own file.
    parquets = sorted(f for f in recordings if f.lower().endswith(".parquet") and f not in spectrograms)
    csv_files = [f for f in files if posixpath.basename(f) in ("train.csv", "test.csv")]
    rows_by_eeg: dict[str, list[tuple[str, dict]]] = {}  # eeg_id -> (where, row)
    test_rows: dict[str, list[tuple[str, dict]]] = {}
    patient_of: dict[str, str] = {}
    site_of: dict[str, str] = {}
    for csv_path in csv_files:
        for where, row in _csv_rows(csv_path):
            eeg_id = _id_cell(row.get("eeg_id"))
            if not eeg_id:
                continue
            patient_of[eeg_id] = _id_cell(row.get("patient_id"))
            if row.get("site"):
                site_of[eeg_id] = row["site"].strip()
            (rows_by_eeg if posixpath.basename(csv_path) == "train.csv" else test_rows).setdefault(
                eeg_id, []).append((where, row))
    items = []
    found = {"train": set(), "test": set()}  # eeg_ids with a parquet each csv's rows can use
    for path in parquets:
        eeg_id = posixpath.splitext(posixpath.basename(path))[0]
        # A train_eegs/ file takes train.csv's rows, a test_eegs/ file test.csv's; one elsewhere either.
        folder = posixpath.basename(posixpath.dirname(path))
        kinds = {"train_eegs": ("train",), "test_eegs": ("test",)}.get(folder, ("train", "test"))
        windows = tuple(_votes_window(row, where) for where, row in rows_by_eeg.get(eeg_id, [])) \
            if "train" in kinds else ()
        if not windows and "test" in kinds:
            windows = _test_windows(test_rows.get(eeg_id, []))
        for kind in kinds:
            found[kind].add(eeg_id)
        items.append(SourceItem(
            path=path, dataset="hms", site=site or site_of.get(eeg_id) or _hms_root_name(path),
            subject_key=patient_of.get(eeg_id, eeg_id), session_key=eeg_id,
            task="hms6" if windows else "", windows=windows,
        ))
    # Other recordings beside the layout (an EDF in the folder, say) are processed unlabeled, as
    # the eegmat adapter does with files it does not know: never dropped from the manifest.
    items += [SourceItem(path=f, dataset="edf", site=_site(f, roots, site))
              for f in recordings if not f.lower().endswith(".parquet")]
    for name, rows in (("train", rows_by_eeg), ("test", test_rows)):
        for eeg_id in sorted(set(rows) - found[name]):
            ignored.append(Ignored(f"{name}.csv#eeg_id={eeg_id}", f"{name}.csv rows name eeg_id {eeg_id} but "
                                   f"{name}_eegs/{eeg_id}.parquet is not among the inputs"))
    return items, ignored


def _id_cell(text: str | None) -> str:
    """An id cell as the file names have it: a csv that went through a float column (pandas, with a
    missing value somewhere) writes ``1000913311.0`` for ``1000913311``."""
    text = (text or "").strip()
    return text[:text.index(".")] if re.fullmatch(r"\d+\.0+", text) else text


def _test_windows(rows: list[tuple[str, dict]]) -> tuple[LabeledWindow, ...]:
    """The 50 s windows that test.csv rows (``(where, row)``) ask about: no votes, label -1, task hms6."""
    offsets, bad = set(), []
    for where, row in rows:
        try:
            offsets.add(_number(row, "eeg_label_offset_seconds", default=0.0))
        except ValueError as err:
            bad.append(LabeledWindow(math.nan, HMS_WINDOW_S, task="hms6", problem=f"{where}: {err}"))
    return tuple(LabeledWindow(offset, HMS_WINDOW_S, -1, (), "hms6") for offset in sorted(offsets)) + tuple(bad)


def _hms_root_name(path: str) -> str:
    parent = posixpath.dirname(path)
    if posixpath.basename(parent) in ("train_eegs", "test_eegs"):
        parent = posixpath.dirname(parent)
    return posixpath.basename(parent) or "hms"


def _bids_root_name(path: str) -> str:
    """The data set folder: the part of the path before its `sub-<label>/` component."""
    head = path.split("/sub-", 1)[0]
    return posixpath.basename(head) or "bids"


# Folders of a BIDS data set that hold no raw recordings of it: the files its recordings were
# converted from, processed versions of them, code and stimuli. Read with the raw ones, each
# recording would be written two or three times (and a derivative data set under a site of its own).
_BIDS_NOT_RAW = {
    "sourcedata": "the files the data set's recordings were converted from",
    "derivatives": "processed versions of the data set's recordings",
    "code": "the data set's code", "stimuli": "the data set's stimuli",
}


def _bids_not_raw(path: str, roots: list[str], described: list[str]) -> str | None:
    """Why ``path`` is not a raw recording of its BIDS data set (in its sourcedata/, derivatives/
    ... folder), or None. The data set's folder is the outermost one holding a
    dataset_description.json (a derivative data set has its own), else the input folder."""
    root = next((d for d in sorted(described, key=len) if path.startswith(d + "/")), None) or next(
        (r.rstrip("/") for r in sorted(roots, key=len, reverse=True) if path.startswith(r.rstrip("/") + "/")), None)
    if root is None:
        return None
    top = path[len(root) + 1:].split("/", 1)[0]
    if top not in _BIDS_NOT_RAW or top == path[len(root) + 1:]:
        return None
    return (f"in the BIDS folder {top}/, {_BIDS_NOT_RAW[top]}, not one of its raw recordings; give "
            f"{posixpath.join(root, top)} as --input to process it on its own")


def _bids(files, roots, site):
    recordings, ignored = _split_recordings(files)
    described = [posixpath.dirname(f) for f in files if posixpath.basename(f) == "dataset_description.json"]
    not_raw = {f: why for f in recordings if (why := _bids_not_raw(f, roots, described))}
    ignored += [Ignored(f, why) for f, why in not_raw.items()]
    recordings = [f for f in recordings if f not in not_raw]
    participants: dict[str, dict] = {}
    for f in files:
        if posixpath.basename(f) == "participants.tsv":
            for row in csv.DictReader(io.StringIO(_read_text(f)), delimiter="\t"):
                participants[row.get("participant_id", "").strip()] = row
    sidecars = SidecarIndex(files, kinds=(("channels", ".tsv"), ("eeg", ".json"), ("electrodes", ".tsv"),
                                          ("coordsystem", ".json")))
    items = []
    for path in recordings:
        entities = dict(_BIDS_ENTITY.findall(posixpath.basename(path)))
        channels = sidecars.applicable(path, "channels", ".tsv")
        electrodes = sidecars.applicable(path, "electrodes", ".tsv")
        electrodes_tsv = electrodes[-1] if electrodes else ""
        # the coordsystem.json beside it, of the same space; else the nearest that applies
        coordsystems = sidecars.applicable(path, "coordsystem", ".json")
        twin = electrodes_tsv[:-len("_electrodes.tsv")] + "_coordsystem.json"
        coordsystem = twin if twin in coordsystems else (coordsystems[-1] if coordsystems else "")
        sub = entities.get("sub", "")
        # participant_id is "sub-<label>"; some data sets leave out the prefix.
        row = participants.get(f"sub-{sub}") or participants.get(sub) or {}
        items.append(SourceItem(
            path=path, dataset="bids", site=site or _bids_root_name(path),
            subject_key=sub or path, session_key=entities.get("ses", ""), task=entities.get("task", ""),
            age=_age_cell(row.get("age")), sex=normalize_sex(row.get("sex")),
            channels_tsv=channels[-1] if channels else "", eeg_json=tuple(sidecars.applicable(path, "eeg", ".json")),
            electrodes_tsv=electrodes_tsv, coordsystem_json=coordsystem if electrodes_tsv else "",
        ))
    return items, ignored


def _age_cell(text: str | None) -> float | None:
    """Age in years from a sidecar's cell: a number, or a lower bound such as BIDS's "89+" (ages
    above 89 written so to de-identify them) or ">89"; None for "n/a", empty or anything else."""
    cleaned = (text or "").strip().removeprefix(">").removesuffix("+").strip()
    try:
        return safe_age(float(cleaned))
    except ValueError:
        return None


def _by_name(files, roots, site, pattern: re.Pattern, *companions: str):
    """A data set folder's recordings: ``(items, ignored, named)`` where ``named`` pairs each
    recording named as the data set names its files (``pattern``), with a file of each
    ``companions`` extension beside it, with the name's match; the others are in ``items`` as
    plain recordings (processed, unlabeled)."""
    recordings, ignored = _split_recordings(files)
    listed = set(files)
    items, named = [], []
    for path in recordings:
        found = pattern.match(posixpath.basename(path))
        if found and all(path[:-4] + ext in listed for ext in companions):
            named.append((path, found))
        else:
            items.append(_plain(path, roots, site))
    return items, ignored, named


def _plain(path: str, roots, site) -> SourceItem:
    """A recording no adapter labels: processed as it is, unlabeled."""
    return SourceItem(path=path, dataset="edf", site=_site(path, roots, site))


# The split EEG foundation-model papers evaluate eegmat on (CBraMod, LaBraM, BIOT comparisons): the
# sorted subjects 00-27 train, 28-31 validate, 32-35 test. Kept as the corpus's own split, it lets
# fine-tuning reproduce their numbers (corpus_split=true) and keeps the test subjects out of
# pretraining and of the artifact autoencoder's sample.
EEGMAT_SPLIT = (("train", range(0, 28)), ("dev", range(28, 32)), ("eval", range(32, 36)))


def eegmat_split(subject: int) -> str:
    """The benchmark split of eegmat subject number ``subject``; '' outside the data set's 00-35."""
    return next((name for name, numbers in EEGMAT_SPLIT if subject in numbers), "")


def _eegmat(files, roots, site):
    items, ignored, named = _by_name(files, roots, site, _EEGMAT)
    # subject-info.csv (Subject, Age, Gender, ...) is the data set's own record of age and sex;
    # it wins over the EDF headers, which disagree with it for some subjects.
    info: dict[str, dict] = {}
    for f in files:
        if posixpath.basename(f) == "subject-info.csv":
            for row in csv.DictReader(io.StringIO(_read_text(f))):
                info[row.get("Subject", "").strip()] = row
    for path, m in named:
        subject, state = m.group(1), int(m.group(2))
        row = info.get(f"Subject{subject}", {})
        age = _age_cell(row.get("Age"))
        # File 1 is the resting baseline, file 2 serial subtraction: label 0 rest, 1 task.
        items.append(SourceItem(
            path=path, dataset="eegmat", site=site or _site(path, roots, None),
            subject_key=f"eegmat-{subject}", session_key=str(state), task="eegmat_rest_task",
            recording_label=state - 1, age=age, sex=normalize_sex(row.get("Gender")),
            corpus_split=eegmat_split(int(subject)),
        ))
    return items, ignored


def _eegmmi(files, roots, site):
    items, ignored, named = _by_name(files, roots, site, _EEGMMI_NAME)
    for path, found in named:
        subject, run = found.group(1).upper(), int(found.group(2))
        task, first = _EEGMMI_RUNS.get(run, ("", -1))
        items.append(SourceItem(
            path=path, dataset="eegmmi", site=_site(path, roots, site), subject_key=f"eegmmi-{subject}",
            session_key=f"R{run:02d}", task=task,
            event_labels=(("T1", first), ("T2", first + 1)) if task else (),
            event_window_s=EEGMMI_TRIAL_S if task else 0.0))
    return items, ignored


def _corpus_split(path: str) -> str:
    """The TUH corpora's own split of a recording: the nearest folder named train, dev or eval."""
    for part in reversed(path.split("/")[:-1]):
        if part.lower() in ("train", "dev", "eval"):
            return part.lower()
    return ""


def _folder_label(path: str, folders: dict[str, int]) -> int:
    """The label of the nearest folder above ``path`` that ``folders`` names, else -1."""
    for part in reversed(path.split("/")[:-1]):
        if part.lower() in folders:
            return folders[part.lower()]
    return -1


def _tuh_by_folder(files, roots, site, dataset: str, task: str, folders: dict[str, int]):
    """A TUH corpus whose folders label each recording (TUAB's normal/abnormal, TUEP's epilepsy)."""
    items, ignored, named_files = _by_name(files, roots, site, _TUH_NAME)
    for path, named in named_files:
        label = _folder_label(path, folders)
        if label < 0:  # not one of the corpus's recordings: processed, unlabeled
            items.append(_plain(path, roots, site))
            continue
        # A patient's sessions share the patient code: splits keep them together.
        items.append(SourceItem(
            path=path, dataset=dataset, site=_site(path, roots, site), subject_key=f"tuh-{named.group(1)}",
            session_key=named.group(2), task=task, recording_label=label, corpus_split=_corpus_split(path),
        ))
    return items, ignored


def _tuab(files, roots, site):
    return _tuh_by_folder(files, roots, site, "tuab", "tuab_abnormal", _TUAB_FOLDERS)


def _tuep(files, roots, site):
    return _tuh_by_folder(files, roots, site, "tuep", "tuep_epilepsy", _TUEP_FOLDERS)


def _is_tuh_events(path: str, files) -> bool:
    """A TUSZ or TUAR event file: <file>.csv_bi, or <file>.csv, beside <file>.edf."""
    stem, ext = posixpath.splitext(path)
    return ext.lower() in (".csv_bi", ".csv") and _TUH_NAME.match(posixpath.basename(stem) + ".edf") is not None \
        and stem + ".edf" in files


def interval_label(start_s: float, stop_s: float, intervals: Sequence[LabeledInterval]) -> int:
    """The label that covers most of [start_s, stop_s), if it covers at least half of it (a tie:
    the larger label, a seizure over background); -1 where none does (an unannotated stretch)."""
    covered: dict[int, list[tuple[float, float]]] = {}
    for iv in intervals:
        a, b = max(iv.start_s, start_s), min(iv.stop_s, stop_s)
        if b > a:
            covered.setdefault(iv.label, []).append((a, b))
    best, most = -1, 0.0
    for label, pieces in sorted(covered.items()):
        length, reach = 0.0, start_s
        for a, b in sorted(pieces):  # the union: rows of several channels overlap
            length += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        if length >= most:
            best, most = label, length
    return best if most >= 0.5 * (stop_s - start_s) else -1


def _tuh_csv_intervals(text: str, name: str, code: Callable[[str], int | None], expected: str
                       ) -> tuple[LabeledInterval, ...]:
    """The labeled stretches of a TUH ``.csv``/``.csv_bi`` (channel,start_time,stop_time,label,
    confidence after ``#`` comment lines), each row's label coded by ``code`` (None: not one of
    the corpus's labels, which ``expected`` lists). Raises ValueError naming the line and field of
    a row it cannot read."""
    lines = [(k, line) for k, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{name}: no events (expected a header channel,start_time,stop_time,label,confidence "
                         "and one row per event)")
    header = [c.strip() for c in lines[0][1].split(",")]
    missing = [c for c in ("start_time", "stop_time", "label") if c not in header]
    if missing:
        raise ValueError(f"{name}: line {lines[0][0]}: columns: expected channel,start_time,stop_time,label,"
                         f"confidence; missing {', '.join(missing)}")
    column = {c: header.index(c) for c in ("start_time", "stop_time", "label")}
    out = []
    for k, line in lines[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < len(header):
            raise ValueError(f"{name}: line {k}: expected {len(header)} fields; got {len(cells)}")
        label = code(cells[column["label"]].lower())
        if label is None:
            raise ValueError(f"{name}: line {k}, label: expected {expected}; got {cells[column['label']]!r}")
        try:
            start, stop = float(cells[column["start_time"]]), float(cells[column["stop_time"]])
        except ValueError:
            raise ValueError(f"{name}: line {k}: start_time, stop_time: expected seconds; got "
                             f"{cells[column['start_time']]!r}, {cells[column['stop_time']]!r}") from None
        if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start < stop):
            raise ValueError(f"{name}: line {k}: expected 0 <= start_time < stop_time; got {start:g}, {stop:g}")
        out.append(LabeledInterval(start, stop, label))
    return tuple(out)


def _seizure_code(label: str) -> int | None:
    return 0 if label == "bckg" else 1 if label in TUSZ_SEIZURE_TYPES else None


def tusz_intervals(text: str, name: str) -> tuple[LabeledInterval, ...]:
    """The labeled stretches of a TUSZ ``.csv_bi`` (term-based: channel TERM, or every channel
    of a ``.csv``): 1 where a row's label is a seizure type, 0 for ``bckg``. Raises ValueError
    naming the line and field of a row it cannot read."""
    return _tuh_csv_intervals(text, name, _seizure_code,
                              f"bckg or a seizure type ({', '.join(sorted(TUSZ_SEIZURE_TYPES))})")


def _artifact_code(label: str) -> int | None:
    return _TUAR_CODES.get(frozenset(label.replace("elpp", "elec").split("_")))


def tuar_intervals(text: str, name: str) -> tuple[LabeledInterval, ...]:
    """The artifact stretches of a TUAR ``.csv`` (one row per event and channel), coded as the
    index of their kind in ``TUAR_LABELS``. Raises ValueError naming the line and field of a row
    it cannot read."""
    return _tuh_csv_intervals(text, name, _artifact_code, f"an artifact kind ({', '.join(TUAR_LABELS)})")


def _read_events(path: str, parse: Callable[[str, str], Any]) -> tuple[Any, str]:
    """What ``parse`` makes of a label file (a recording's events, a case's seizure summary), or
    None and why it cannot be read (its recordings are then quarantined at stage "labels")."""
    name = posixpath.basename(path)
    try:
        return parse(_read_text(path), name), ""
    except UnicodeDecodeError as err:
        return None, f"{name}: not UTF-8 text ({err})"
    except ValueError as err:
        return None, str(err)


def _tuh_by_events(files, roots, site, dataset: str, task: str, extensions: tuple[str, ...], parse):
    """A TUH corpus whose event files beside each recording (the first of ``extensions`` there)
    label its windows: TUSZ's seizures, TUAR's artifacts."""
    items, ignored, named_files = _by_name(files, roots, site, _TUH_NAME)
    listed = set(files)
    for path, named in named_files:
        events = next((path[:-4] + ext for ext in extensions if path[:-4] + ext in listed), "")
        if not events:
            items.append(_plain(path, roots, site))
            continue
        intervals, problem = _read_events(events, parse)
        items.append(SourceItem(
            path=path, dataset=dataset, site=_site(path, roots, site), subject_key=f"tuh-{named.group(1)}",
            session_key=named.group(2), task=task, intervals=intervals or (), label_problem=problem,
            corpus_split=_corpus_split(path),
        ))
    return items, ignored


def _tusz(files, roots, site):
    return _tuh_by_events(files, roots, site, "tusz", "tusz_seizure", (".csv_bi", ".csv"), tusz_intervals)


def _tuar(files, roots, site):
    return _tuh_by_events(files, roots, site, "tuar", "tuar_artifact", (".csv",), tuar_intervals)


def tuev_windows(text: str, name: str) -> tuple[LabeledWindow, ...]:
    """One labeled window per event of a TUEV ``.rec``: ``TUEV_CONTEXT_S`` either side of it.
    The corpus marks an event once per channel it shows on; those rows make one window (the
    harmonized montage has no bipolar channels), labelled by most rows, a tie by the lower code
    (the epileptiform classes come first). Raises ValueError naming the line and field of a row
    it cannot read."""
    rows: dict[tuple[float, float], Counter] = {}
    for k, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            raise ValueError(f"{name}: line {k}: expected 4 fields (channel,start,stop,label); got {len(cells)}")
        try:
            channel, start, stop, code = float(cells[0]), float(cells[1]), float(cells[2]), float(cells[3])
        except ValueError:
            raise ValueError(f"{name}: line {k}: expected numbers (channel,start,stop,label); "
                             f"got {line.strip()!r}") from None
        if not (channel >= 0 and channel == int(channel)):
            raise ValueError(f"{name}: line {k}, channel: expected a channel index >= 0; got {cells[0]!r}")
        if code not in range(1, len(TUEV_LABELS) + 1):
            raise ValueError(f"{name}: line {k}, label: expected a code 1-{len(TUEV_LABELS)} "
                             f"({', '.join(f'{i} {c}' for i, c in enumerate(TUEV_LABELS, 1))}); got {cells[3]!r}")
        if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start < stop):
            raise ValueError(f"{name}: line {k}: start, stop: expected 0 <= start < stop seconds; "
                             f"got {cells[1]}, {cells[2]}")
        rows.setdefault((start, stop), Counter())[int(code) - 1] += 1
    if not rows:
        raise ValueError(f"{name}: no events (expected one row channel,start,stop,label per event and channel)")
    return tuple(
        LabeledWindow(start - TUEV_CONTEXT_S, stop - start + 2 * TUEV_CONTEXT_S,
                      label=min(votes, key=lambda c: (-votes[c], c)), task="tuev_event", slack_s=TUEV_CONTEXT_S)
        for (start, stop), votes in sorted(rows.items()))


def _tuev(files, roots, site):
    items, ignored, named_files = _by_name(files, roots, site, _TUEV_NAME, ".rec")
    for path, named in named_files:
        windows, problem = _read_events(path[:-4] + ".rec", tuev_windows)
        windows = windows or ()
        # Training files carry TUH's patient codes (as TUAB and TUSZ do); evaluation files a number.
        patient = named.group(1)
        key = f"tuh-{patient}" if re.fullmatch(r"[a-z]{8}", patient) else f"tuev-{patient}"
        items.append(SourceItem(path=path, dataset="tuev", site=_site(path, roots, site), subject_key=key,
                                task="tuev_event", windows=windows, label_problem=problem,
                                corpus_split=_corpus_split(path)))
    return items, ignored


def chbmit_seizures(text: str, name: str) -> dict[str, tuple[tuple[float, float], ...] | str]:
    """Each file a CHB-MIT case summary describes: its seizures as (start_s, end_s), or why its
    entry cannot be used (naming the summary, line and field). 'Seizure Start Time: 2996
    seconds' and 'Seizure 1 Start Time: ...' are both the summaries' spellings."""
    entries: dict[str, tuple[tuple[float, float], ...] | str] = {}
    current, count, starts, ends = "", -1, [], []

    def close() -> None:
        if not current:
            return
        if count < 0:
            entries[current] = f"{name}: {current}: Number of Seizures in File: missing"
        elif not (len(starts) == len(ends) == count):
            entries[current] = (f"{name}: {current}: expected {count} seizure start and end times (its Number of "
                                f"Seizures in File); got {len(starts)} start and {len(ends)} end")
        elif bad := [(a, b) for a, b in zip(starts, ends) if not 0 <= a < b]:
            entries[current] = (f"{name}: {current}: expected start < end; got a seizure from {bad[0][0]:g} s "
                                f"to {bad[0][1]:g} s")
        else:
            entries[current] = tuple(zip(starts, ends))

    for k, line in enumerate(text.splitlines(), start=1):
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "file name":
            close()
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
    close()
    return entries


def _seizure_intervals(seizures: tuple[tuple[float, float], ...]) -> tuple[LabeledInterval, ...]:
    """Seizures (label 1) and the background around them (label 0) to the end of the recording."""
    out, reach = [], 0.0
    for start, end in sorted(seizures):
        if start > reach:
            out.append(LabeledInterval(reach, start, 0))
        out.append(LabeledInterval(start, end, 1))
        reach = max(reach, end)
    out.append(LabeledInterval(reach, math.inf, 0))
    return tuple(out)


def _subject_info(text: str) -> dict[str, tuple[str, float | None]]:
    """CHB-MIT's SUBJECT-INFO (Case, Gender, Age in years; tab- or space-separated): case -> (sex, age)."""
    out = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 3 and re.fullmatch(r"chb\d{2}", cells[0], re.IGNORECASE):
            out[cells[0].lower()] = (normalize_sex(cells[1]), _age_cell(cells[2]))
    return out


def _seizure_labels(found: tuple[tuple[float, float], ...] | str | None) -> dict[str, Any]:
    """A recording's SourceItem fields from what its summary or seizure list says of it: its
    seizures (the windows' intervals; none, all background), why that cannot be read (it is
    quarantined at "labels"), or nothing (not listed: processed unlabeled)."""
    if found is None:
        return {}
    if isinstance(found, str):
        return {"label_problem": found}
    return {"intervals": _seizure_intervals(found)}


def _label_files(files, pattern: re.Pattern, parse) -> tuple[dict[str, Any], dict[str, str]]:
    """Every ``pattern``-named label file's entries (file name -> what ``parse`` says of it), and
    per folder why its label file cannot be read."""
    entries: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for f in files:
        if pattern.match(posixpath.basename(f)):
            found, problem = _read_events(f, parse)
            if problem:
                unreadable[posixpath.dirname(f)] = problem
            else:
                entries[f] = found
    return entries, unreadable


def _chbmit(files, roots, site):
    items, ignored, named_files = _by_name(files, roots, site, _CHBMIT_NAME)
    summaries, unreadable = _label_files(files, _CHBMIT_SUMMARY, chbmit_seizures)
    listed = {name: found for entries in summaries.values() for name, found in entries.items()}
    people: dict[str, tuple[str, float | None]] = {}
    for f in files:
        if posixpath.basename(f) == "SUBJECT-INFO":
            found, problem = _read_events(f, lambda text, _: _subject_info(text))
            if problem:
                log.warning("%s: age and sex not read (%s)", f, problem)
            people.update(found or {})
    for path, named in named_files:
        case = named.group(1).lower()
        sex, age = people.get(case, ("", None))
        # A file its case summary does not list is processed unlabeled: its seizures are unknown.
        found = listed.get(posixpath.basename(path), unreadable.get(posixpath.dirname(path)))
        labels = _seizure_labels(found)
        items.append(SourceItem(
            path=path, dataset="chbmit", site=site or _corpus_site(path, roots),
            subject_key=f"chbmit-{_CHBMIT_SAME_PATIENT.get(case, case)}", session_key=case,
            task="chbmit_seizure" if labels else "", age=age, sex=sex, **labels))
    return items, ignored


def _clock_s(text: str) -> float | None:
    """Seconds after midnight of a clock time '19.58.36' or '19:58:36', else None."""
    found = re.fullmatch(r"(\d{1,2})[.:](\d{2})[.:](\d{2})", text.strip())
    if not found:
        return None
    hours, minutes, seconds = map(int, found.groups())
    return hours * 3600.0 + minutes * 60 + seconds if hours < 24 and minutes < 60 and seconds < 60 else None


def siena_seizures(text: str, name: str) -> dict[str, tuple[tuple[float, float], ...] | str]:
    """Each file a Siena seizure list names: its seizures as (start_s, end_s) from the file's
    registration start (clock times past midnight wrap), or why its entry cannot be used (naming
    the list, line and field). The lists spell a seizure's times 'Seizure start time:' or
    'Start time:'."""
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
        if not current or isinstance(entries.get(current), str):
            continue
        if key in ("registration start time", "seizure start time", "start time", "seizure end time", "end time"):
            clock = _clock_s(value)
            if clock is None:
                entries[current] = f"{name}: line {k}, {line.split(':')[0].strip()}: expected a clock time " \
                                   f"hh.mm.ss; got {value!r}"
                continue
            if key == "registration start time":
                registered = clock
            elif key.endswith("start time"):
                start = clock
            elif registered is None or start is None:
                entries[current] = f"{name}: line {k}: a seizure end time before the file's registration start " \
                                   "and the seizure's start time"
            else:
                begin = (start - registered) % 86400.0
                length = (clock - start) % 86400.0
                if not 0 < length <= SIENA_MAX_SEIZURE_S:
                    entries[current] = (f"{name}: line {k}: a seizure ending at {value} lasts {length / 60:.0f} min "
                                        f"after its start; expected up to {SIENA_MAX_SEIZURE_S / 60:.0f} min (a typo "
                                        "in its clock times?)")
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


def _siena(files, roots, site):
    items, ignored, named_files = _by_name(files, roots, site, _SIENA_NAME)
    by_folder: dict[str, dict[str, str]] = {}
    for path, _ in named_files:
        by_folder.setdefault(posixpath.dirname(path), {})[posixpath.basename(path).lower()] = path
    lists, unreadable = _label_files(files, _SIENA_LIST, siena_seizures)
    seizures: dict[str, tuple[tuple[float, float], ...] | str] = {}
    for f, entries in lists.items():
        for listed, found in entries.items():
            path = _siena_file(listed, by_folder.get(posixpath.dirname(f), {}))
            if not path:
                log.warning("%s names %s, which is not among its folder's recordings: its seizures are not used",
                            f, listed)
                continue
            earlier = seizures.get(path, ())
            if not isinstance(earlier, str):  # a file named twice (two spellings): its seizures add up
                seizures[path] = found if isinstance(found, str) else earlier + found
    for path, named in named_files:
        # Every file of the database has a seizure; one its list does not name is processed unlabeled.
        labels = _seizure_labels(seizures.get(path, unreadable.get(posixpath.dirname(path))))
        items.append(SourceItem(
            path=path, dataset="siena", site=site or _corpus_site(path, roots),
            subject_key=f"siena-{named.group(1).upper()}", task="siena_seizure" if labels else "", **labels))
    return items, ignored


def _corpus_site(path: str, roots: list[str]) -> str:
    """The corpus folder above a recording's patient folder (CHB-MIT's chbNN/, Siena's PNxx/),
    where the inputs reach it: one hospital's recordings are one site, not a site per patient;
    else the patient folder."""
    case = posixpath.dirname(path)
    corpus = posixpath.dirname(case)
    inside = any(corpus == r.rstrip("/") or corpus.startswith(r.rstrip("/") + "/") for r in roots)
    return posixpath.basename(corpus if inside else case)


def _label_row(row: dict, where: str) -> LabeledWindow | tuple[str, int]:
    """What a labels.csv row labels: with HMS's vote columns, an hms6 window (``_votes_window``);
    with ``task`` and ``label`` (an integer >= 0, the schema's: a class index, or a whole-number
    regression target), the window ``start_s`` .. ``start_s + duration_s``, or without ``start_s`` the whole recording:
    ``(task, label)``. An unusable row is a window with a ``problem`` naming the line and column."""
    task = (row.get("task") or "").strip()
    if not task and any(column in row for column in HMS_VOTE_COLUMNS):
        return _votes_window(row, where)

    def problem(text: str) -> LabeledWindow:
        return LabeledWindow(math.nan, 0.0, task=task, problem=f"{where}: {text}")

    if not task:
        return problem("task: expected the label space's name (e.g. abnormal) beside a label, or HMS's vote "
                       f"columns ({', '.join(HMS_VOTE_COLUMNS)}); got {'an empty cell' if 'task' in row else 'no such column'}")
    try:
        label = _number(row, "label", minimum=0.0)
        if label != int(label):
            raise ValueError(f"label: expected an integer >= 0 (a class index); got {row['label'].strip()!r}")
        if not (row.get("start_s") or "").strip():
            return task, int(label)
        start = _number(row, "start_s", minimum=0.0)
        duration = _number(row, "duration_s")
        if duration <= 0:
            raise ValueError(f"duration_s: expected a number of seconds > 0; got {row['duration_s'].strip()!r}")
    except ValueError as err:
        return problem(str(err))
    return LabeledWindow(start, duration, int(label), (), task)


def _generic(files, roots, site, label_files=()):
    recordings, ignored = _split_recordings(files)
    labels: dict[str, list[LabeledWindow]] = {}
    whole: dict[str, tuple[str, int, str]] = {}  # path -> (task, label, where) of a recording label
    patients: dict[str, str] = {}
    for f in label_files or [f for f in files if posixpath.basename(f) == "labels.csv"]:
        base = posixpath.dirname(f)
        for where, row in _csv_rows(f):
            if row.get("path"):
                target = _labeled_path(base, row["path"])
                got = _label_row(row, where)
                if isinstance(got, LabeledWindow):
                    labels.setdefault(target, []).append(got)
                elif target in whole:
                    labels.setdefault(target, []).append(LabeledWindow(
                        math.nan, 0.0, task=got[0], problem=f"{where}: path: {row['path']} has a label for the whole "
                        f"recording already ({whole[target][2]}); one per recording"))
                else:
                    whole[target] = (*got, where)
                if row.get("patient_id"):
                    patients[target] = str(row["patient_id"]).strip()
    items = []
    for path in recordings:
        windows = tuple(labels.get(path, ()))
        task, label, where = whole.get(path, ("", -1, ""))
        if where and any(not w.problem for w in windows):  # labeled windows are cut alone: the label would go unsaid
            windows += (LabeledWindow(math.nan, 0.0, task=task, problem=f"{where}: a label for the whole recording "
                                      "beside labeled windows of it; label either the recording or windows"),)
            task, label = "", -1
        items.append(SourceItem(
            path=path, dataset="edf", site=_site(path, roots, site), subject_key=patients.get(path, ""),
            task=task or ("hms6" if windows else ""), recording_label=label, windows=windows,
        ))
    return items, ignored
