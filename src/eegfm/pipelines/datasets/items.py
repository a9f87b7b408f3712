"""What discovery hands the pipeline: one `SourceItem` per recording, an `Ignored` entry per other file."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from eegfm.core.tasks import BACKGROUND_CLASSES, TASK_CLASSES

RECORDING_EXTENSIONS = (
    *(".edf", ".bdf", ".fif", ".fif.gz", ".edf.gz", ".bdf.gz", ".vhdr", ".set", ".parquet", ".mff"),
    *(".gdf", ".cnt", ".lay", ".cdt", ".nxe", ".nedf"),
)
# A .eeg (Nihon Kohden's, or BrainVision's data) and a .dat (Curry 7's, or Persyst's data) are recordings
# or parts of one by the files beside them and their content (datasets.companions).
RECORDING_OR_PART = (".eeg", ".dat")
# Files that belong to another recording file and are read through it.
# (.evt: ANT Neuro events; .cef, .dpa: Curry sidecars)
COMPANION_EXTENSIONS = (".vmrk", ".eeg", ".fdt", ".evt", ".cef", ".dpa", ".json", ".tsv", ".csv", ".md", ".txt")


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
    # HMS: where its 10 min window starts in the item's spectrogram_path (None: no such window)
    spectrogram_offset_s: float | None = None


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
    recording_votes: tuple[float, ...] = ()  # votes for every window of the recording (a background recording)
    age: float | None = None
    sex: str = ""
    channels_tsv: str = ""  # BIDS: the channels.tsv that applies (bad channels), if any
    eeg_json: tuple[str, ...] = ()  # BIDS: the *_eeg.json files that apply, farthest first
    electrodes_tsv: str = ""  # BIDS: the electrodes.tsv that applies (positions, for --montage file), if any
    coordsystem_json: str = ""  # BIDS: the coordsystem.json of its coordinates, if any
    intervals: tuple[LabeledInterval, ...] = ()  # labels of stretches (TUSZ seizures), for sliding windows
    label_problem: str = ""  # why its label file cannot be used: the recording is quarantined, stage "labels"
    read_problem: str = ""  # why it cannot be read (a dangling link, no permission): quarantined, stage "read"
    corpus_split: str = ""  # the corpus's own split (TUH: train, dev, eval), for benchmarks that keep to it
    # Labels of the recording's own annotations (code -> class, case-insensitive: EEGMMI's T1, T2):
    # a window of event_window_s from each such annotation's onset.
    event_labels: tuple[tuple[str, int], ...] = ()
    event_window_s: float = 0.0
    # HMS: the Kaggle spectrogram file of its labeled windows (train_spectrograms/<spectrogram_id>.parquet)
    spectrogram_path: str = ""


@dataclasses.dataclass(frozen=True)
class Ignored:
    path: str
    reason: str


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


# The votes of a background window, all for its background class. Votes only become a distribution
# in training, so the count says how sure the label is: 20, the most raters a simulated window has
# (simulate.votes.MAX_RATERS) and above the presets' two_stage_min_votes (10), so background windows
# train in both stages, as a unanimous panel would. A recording of a person without the finding is
# surer than any panel's vote; a higher two_stage_min_votes leaves them out of stage 2.
BACKGROUND_VOTES = 20.0


def as_background(item: SourceItem, task: str) -> SourceItem:
    """``item`` with every window a background window of ``task`` (``core.tasks.BACKGROUND_CLASSES``:
    hms6's Other): windows slide over the whole recording, each labeled that class with
    ``BACKGROUND_VOTES`` votes for it. The data set's own labels (labels.csv rows, annotations,
    seizure intervals) are dropped, its subject, session, site and corpus split kept. ``task`` ''
    returns ``item`` unchanged."""
    if not task:
        return item
    classes = TASK_CLASSES[task]
    label = classes.index(BACKGROUND_CLASSES[task])
    return dataclasses.replace(
        item,
        task=task,
        recording_label=label,
        recording_votes=tuple(BACKGROUND_VOTES if k == label else 0.0 for k in range(len(classes))),
        windows=(),
        intervals=(),
        event_labels=(),
        event_window_s=0.0,
        label_problem="",  # the labels it names are not the ones written
    )
