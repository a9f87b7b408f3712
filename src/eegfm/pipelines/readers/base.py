"""What every recording reader is: the `Reader` interface, its `RecordingInfo` and `Segment`s, `ReaderError`.

A reader opens a recording lazily and returns any sample range in microvolts as float32, so a
24-hour recording is never loaded whole. The only patient facts it hands out are `ClinicalInfo`
(whole-year age, sex) and `identity_key`, an opaque string only for `deid.pseudonym`, never logged.
Readers fail with `ReaderError` naming the file, the field and what was expected: one quarantine line.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eegfm.contract.channels import Digitized, derivation, standard_name
from eegfm.pipelines.privacy.deid import ClinicalInfo
from eegfm.pipelines.readers.fif_parts import GZIPPED_PART

FORMATS = {
    ".edf": "edf",
    ".bdf": "bdf",
    ".fif": "fif",
    ".fif.gz": "fif",
    ".vhdr": "brainvision",
    ".set": "eeglab",
    ".parquet": "hms_parquet",
    ".mff": "egi",  # EGI's MFF: a folder, read as one recording
    ".gdf": "gdf",
    ".cnt": "cnt",  # Neuroscan's or ANT Neuro's: told apart by content (readers.mne_formats)
    ".eeg": "nihon",  # Nihon Kohden's (with .21E/.PNT/.LOG); BrainVision's .eeg is read through its .vhdr
    ".lay": "persyst",  # with its .dat
    ".cdt": "curry",  # Curry 8 (with .cdt.dpa/.cdt.cef)
    ".dat": "curry",  # Curry 7 (with .dap/.rs3); Persyst's .dat is read through its .lay
    ".nxe": "eximia",
    ".nedf": "nedf",
}
# gzip-compressed EDF/BDF: decompressed to a temp file first (pipelines.job.process); MNE reads .fif.gz itself.
GZIPPED = (".edf.gz", ".bdf.gz")
# Sampling rates a recording may have: EEG is sampled at 100 Hz to a few kHz, research amplifiers reach
# ~20-50 kHz, and a rate outside this range is a corrupt header (EDF's record duration, say), whose
# filters and windows would otherwise fail far from the cause.
MIN_SFREQ, MAX_SFREQ = 1.0, 100_000.0
# Archives people download data sets as; their recordings are read once unpacked.
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


class ReaderError(ValueError):
    """A recording cannot be read; the message names the file, the field and the expectation."""

    def __init__(self, path: str | os.PathLike, message: str, labels: tuple[str, ...] = ()):
        self.path = str(path)
        self.labels = labels  # the channel labels the message may name, for redaction (pipelines.privacy.redact)
        super().__init__(f"{Path(path).name}: {message}")


@dataclasses.dataclass(frozen=True)
class RecordingInfo:
    ch_names: tuple[str, ...]
    sfreq: float
    n_times: int
    clinical: ClinicalInfo = ClinicalInfo()

    @property
    def duration_s(self) -> float:
        return self.n_times / self.sfreq


@dataclasses.dataclass(frozen=True)
class Segment:
    """Samples [start, stop) recorded back to back, beginning ``onset_s`` seconds into the recording.
    A recording paused and resumed (EDF+D, FIF skips, EEGLAB cuts) has several; no window spans two."""

    start: int
    stop: int
    onset_s: float


class Reader:
    """Base class: subclasses fill `info` and implement `_read(start, stop)`; a reader of a
    recording with gaps or cuts also sets `segments`."""

    info: RecordingInfo
    identity_key: str = ""  # opaque; only for deid.pseudonym
    _segments: tuple[Segment, ...] = ()
    bad_spans: tuple[tuple[int, int], ...] = ()  # sample ranges its annotations mark 'BAD...': windows rejected
    bad_channels: tuple[str, ...] = ()  # channels the file marks bad (a FIF's info['bads']): interpolated
    # Annotations as (onset s, duration s, text as recorded). Free text may name the patient: only
    # ever matched against a data set's event codes (SourceItem.event_labels, case-insensitively)
    # and shown to whoever sent the file (/v1/traces), never logged or written.
    events: tuple[tuple[float, float, str], ...] = ()
    # When recording began, as the file stores it (naive: EDF's clock time is local; a FIF's is UTC).
    # It dates the patient's visit: only ever shown to whoever sent the file (eegfm-serve's
    # /v1/traces), never logged, written or compared.
    recorded_at: dt.datetime | None = None
    digitized: Digitized | None = None  # electrode positions in the file, for --montage file
    skipped: tuple[str, ...] = ()  # signals at another sampling rate than the EEG, left out (EDF)
    split_parts: tuple[str, ...] = ()  # a recording split over files: the files read, first part first (FIF)
    empty_columns: tuple[str, ...] = ()  # channels present but never recorded, entirely NaN (HMS parquet)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The stretches recorded back to back, in time order; one for a continuous recording."""
        return self._segments or (Segment(0, self.info.n_times, 0.0),)

    def read(self, start: int = 0, stop: int | None = None, *, check_finite: bool = True) -> np.ndarray:
        """Samples [start, stop) of every channel, microvolts, float32, shape (n_chans, n); with
        `check_finite=False` NaN/inf are returned as they are (the caller rejects those windows)."""
        stop = self.info.n_times if stop is None else stop
        if not 0 <= start <= stop <= self.info.n_times:
            raise ReaderError(
                self.path, f"sample range: expected 0 <= start <= stop <= {self.info.n_times}; got [{start}, {stop})"
            )
        data = self._read(start, stop)
        if check_finite and not np.all(np.isfinite(data)):
            bad = [self.info.ch_names[i] for i in np.flatnonzero(~np.isfinite(data).all(axis=1))]
            raise ReaderError(
                self.path,
                f"samples: expected finite values; channels {', '.join(bad[:8])} "
                f"contain NaN or infinity in samples [{start}, {stop})",
            )
        return data

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError  # abstract: every concrete reader implements it

    def close(self) -> None:
        """Release file handles (nothing to do for most readers)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_info(path, ch_names, sfreq, n_times) -> None:
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ReaderError(path, f"sampling rate: expected a positive number; got {sfreq!r}")
    if not MIN_SFREQ <= sfreq <= MAX_SFREQ:
        raise ReaderError(path, f"sampling rate: expected {MIN_SFREQ:g} to {MAX_SFREQ:g} Hz; got {sfreq:g} Hz")
    if n_times <= 0:
        raise ReaderError(path, f"length: expected at least one sample; got {n_times}")
    if len(ch_names) == 0:
        raise ReaderError(path, "channels: expected at least one signal; got none")
    if dupes := [n for n, k in collections.Counter(ch_names).items() if k > 1]:
        # labels: a duplicated label may be a patient's name typed into two channels, for redaction
        raise ReaderError(path, f"channel names: expected unique names; duplicated {dupes}", labels=tuple(dupes))
    # MNE numbers duplicated names ('Fp1-0', 'Fp1-1'): two signals cannot both be one electrode
    # (a derivation recorded twice, 'T8-P8-0' and 'T8-P8-1', is two measurements of it).
    numbered = collections.defaultdict(list)
    for name in ch_names:
        if found := _RUNNING_NUMBER.match(name):
            numbered[found.group(1)].append(name)
    if twice := [base for base, names in numbered.items() if len(names) > 1 and standard_name(base) is not None]:
        raise ReaderError(
            path,
            f"channel names: expected unique names; duplicated {twice} (read as "
            f"{', '.join(repr(n) for base in twice for n in numbered[base])})",
        )


_RUNNING_NUMBER = re.compile(r"^(.*\S)-(\d+)$")


def names_electrode(name: str) -> bool:
    """Whether a channel name says which electrode (or pair of electrodes) it records."""
    return standard_name(name) is not None or derivation(name) is not None


def unique_channel_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` with each duplicate that names no electrode numbered as MNE numbers them (``ECG-0``,
    ``ECG-1``, a blank ``-0``, a derivation ``T8-P8-0``); duplicated electrodes stay, for `check_info` to refuse."""
    counts = collections.Counter(names)
    taken = set(names)
    running: collections.Counter = collections.Counter()
    out = []
    for name in names:
        if counts[name] < 2 or standard_name(name) is not None:
            out.append(name)
            continue
        while (numbered := f"{name}-{running[name]}") in taken:
            running[name] += 1
        running[name] += 1
        taken.add(numbered)
        out.append(numbered)
    return tuple(out)


def format_of(path) -> str:
    name = str(path).lower()
    if GZIPPED_PART.search(name):  # a later part of a split x.fif.gz, read alone
        return "fif"
    return next((fmt for ext, fmt in FORMATS.items() if name.endswith(ext)), "recording")


# A traceback frame a library quotes in its message (MNE's RuntimeError does), and an absolute path.
_QUOTED_FRAME = re.compile(r'\bFile "[^"]*", line \d+.*')
_ABSOLUTE_PATH = re.compile(r"""(?<![\w.])(?:[A-Za-z]:)?(?:[/\\][^\s/\\'"(),;:]+){2,}[/\\]?""")


def one_line(err: BaseException) -> str:
    """A library's exception as ``Type: message`` on one line of at most 200 characters, fit for a
    reason a user reads: a traceback the message quotes is cut off, and absolute paths (the server's
    install, or a folder named after a patient) read ``<path>``."""
    text = _QUOTED_FRAME.sub("", " ".join(str(err).split()))
    text = _ABSOLUTE_PATH.sub("<path>", text).strip()
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__
