"""Recording readers: one interface over EDF/BDF/FIF/BrainVision/EEGLAB and HMS parquet files.

A reader opens a recording lazily, exposes its channel names, sampling rate and length, and
returns any sample range in microvolts as float32, so a 24-hour recording is processed in bounded
chunks and never loaded whole. Patient identifiers stay inside the reader: the only patient facts
it hands out are `ClinicalInfo` (whole-year age, sex) and `identity_key`, an opaque string that
the caller must pass straight to `deid.pseudonym` and never log.

Readers fail with `ReaderError`, whose message names the file, the field and what was expected,
so a corrupt recording becomes one quarantine line and never stops a pipeline run.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import math
import os
import posixpath
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eegfm.pipelines.channels import CANONICAL_CHANNELS, Digitized, derivation, standard_name
from eegfm.pipelines.deid import ClinicalInfo, age_from_dates, normalize_sex
from eegfm.pipelines.fif_parts import GZIPPED_PART

HMS_SFREQ = 200.0
HMS_EEG_COLUMNS = CANONICAL_CHANNELS
HMS_AUX_COLUMNS = ("EKG",)

# Extension -> format name. EDF/BDF use the chunked `edf_reader.EdfReader`.
FORMATS = {
    ".edf": "edf", ".bdf": "bdf", ".fif": "fif", ".fif.gz": "fif", ".vhdr": "brainvision",
    ".set": "eeglab", ".parquet": "hms_parquet", ".mff": "egi",  # EGI's MFF: a folder, read as one recording
}


# gzip-compressed EDF/BDF: decompressed to a temp file first (their readers seek, pipelines.process);
# MNE reads .fif.gz itself.
GZIPPED = (".edf.gz", ".bdf.gz")
# Archives people download data sets as; their recordings are read once unpacked.
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


class ReaderError(ValueError):
    """A recording cannot be read; the message names the file, the field and the expectation."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = str(path)
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
    """Samples [start, stop) of a reader recorded back to back, beginning ``onset_s`` seconds
    into the recording. A recording paused and resumed (EDF+D, a FIF with skips, an EEGLAB file
    with cuts) has several; no window may span two, and window times stay on the recording's
    own time axis."""

    start: int
    stop: int
    onset_s: float


class Reader:
    """Base class: subclasses fill `info` and implement `_read(start, stop)`; a reader of a
    recording with gaps or cuts also sets `segments`."""

    info: RecordingInfo
    identity_key: str = ""  # opaque; only for deid.pseudonym
    _segments: tuple[Segment, ...] = ()
    # Sample ranges [start, stop) the recording's own annotations mark bad (MNE's 'BAD_...'
    # convention): windows touching them are rejected.
    bad_spans: tuple[tuple[int, int], ...] = ()
    # Channels the file itself marks bad (a FIF's info['bads']): left out and interpolated.
    bad_channels: tuple[str, ...] = ()
    # The recording's annotations as (onset s in the recording's time, duration s, text as written).
    # Free text may name the patient: only ever matched against a data set's own event codes
    # (SourceItem.event_labels), never logged or written.
    events: tuple[tuple[float, float, str], ...] = ()
    # Electrode positions the file holds (``digitized_positions``: a FIF's or EGI MFF's digitized
    # head, EEGLAB chanlocs with fiducials, a BrainVision header's [Coordinates]): where its labels
    # name no 10-20 site, --montage file places the channels by them.
    digitized: Digitized | None = None

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The stretches recorded back to back, in time order; one for a continuous recording."""
        return self._segments or (Segment(0, self.info.n_times, 0.0),)

    def read(self, start: int = 0, stop: int | None = None, *, check_finite: bool = True) -> np.ndarray:
        """Samples [start, stop) of every channel, microvolts, float32, shape (n_chans, n).

        With `check_finite=False` NaN/inf samples are returned as they are, for callers that
        reject the affected windows instead of the whole recording.
        """
        stop = self.info.n_times if stop is None else stop
        if not 0 <= start <= stop <= self.info.n_times:
            raise ReaderError(
                self.path, f"sample range: expected 0 <= start <= stop <= {self.info.n_times}; "
                f"got [{start}, {stop})"
            )
        data = self._read(start, stop)
        if check_finite and not np.all(np.isfinite(data)):
            bad = [self.info.ch_names[i] for i in np.flatnonzero(~np.isfinite(data).all(axis=1))]
            raise ReaderError(
                self.path, f"samples: expected finite values; channels {', '.join(bad[:8])} "
                f"contain NaN or infinity in samples [{start}, {stop})"
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


def _check_info(path, ch_names, sfreq, n_times) -> None:
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ReaderError(path, f"sampling rate: expected a positive number; got {sfreq!r}")
    if n_times <= 0:
        raise ReaderError(path, f"length: expected at least one sample; got {n_times}")
    if len(ch_names) == 0:
        raise ReaderError(path, "channels: expected at least one signal; got none")
    seen = collections.Counter(ch_names)
    dupes = [n for n, k in seen.items() if k > 1]
    if dupes:
        raise ReaderError(path, f"channel names: expected unique names; duplicated {dupes}")
    # MNE numbers duplicated names ('Fp1-0', 'Fp1-1') and reads on: two signals named as one
    # electrode cannot both be it, and neither would map, so the electrode would pass for missing.
    # A derivation recorded twice ('T8-P8-0', 'T8-P8-1') is two measurements of one difference.
    numbered = collections.defaultdict(list)
    for name in ch_names:
        if (found := _RUNNING_NUMBER.match(name)):
            numbered[found.group(1)].append(name)
    twice = [base for base, names in numbered.items() if len(names) > 1 and standard_name(base) is not None]
    if twice:
        raise ReaderError(path, f"channel names: expected unique names; duplicated {twice} (read as "
                                f"{', '.join(repr(n) for base in twice for n in numbered[base])})")


_RUNNING_NUMBER = re.compile(r"^(.*\S)-(\d+)$")


def names_electrode(name: str) -> bool:
    """Whether a channel name says which electrode (or pair of electrodes) it records."""
    return standard_name(name) is not None or derivation(name) is not None


def unique_channel_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` with each duplicate that names no electrode numbered as MNE numbers them
    (``ECG-0``, ``ECG-1``; a blank label ``-0``, ``-1``; a derivation ``T8-P8-0``, ``T8-P8-1``): a
    second ECG or an unused slot costs nothing, and a derivation recorded twice is two measurements
    of it. Duplicated electrodes stay as they are, for `_check_info` to refuse."""
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


def _quiet_mffpy() -> None:
    """mffpy, which MNE reads EGI's MFF through, prints to stdout (a note for every MFF without
    epoch categories, as continuous recordings are) and logs its XML registry at INFO."""
    import logging

    logging.getLogger("XMLType").setLevel(logging.WARNING)  # before the import that registers
    import mffpy.reader

    mffpy.reader.print = lambda *args, **kwargs: None  # that module's print only


def _eeglab_chaninfo_guard() -> None:
    """Let MNE read an EEGLAB file whose ``EEG.chaninfo`` is an empty array (a .set written by a
    script that never set it; EEGLAB's own saves write a struct): MNE calls ``chaninfo.get`` and
    fails. Its loader is wrapped, once, to read such a field as an empty struct, which is what
    it means; nothing else changes. The wrapper is left installed, so threads need no lock."""
    from mne.io.eeglab import eeglab as module

    load = module._check_load_mat
    if getattr(load, "eegfm_guard", False):
        return

    def guarded(*args, **kwargs):
        eeg = load(*args, **kwargs)
        if not isinstance(eeg.get("chaninfo", {}), dict):
            eeg["chaninfo"] = {}
        return eeg

    guarded.eegfm_guard = True
    module._check_load_mat = guarded


class MneReader(Reader):
    """FIF, BrainVision, EEGLAB, EGI MFF, BDF and EDF through MNE's lazy readers."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        import mne

        if _format_of(path) == "egi":
            _quiet_mffpy()
        if _format_of(path) == "eeglab":
            _eeglab_chaninfo_guard()

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # read_raw goes by the extension, and a later part of a split x.fif.gz ends -1.gz
                read = mne.io.read_raw_fif if _format_of(path) == "fif" else mne.io.read_raw
                with _unique_brainvision_names(self.path) as header:
                    self._raw = read(header, preload=False, verbose="error")
        except ReaderError:
            raise
        except Exception as err:  # MNE raises many types for malformed files; all mean "unreadable"
            raise ReaderError(path, f"not a readable {_format_of(path)} file ({_one_line(err)})") from err
        raw = self._raw
        _check_info(path, raw.ch_names, float(raw.info["sfreq"]), int(raw.n_times))
        self._scale = _microvolt_scale(raw)
        self.info = RecordingInfo(
            tuple(raw.ch_names), float(raw.info["sfreq"]), int(raw.n_times), _mne_clinical(raw)
        )
        self.identity_key = _mne_identity(raw)
        if _format_of(path) == "fif":
            self._split_parts(raw)
        notes = annotation_samples(raw)
        self._segments = annotated_segments(notes, int(raw.n_times), float(raw.info["sfreq"]))
        self.bad_spans = annotated_bad_spans(notes, int(raw.n_times))
        self.events = annotated_events(notes, self.segments, float(raw.info["sfreq"]))
        self.bad_channels = tuple(raw.info["bads"])
        self.digitized = digitized_positions(raw.info, _format_of(path))

    def _split_parts(self, raw) -> None:
        """A split FIF (``pipelines.fif_parts``): MNE read this part and every one after it (a
        missing part is an error there, which quarantines the recording with MNE's reason)."""
        files = [os.path.basename(str(f)) for f in raw.filenames if f]
        if len(files) > 1:
            self.split_parts = tuple(files)

    def _read(self, start: int, stop: int) -> np.ndarray:
        try:
            data = self._raw.get_data(start=start, stop=stop)
        except Exception as err:
            raise ReaderError(self.path, f"data records: unreadable in samples [{start}, {stop}) "
                              f"({_one_line(err)})") from err
        return (data * self._scale).astype(np.float32)

    def close(self) -> None:
        self._raw.close()


@contextlib.contextmanager
def _unique_brainvision_names(path: str):
    """``path``, or for a BrainVision header naming two channels alike (two 'EOG' leads, unused
    slots left blank) a copy whose duplicates are numbered as MNE numbers them elsewhere: MNE's
    own BrainVision reader fails on them. An electrode named twice is refused, as in any format."""
    if _format_of(path) != "brainvision":
        yield path
        return
    with open(path, encoding="latin-1") as fh:  # byte for byte, whichever its Codepage
        lines = fh.read().splitlines()
    section, rows = "", []
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("["):
            section = text.lower()
        elif section == "[channel infos]" and re.match(r"Ch\d+=", text):
            rows.append((i, text.split("=", 1)[1].split(",", 1)[0]))
    names = [name.replace("\\1", ",") for _, name in rows]
    if len(set(names)) == len(names):
        yield path
        return
    unique = unique_channel_names(names)
    _check_info(path, unique, 1.0, 1)  # an electrode named twice: refused here, by name
    folder = os.path.dirname(os.path.abspath(path))
    for (row, _), name in zip(rows, unique):
        key, rest = lines[row].split("=", 1)
        lines[row] = key + "=" + name.replace(",", "\\1") + rest[len(rest.split(",", 1)[0]):]
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("DataFile", "MarkerFile") and value.strip():
            lines[i] = f"{key}={os.path.join(folder, value.strip())}"  # the copy lies elsewhere
    with tempfile.TemporaryDirectory(prefix="eegfm-vhdr-") as tmp:
        copy = os.path.join(tmp, os.path.basename(path))
        with open(copy, "w", encoding="latin-1") as fh:
            fh.write("\n".join(lines) + "\n")
        yield copy


def digitized_positions(info, fmt: str = "fif") -> Digitized | None:
    """The EEG channels' positions a recording holds: a FIF's in its head frame (x toward the
    right ear, y toward the nasion) where they were digitized, with the nasion and ears (None
    without them: no head frame to trust), and so an EGI MFF's (its coordinates.xml); a
    BrainVision header's [Coordinates], angles on the 10-20 sphere (MNE's fiducials for them are
    made up, on its equator); an EEGLAB file's chanlocs where its chaninfo.nodatchans holds the
    nasion and ears (without them EEGLAB's positions may be in any frame: a template's sphere, MNI
    space). A channel without a position (all zeros) has none. Other formats: None."""
    from mne.io.constants import FIFF

    if fmt not in ("fif", "egi", "brainvision", "eeglab"):
        return None
    fiducials = {d["ident"]: tuple(float(v) for v in d["r"]) for d in info.get("dig") or ()
                 if d["kind"] == FIFF.FIFFV_POINT_CARDINAL and d["coord_frame"] == FIFF.FIFFV_COORD_HEAD}
    wanted = (FIFF.FIFFV_POINT_NASION, FIFF.FIFFV_POINT_LPA, FIFF.FIFFV_POINT_RPA)
    framed = fmt != "brainvision"
    if framed and not all(k in fiducials for k in wanted):
        return None
    if fmt == "eeglab" and not (fiducials := _eeglab_fiducials(fiducials)):
        return None
    found = {}
    for ch in info["chs"]:
        xyz = np.asarray(ch["loc"][:3], dtype=np.float64)
        if ch["kind"] == FIFF.FIFFV_EEG_CH and ch["coord_frame"] == FIFF.FIFFV_COORD_HEAD \
                and np.all(np.isfinite(xyz)) and np.linalg.norm(xyz) > 0.01:
            found[ch["ch_name"]] = tuple(float(v) for v in xyz)
    if not found:
        return None
    return Digitized(found, *(fiducials[k] for k in wanted)) if framed else Digitized(found)


def _eeglab_fiducials(fiducials: dict) -> dict | None:
    """EEGLAB's nasion and ears in the frame and unit MNE gives its channels. MNE turns chanlocs
    from EEGLAB's frame (x toward the nose, y toward the left ear) to its own (x toward the right
    ear, y toward the nose) and into metres, but keeps nodatchans' fiducials as they are written;
    their unit is the one that puts them 3 to 30 cm from the origin. None where the nasion then
    does not lie ahead (a reader that turned them already)."""
    from mne.io.constants import FIFF

    norms = [math.hypot(*xyz) for xyz in fiducials.values()]
    scale = next((s for s in (1.0, 0.01, 0.001) if 0.03 < s * float(np.median(norms)) < 0.3), None)
    if scale is None:
        return None
    turned = {k: (-xyz[1] * scale, xyz[0] * scale, xyz[2] * scale) for k, xyz in fiducials.items()}
    nasion = turned[FIFF.FIFFV_POINT_NASION]
    return turned if nasion[1] > abs(nasion[0]) else None


# Annotations that mark where a recording stops being continuous: MNE's skipped FIF buffers
# (zeros in the data), EEGLAB's cuts (data removed there) and BrainVision's resumptions.
_SKIP = "bad_acq_skip"
_CUTS = ("boundary", "new segment/", "new segment")


def annotation_samples(raw) -> list[tuple[int, int, str]]:
    """Each annotation of an MNE raw as (first sample, length in samples, lower-case text)."""
    notes = raw.annotations
    if not len(notes):
        return []
    sfreq = float(raw.info["sfreq"])
    index = raw.time_as_index(notes.onset, use_rounding=True, origin=notes.orig_time)
    return [(at, int(round(duration * sfreq)), str(text).strip().lower())
            for at, duration, text in zip(index.tolist(), notes.duration.tolist(), notes.description)]


def annotated_segments(notes: list[tuple[int, int, str]], n: int, sfreq: float) -> tuple[Segment, ...]:
    """The continuous stretches of a recording of ``n`` samples between the cuts and outside the
    skipped spans its annotations (``annotation_samples``) mark; () when there is only one (the
    reader's default)."""
    holes = [(at, at + length) for at, length, kind in notes if kind.startswith(_SKIP)]
    holes += [(at, at) for at, _, kind in notes if kind in _CUTS and 0 < at < n]
    if not holes:
        return ()
    segments, start = [], 0
    for hole_start, hole_stop in sorted(holes) + [(n, n)]:
        stop = min(max(hole_start, start), n)
        if stop > start:
            segments.append(Segment(start, stop, start / sfreq))
        start = max(start, min(hole_stop, n))
    return tuple(segments) if len(segments) != 1 or segments[0] != Segment(0, n, 0.0) else ()


def annotated_events(notes: list[tuple[int, int, str]], segments: Sequence[Segment],
                     sfreq: float) -> tuple[tuple[float, float, str], ...]:
    """``annotation_samples``' notes as (onset s in the recording's time, duration s, text): a
    sample in a segment lies at its onset plus its offset there (a cut recording's samples are
    not its time)."""
    out = []
    for at, length, text in notes:
        segment = next((s for s in segments if s.start <= at < s.stop), segments[-1] if segments else None)
        origin = (segment.onset_s - segment.start / sfreq) if segment else 0.0
        out.append((origin + at / sfreq, length / sfreq, text))
    return tuple(out)


def marks_bad(text: str) -> bool:
    """Whether an annotation marks its span bad: MNE's 'BAD...' convention, skips aside (they
    are gaps, ``annotated_segments``)."""
    kind = text.strip().lower()
    return kind.startswith("bad") and not kind.startswith(_SKIP)


def annotated_bad_spans(notes: list[tuple[int, int, str]], n: int) -> tuple[tuple[int, int], ...]:
    """Sample ranges of the annotations whose description starts 'BAD' (how MNE users mark
    artifacts by hand: raw.plot, autoreject, BIDS' BAD_ events), skips aside; a zero-length one
    covers its sample."""
    spans = [(max(0, at), min(n, at + max(1, length))) for at, length, kind in notes if marks_bad(kind)]
    return tuple(sorted((a, b) for a, b in spans if b > a))


def _microvolt_scale(inst) -> np.ndarray:
    """(n_chans, 1) factors to microvolts: MNE returns volts for a channel whose unit is the volt,
    whatever its type (EEG typed 'bio' by hand, say); trigger and unitless channels stay as stored."""
    from mne.io.constants import FIFF

    return np.array(
        [1e6 if ch["unit"] == FIFF.FIFF_UNIT_V and kind != "stim" else 1.0
         for ch, kind in zip(inst.info["chs"], inst.get_channel_types())],
        dtype=np.float64,
    )[:, None]


class EpochsReader(Reader):
    """An epoched FIF (``-epo.fif``) or EEGLAB file (``trials`` > 1): its epochs back to back, each
    a `Segment` (no window spans two). A FIF epoch starts at its event's time in the recording it
    was cut from; EEGLAB keeps no such clock, so its epochs follow each other."""

    def __init__(self, path: str | os.PathLike, epochs):
        super().__init__(path)
        self._epochs = epochs
        n, sfreq = len(epochs.times), float(epochs.info["sfreq"])
        _check_info(path, epochs.ch_names, sfreq, n * len(epochs))
        self._scale = _microvolt_scale(epochs)
        self._n = n
        self.info = RecordingInfo(tuple(epochs.ch_names), sfreq, n * len(epochs), _mne_clinical(epochs))
        self.identity_key = _mne_identity(epochs)
        self.bad_channels = tuple(epochs.info["bads"])
        self.digitized = digitized_positions(epochs.info, _format_of(path))
        events = epochs.events[:, 0].astype(np.float64)
        onsets = (events - events[0]) / sfreq if _format_of(path) == "fif" else np.arange(len(epochs)) * n / sfreq
        self._segments = tuple(Segment(k * n, (k + 1) * n, float(t)) for k, t in enumerate(onsets.tolist()))

    def _read(self, start: int, stop: int) -> np.ndarray:
        first, last = start // self._n, max(start, stop - 1) // self._n + 1
        try:
            data = self._epochs.get_data(item=slice(first, last), verbose="error")
        except Exception as err:
            raise ReaderError(self.path, f"epochs {first + 1}-{last}: unreadable ({_one_line(err)})") from err
        data = data.transpose(1, 0, 2).reshape(data.shape[1], -1)
        offset = first * self._n
        return (data[:, start - offset: stop - offset] * self._scale).astype(np.float32)


def _read_epochs(path: str | os.PathLike):
    """MNE's epochs of a FIF or EEGLAB file, or None where it holds none (or is unreadable)."""
    import mne

    fmt = _format_of(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "eeglab":
                _eeglab_chaninfo_guard()
                return mne.io.read_epochs_eeglab(path, verbose="error")
            epochs = mne.read_epochs(path, proj=False, preload=False, verbose="error")  # as raw: no SSP applied
            epochs.drop_bad(verbose="error")  # the epochs get_data returns, counted now
            return epochs if len(epochs) else None
    except Exception:  # not epochs either: the raw reader's error is the one to report
        return None


def eeglab_data_file(path: str | os.PathLike) -> str | None:
    """The file name an EEGLAB .set gives for its data (``EEG.data``: ``x.fdt``), or None where the
    .set holds its data itself or cannot be read. MATLAB 5 files name their variables without
    loading them, so a .set with its fields at the top reads only that one; MATLAB 7.3 (HDF5)
    reads the one dataset either way."""
    import scipy.io

    value = None
    try:
        found = {name: cls for name, _, cls in scipy.io.whosmat(path)}
    except (ValueError, NotImplementedError, OSError, TypeError):  # HDF5 (v7.3), or no MATLAB file
        found = None
    try:
        if found is None:
            value = _hdf5_text(path)
        elif found.get("data") == "char":
            value = scipy.io.loadmat(path, variable_names=["data"], squeeze_me=True)["data"]
        elif "EEG" in found:
            eeg = scipy.io.loadmat(path, variable_names=["EEG"], squeeze_me=True, struct_as_record=False)["EEG"]
            value = getattr(eeg, "data", None)
    except (ValueError, NotImplementedError, OSError, TypeError, KeyError):
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        value = value.item()
    if not isinstance(value, str) or not value.strip():
        return None
    return posixpath.basename(value.strip().replace("\\", "/"))


def _hdf5_text(path) -> str | None:
    import h5py

    with h5py.File(path, "r") as fh:
        node = fh.get("data")
        if node is None and isinstance(fh.get("EEG"), h5py.Group):
            node = fh["EEG"].get("data")
        # MATLAB keeps a char array as uint16 codes; numbers are data, not a name
        if not isinstance(node, h5py.Dataset) or node.dtype != np.uint16 or node.size > 4096:
            return None
        return "".join(map(chr, node[()].ravel()))


def _mne_clinical(raw) -> ClinicalInfo:
    subject = raw.info.get("subject_info") or {}
    birthday = subject.get("birthday")
    meas = raw.info.get("meas_date")
    birth = birthday if isinstance(birthday, dt.date) else None
    recorded = meas.date() if isinstance(meas, dt.datetime) else None
    sex_code = subject.get("sex")
    sex = normalize_sex({1: "M", 2: "F"}.get(sex_code, "")) if sex_code is not None else ""
    return ClinicalInfo(age=age_from_dates(birth, recorded), sex=sex)


def _mne_identity(raw) -> str:
    subject = raw.info.get("subject_info") or {}
    parts = [str(subject.get(k, "")) for k in ("his_id", "last_name", "first_name", "birthday")]
    joined = "|".join(parts)
    return "" if joined.strip("|X0 ") == "" else joined


class HmsParquetReader(Reader):
    """One Kaggle HMS EEG parquet: 19 canonical columns + EKG, 200 Hz, microvolts."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes
            raise ReaderError(path, f"not a parquet file ({_one_line(err)})") from err
        columns = tuple(self._file.schema_arrow.names)
        missing = [c for c in HMS_EEG_COLUMNS if c not in columns]
        if missing:
            raise ReaderError(
                path, f"columns: expected the 19 HMS EEG columns {' '.join(HMS_EEG_COLUMNS)}; "
                f"missing {', '.join(missing)} (found {', '.join(columns[:25]) or 'none'})"
            )
        wanted = list(HMS_EEG_COLUMNS) + [c for c in HMS_AUX_COLUMNS if c in columns]
        # HMS files are at most tens of MB: read once, then slice per window.
        table = self._file.read(columns=wanted)
        # A column that is NaN from start to end is an electrode that was not recorded: leave it
        # out so the harmonizer interpolates it (and marks it in channel_mask). NaN stretches
        # inside a recorded column stay, and reject only the windows they touch.
        self.empty_columns = tuple(
            c for c in wanted
            if table.num_rows and not np.isfinite(table.column(c).to_numpy(zero_copy_only=False)).any()
        )
        self._columns = [c for c in wanted if c not in self.empty_columns]
        n_times = int(self._file.metadata.num_rows)
        _check_info(path, self._columns, HMS_SFREQ, n_times)
        self.info = RecordingInfo(tuple(self._columns), HMS_SFREQ, n_times)
        self.identity_key = self.path.stem
        self._data = np.stack([
            table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in self._columns
        ])

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._data[:, start:stop].copy()


def _format_of(path) -> str:
    name = str(path).lower()
    if GZIPPED_PART.search(name):  # a later part of a split x.fif.gz, read alone
        return "fif"
    for ext, fmt in FORMATS.items():
        if name.endswith(ext):
            return fmt
    return "recording"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}"


def open_recording(path: str | os.PathLike) -> Reader:
    """The reader for a file, chosen by extension."""
    fmt = _format_of(path)
    if fmt == "recording":
        name = Path(path).name.lower()
        archive = next((a for a in ARCHIVES if name.endswith(a)), None)
        got = archive or Path(path).suffix
        hint = " (an archive: unpack it and give the folder as --input)" if archive else ""
        raise ReaderError(path, f"file type: expected one of {', '.join(sorted({*FORMATS, *GZIPPED}))}; "
                                f"got {got!r}{hint}")
    if os.path.getsize(path) == 0:
        raise ReaderError(path, "file size: expected a recording; got an empty (0-byte) file")
    if fmt == "hms_parquet":
        return HmsParquetReader(path)
    if fmt in ("edf", "bdf"):
        from eegfm.pipelines.edf_reader import EdfReader  # imports this module; resolved at call time

        return EdfReader(path)
    try:
        return MneReader(path)
    except ReaderError:
        epochs = _read_epochs(path) if _format_of(path) in ("fif", "eeglab") else None
        if epochs is None:
            raise
        return EpochsReader(path, epochs)
