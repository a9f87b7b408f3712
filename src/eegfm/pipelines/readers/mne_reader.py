"""Every format but EDF/BDF's fast path and parquet through MNE's lazy readers: continuous recordings and epochs."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import tempfile
import warnings

import numpy as np

from eegfm.contract.channels import Digitized
from eegfm.pipelines.privacy.deid import ClinicalInfo, age_from_dates
from eegfm.pipelines.readers.annotations import (
    annotated_bad_spans,
    annotated_events,
    annotated_segments,
    annotation_samples,
)
from eegfm.pipelines.readers.base import (
    Reader,
    ReaderError,
    RecordingInfo,
    Segment,
    check_info,
    format_of,
    one_line,
    unique_channel_names,
)
from eegfm.pipelines.readers.eeglab import eeglab_chaninfo_guard, eeglab_fiducials
from eegfm.pipelines.readers.mne_formats import read_raw_by_format


def _quiet_mffpy() -> None:
    """Silence mffpy (MNE's EGI MFF reader): it prints a note to stdout for every continuous MFF and logs at INFO."""
    logging.getLogger("XMLType").setLevel(logging.WARNING)  # before the import that registers
    import mffpy.reader  # after the line above, and only for MFF files

    mffpy.reader.print = lambda *args, **kwargs: None  # that module's print only


class MneReader(Reader):
    """A recording through MNE's lazy reader for its format (`readers.mne_formats`)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        fmt = format_of(path)
        if fmt == "egi":
            _quiet_mffpy()
        if fmt == "eeglab":
            eeglab_chaninfo_guard()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with _unique_brainvision_names(self.path) as header:
                    self._raw = read_raw_by_format(header)
        except ReaderError:
            raise
        except Exception as err:  # MNE raises many types for malformed files; all mean "unreadable"
            raise ReaderError(path, f"not a readable {fmt} file ({one_line(err)})") from err
        raw, sfreq, n_times = self._raw, float(self._raw.info["sfreq"]), int(self._raw.n_times)
        check_info(path, raw.ch_names, sfreq, n_times)
        self._scale = _microvolt_scale(raw)
        self.info = RecordingInfo(tuple(raw.ch_names), sfreq, n_times, _mne_clinical(raw))
        self.identity_key = _mne_identity(raw)
        meas = raw.info.get("meas_date")
        self.recorded_at = meas.replace(tzinfo=None) if isinstance(meas, dt.datetime) else None
        # A split FIF (``pipelines.readers.fif_parts``): MNE read this part and every one after it.
        parts = [os.path.basename(str(f)) for f in raw.filenames if f] if fmt == "fif" else []
        if len(parts) > 1:
            self.split_parts = tuple(parts)
        notes = annotation_samples(raw)
        self._segments = annotated_segments(notes, n_times, sfreq)
        self.bad_spans = annotated_bad_spans(notes, n_times)
        # the text as recorded, for the uploader to read (matched against codes case-insensitively)
        self.events = annotated_events(annotation_samples(raw, keep_case=True), self.segments, sfreq)
        self.bad_channels = tuple(raw.info["bads"])
        self.digitized = digitized_positions(raw.info, fmt)

    def _read(self, start: int, stop: int) -> np.ndarray:
        try:
            data = self._raw.get_data(start=start, stop=stop)
        except Exception as err:
            raise ReaderError(
                self.path, f"data records: unreadable in samples [{start}, {stop}) ({one_line(err)})"
            ) from err
        return (data * self._scale).astype(np.float32)

    def close(self) -> None:
        self._raw.close()


@contextlib.contextmanager
def _unique_brainvision_names(path: str):
    """``path``, or for a BrainVision header naming two channels alike (two 'EOG' leads, blank slots),
    on which MNE fails, a copy with the duplicates numbered (`unique_channel_names`)."""
    if format_of(path) != "brainvision":
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
    check_info(path, unique, 1.0, 1)  # an electrode named twice: refused here, by name
    folder = os.path.dirname(os.path.abspath(path))
    for (row, _), name in zip(rows, unique):
        key, rest = lines[row].split("=", 1)
        lines[row] = key + "=" + name.replace(",", "\\1") + rest[len(rest.split(",", 1)[0]) :]
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
    """The EEG channels' digitized positions (head frame: x toward the right ear, y the nasion): a
    FIF's or EGI MFF's with the nasion and ears (None without them: no frame to trust); a BrainVision
    header's [Coordinates] (angles on the 10-20 sphere; MNE's fiducials for them are made up); EEGLAB
    chanlocs where chaninfo.nodatchans holds the nasion and ears. All-zero positions are none."""
    from mne.io.constants import FIFF  # mne: heavy, loaded by the MNE readers only

    if fmt not in ("fif", "egi", "brainvision", "eeglab"):
        return None
    fiducials = {
        d["ident"]: tuple(float(v) for v in d["r"])
        for d in info.get("dig") or ()
        if d["kind"] == FIFF.FIFFV_POINT_CARDINAL and d["coord_frame"] == FIFF.FIFFV_COORD_HEAD
    }
    wanted = (FIFF.FIFFV_POINT_NASION, FIFF.FIFFV_POINT_LPA, FIFF.FIFFV_POINT_RPA)
    framed = fmt != "brainvision"
    if framed and not all(k in fiducials for k in wanted):
        return None
    if fmt == "eeglab" and not (fiducials := eeglab_fiducials(fiducials)):
        return None
    placed = [
        (ch["ch_name"], np.asarray(ch["loc"][:3], dtype=np.float64))
        for ch in info["chs"]
        if ch["kind"] == FIFF.FIFFV_EEG_CH and ch["coord_frame"] == FIFF.FIFFV_COORD_HEAD
    ]
    found = {
        name: tuple(xyz.tolist()) for name, xyz in placed if np.all(np.isfinite(xyz)) and np.linalg.norm(xyz) > 0.01
    }
    if not found:
        return None
    return Digitized(found, *(fiducials[k] for k in wanted)) if framed else Digitized(found)


def _microvolt_scale(inst) -> np.ndarray:
    """(n_chans, 1) factors to microvolts: MNE returns volts for a channel whose unit is the volt,
    whatever its type (EEG typed 'bio' by hand, say); trigger and unitless channels stay as stored."""
    from mne.io.constants import FIFF  # mne: heavy, loaded by the MNE readers only

    typed = zip(inst.info["chs"], inst.get_channel_types())
    scales = [1e6 if ch["unit"] == FIFF.FIFF_UNIT_V and kind != "stim" else 1.0 for ch, kind in typed]
    return np.array(scales, dtype=np.float64)[:, None]


class EpochsReader(Reader):
    """An epoched FIF or EEGLAB file: its epochs back to back, each a `Segment`, at its event's time
    (a FIF's) or right after the one before (EEGLAB keeps no such clock)."""

    def __init__(self, path: str | os.PathLike, epochs):
        super().__init__(path)
        self._epochs = epochs
        n, sfreq = len(epochs.times), float(epochs.info["sfreq"])
        check_info(path, epochs.ch_names, sfreq, n * len(epochs))
        self._scale = _microvolt_scale(epochs)
        self._n = n
        self.info = RecordingInfo(tuple(epochs.ch_names), sfreq, n * len(epochs), _mne_clinical(epochs))
        self.identity_key = _mne_identity(epochs)
        self.bad_channels = tuple(epochs.info["bads"])
        self.digitized = digitized_positions(epochs.info, format_of(path))
        events = epochs.events[:, 0].astype(np.float64)
        onsets = (events - events[0]) / sfreq if format_of(path) == "fif" else np.arange(len(epochs)) * n / sfreq
        self._segments = tuple(Segment(k * n, (k + 1) * n, float(t)) for k, t in enumerate(onsets.tolist()))

    def _read(self, start: int, stop: int) -> np.ndarray:
        first, last = start // self._n, max(start, stop - 1) // self._n + 1
        try:
            data = self._epochs.get_data(item=slice(first, last), verbose="error")
        except Exception as err:
            raise ReaderError(self.path, f"epochs {first + 1}-{last}: unreadable ({one_line(err)})") from err
        data = data.transpose(1, 0, 2).reshape(data.shape[1], -1)
        offset = first * self._n
        return (data[:, start - offset : stop - offset] * self._scale).astype(np.float32)


def read_epochs(path: str | os.PathLike):
    """MNE's epochs of a FIF or EEGLAB file, or None where it holds none (or is unreadable)."""
    import mne  # heavy: only where a file is not EDF or parquet

    fmt = format_of(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "eeglab":
                eeglab_chaninfo_guard()
                return mne.io.read_epochs_eeglab(path, verbose="error")
            epochs = mne.read_epochs(path, proj=False, preload=False, verbose="error")  # as raw: no SSP applied
            epochs.drop_bad(verbose="error")  # the epochs get_data returns, counted now
            return epochs if len(epochs) else None
    except Exception:  # not epochs either: the raw reader's error is the one to report
        return None


def _mne_clinical(raw) -> ClinicalInfo:
    subject = raw.info.get("subject_info") or {}
    birthday = subject.get("birthday")
    meas = raw.info.get("meas_date")
    birth = birthday if isinstance(birthday, dt.date) else None
    recorded = meas.date() if isinstance(meas, dt.datetime) else None
    return ClinicalInfo(age=age_from_dates(birth, recorded), sex={1: "M", 2: "F"}.get(subject.get("sex"), ""))


def _mne_identity(raw) -> str:
    subject = raw.info.get("subject_info") or {}
    parts = [str(subject.get(k, "")) for k in ("his_id", "last_name", "first_name", "birthday")]
    joined = "|".join(parts)
    return "" if joined.strip("|X0 ") == "" else joined
