"""A strict EDF/EDF+/BDF reader that reads a chunk of data records at a time.

Our own because one ``pread`` of a chunk's records scaled by the header's gains is several times
faster than per-channel library reads (a memory map would keep every touched page in RSS), and
because each defect of a clinical archive (truncated uploads, wrong record counts, non-numeric
fields) must become one quarantine line naming the file, the header field and what was expected.
Only age and sex leave the header (`pipelines.privacy.deid`); the patient field becomes an opaque `identity_key`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import re

import numpy as np

from eegfm.contract.channels import auxiliary_kind, standard_name
from eegfm.pipelines.privacy.deid import ClinicalInfo, age_from_dates, normalize_sex
from eegfm.pipelines.readers.annotations import marks_bad
from eegfm.pipelines.readers.base import (
    MAX_SFREQ,
    MIN_SFREQ,
    Reader,
    ReaderError,
    RecordingInfo,
    Segment,
    check_info,
    names_electrode,
    unique_channel_names,
)
from eegfm.pipelines.readers.regular_files import open_regular_fd
from eegfm.pipelines.signal.harmonize import HarmonizeError, microvolt_scale

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
MAX_SIGNALS = 4096  # well above any real montage; protects against absurd declared counts
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}
_EDFPLUS_DATE = re.compile(r"^(\d{2})-([A-Z]{3})-(\d{4})$")
# A data record's time-keeping TAL: its onset, maybe a duration, then 0x14 (EDF+ spec, 2.2.4).
_TIME_KEEPING = re.compile(rb"^([+-]\d+(?:\.\d*)?)[\x14\x15]")
# Any other TAL: onset, optional 0x15 and duration, 0x14, then texts each ended by 0x14.
_TAL = re.compile(rb"^([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*)$", re.DOTALL)


def _text(raw: bytes) -> str:
    # The spec pads with spaces; some writers pad with NUL bytes, which are no part of the value.
    return raw.decode("latin-1").replace("\x00", " ").strip()


def _number(path, raw: bytes, field: str, *, integer: bool = False) -> float:
    text = _text(raw)
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ReaderError(path, f"header field {field}: expected {kind}; got {text!r}") from None
    if not math.isfinite(value):
        raise ReaderError(path, f"header field {field}: expected a finite number; got {text!r}")
    return value


def _expect(ok: bool, path, field: str, expected: str, got) -> None:
    """ReaderError ``header field <field>: expected <expected>; got <got>`` unless ``ok``."""
    if not ok:
        raise ReaderError(path, f"header field {field}: expected {expected}; got {got}")


def unit_from_range(label: str, span: float) -> float:
    """The µV factor of a voltage signal whose physical dimension is blank or unknown, from its declared range: EEG in
    volts spans ±0.0032, in mV ±3.2, in µV ±3200 (MNE assumes volts, 10^3 or 10^6 off for other writers). Signals that
    name no electrode or ECG/EOG/EMG lead keep their values (a blank SpO2 in %)."""
    if not (names_electrode(label) or auxiliary_kind(label) in ("ecg", "eog", "emg")):
        return 1.0
    span = abs(float(span))
    return 1e6 if span < 0.1 else 1e3 if span < 100.0 else 1.0


class EdfHeader:
    """The parsed, validated header; raises ReaderError naming the field on any inconsistency."""

    def __init__(self, path: str, head: bytes, file_size: int):
        self.path = path
        if file_size < 256:
            raise ReaderError(path, f"header: expected at least 256 bytes; the file has {file_size}")
        version = head[:8]
        self.bdf = version == b"\xffBIOSEMI"
        if not self.bdf and _text(version) != "0":
            raise ReaderError(path, f"header field version: expected '0' (EDF) or 0xFF'BIOSEMI' (BDF); got {version!r}")
        self.sample_bytes = 3 if self.bdf else 2
        self.patient_field = _text(head[8:88])
        self.recording_field = _text(head[88:168])
        self.start_date = _text(head[168:176])
        self.start_time = _text(head[176:184])
        n_signals = int(_number(path, head[252:256], "number of signals", integer=True))
        _expect(1 <= n_signals <= MAX_SIGNALS, path, "number of signals", f"1..{MAX_SIGNALS}", n_signals)
        header_bytes = int(_number(path, head[184:192], "header bytes", integer=True))
        expected = f"256 * (1 + {n_signals} signals) = {256 * (n_signals + 1)}"
        _expect(header_bytes == 256 * (n_signals + 1), path, "header bytes", expected, header_bytes)
        if file_size < header_bytes:
            raise ReaderError(
                path,
                f"header: declares {n_signals} signals ({header_bytes} header bytes) "
                f"but the file has only {file_size} bytes",
            )
        self.reserved = _text(head[192:236])
        self.n_records = int(_number(path, head[236:244], "number of data records", integer=True))
        self.record_duration = _number(path, head[244:252], "duration of a data record")
        self.n_signals, self.header_bytes = n_signals, header_bytes
        try:
            self._parse_signals(head[256:header_bytes])
        except ReaderError as err:
            err.labels = tuple(getattr(self, "labels", ()))  # its message names them: for redaction
            raise
        if all(label in ANNOTATION_LABELS for label in self.labels):  # EDF+ allows a 0 s record here
            raise ReaderError(
                path,
                "signals: expected at least one data signal; the file holds only annotations "
                "(an EDF+ annotation file such as a hypnogram describes a recording; it is not one)",
            )
        duration = self.record_duration
        _expect(duration > 0, path, "duration of a data record", "seconds > 0", f"{duration:g}")
        self._check_size(file_size)

    def _parse_signals(self, block: bytes) -> None:
        ns, path = self.n_signals, self.path
        offsets = (0, *itertools.accumulate((16, 80, 8, 8, 8, 8, 8, 80, 8, 32)))  # the fields' widths
        cols = [
            [block[a * ns + i * (b - a) : a * ns + (i + 1) * (b - a)] for i in range(ns)]
            for a, b in zip(offsets, offsets[1:])
        ]
        self.labels = [_text(b) for b in cols[0]]
        self.units = [_text(b) for b in cols[2]]

        def numbers(k: int, field: str, integer: bool = False) -> np.ndarray:
            named = (f"{field} of signal {i} ({label!r})" for i, label in enumerate(self.labels, start=1))
            return np.array([_number(path, b, name, integer=integer) for b, name in zip(cols[k], named)])

        self.phys_min, self.phys_max = numbers(3, "physical minimum"), numbers(4, "physical maximum")
        self.dig_min, self.dig_max = numbers(5, "digital minimum", True), numbers(6, "digital maximum", True)
        self.samples_per_record = numbers(8, "samples per record", True)
        for i, label in enumerate(self.labels):
            signal, spr = f"of signal {i + 1} ({label!r})", self.samples_per_record[i]
            _expect(spr >= 1, path, f"samples per record {signal}", ">= 1 (a sampling rate above 0 Hz)", spr)
            if label in ANNOTATION_LABELS:
                continue
            expected = f"> digital minimum {self.dig_min[i]}"
            _expect(self.dig_max[i] > self.dig_min[i], path, f"digital maximum {signal}", expected, self.dig_max[i])
            if self.phys_max[i] == self.phys_min[i]:
                both = f"both are {self.phys_min[i]:g}"
                raise ReaderError(path, f"header field physical maximum {signal}: expected != physical minimum; {both}")
        self.record_bytes = int(self.samples_per_record.sum()) * self.sample_bytes

    def _check_size(self, file_size: int) -> None:
        complete = (file_size - self.header_bytes) // self.record_bytes
        if self.n_records == -1:  # "unknown": allowed while a recording is in progress
            self.n_records = complete
        else:
            _expect(self.n_records >= 1, self.path, "number of data records", ">= 1 (or -1)", self.n_records)
        if complete < self.n_records:
            raise ReaderError(
                self.path,
                f"data records: the header declares {self.n_records} records of "
                f"{self.record_bytes} bytes but the file holds {complete} complete ones "
                f"({file_size} bytes): truncated file or wrong record count",
            )
        elif complete > self.n_records:
            raise ReaderError(
                self.path,
                f"header field number of data records: the file holds {complete} "
                f"complete records but the header declares {self.n_records}",
            )
        if self.n_records < 1:
            raise ReaderError(self.path, "data records: expected at least one complete record; got none")

    @property
    def discontinuous(self) -> bool:
        return self.reserved.startswith(("EDF+D", "BDF+D"))

    @property
    def edf_plus(self) -> bool:
        return self.reserved.startswith(("EDF+", "BDF+"))

    def clinical(self) -> ClinicalInfo:
        """Age in whole years and sex from EDF+ structured fields; nothing from free text."""
        if not self.edf_plus:
            return ClinicalInfo()
        parts = self.patient_field.split(" ")
        sex = normalize_sex(parts[1]) if len(parts) > 1 else ""
        birth = _edfplus_date(parts[2]) if len(parts) > 2 else None
        rec = self.recording_field.split(" ")
        start = _edfplus_date(rec[1]) if len(rec) > 1 and rec[0] == "Startdate" else None
        return ClinicalInfo(age=age_from_dates(birth, start or self._header_date()), sex=sex)

    def _header_date(self) -> dt.date | None:
        m = re.match(r"^(\d{2})\.(\d{2})\.(\d{2})$", self.start_date)
        if not m:
            return None
        day, month, yy = map(int, m.groups())
        try:
            return dt.date(1900 + yy if yy >= 85 else 2000 + yy, month, day)
        except ValueError:
            return None

    def recorded_at(self) -> dt.datetime | None:
        """The start date and clock time (``Reader.recorded_at``): the EDF+ Startdate's four-digit
        year where there is one, else the header's dd.mm.yy; None where either field is not a date."""
        rec = self.recording_field.split(" ")
        date = _edfplus_date(rec[1]) if self.edf_plus and len(rec) > 1 and rec[0] == "Startdate" else None
        date = date or self._header_date()
        m = re.match(r"^(\d{2})\.(\d{2})\.(\d{2})$", self.start_time)
        if date is None or not m:
            return None
        try:
            return dt.datetime.combine(date, dt.time(*map(int, m.groups())))
        except ValueError:
            return None

    def identity_key(self) -> str:
        """Opaque subject key for pseudonyms: the patient field, never logged or stored."""
        field = self.patient_field
        return "" if field.strip("X -") == "" else field


def _edfplus_date(text: str) -> dt.date | None:
    m = _EDFPLUS_DATE.match(text.upper())
    if not m or m.group(2) not in _MONTHS:
        return None
    try:
        return dt.date(int(m.group(3)), _MONTHS[m.group(2)], int(m.group(1)))
    except ValueError:
        return None


def record_segments(path, onsets: np.ndarray, record_duration: float, samples_per_record: int) -> tuple[Segment, ...]:
    """Runs of data records that follow each other without a gap, as sample ranges with their
    onset from the first record. Records must be in time order and not overlap; a step within
    half a sample of the record duration is no gap."""
    tolerance = 0.5 * record_duration / samples_per_record
    steps = np.diff(onsets)
    early = np.flatnonzero(steps < record_duration - tolerance)
    if early.size:
        k = int(early[0]) + 1
        raise ReaderError(
            path,
            f"data record {k + 1}: starts at {onsets[k]:g} s, before the previous record "
            f"ends ({onsets[k - 1] + record_duration:g} s); EDF+D records must be in time order "
            "and must not overlap",
        )
    firsts = [0, *(np.flatnonzero(steps > record_duration + tolerance) + 1).tolist()]
    lasts = [*firsts[1:], len(onsets)]
    return tuple(
        Segment(a * samples_per_record, b * samples_per_record, float(onsets[a] - onsets[0]))
        for a, b in zip(firsts, lasts)
    )


def bad_spans(notes, origin_s: float, segments: tuple[Segment, ...], sfreq: float) -> tuple[tuple[int, int], ...]:
    """Sample ranges of the 'BAD...' annotations (MNE's artifact marks) on the segments' clock (``origin_s``: the first
    record's onset); a span over a gap covers each side's part, a zero-length one its sample."""
    spans = []
    for onset, duration, _ in (note for note in notes if marks_bad(note[2])):
        start_s, stop_s = onset - origin_s, onset - origin_s + duration
        for seg in segments:
            seg_stop_s = seg.onset_s + (seg.stop - seg.start) / sfreq
            if start_s > seg_stop_s or stop_s < seg.onset_s:
                continue
            first = seg.start + max(0, int(round((start_s - seg.onset_s) * sfreq)))
            last = seg.start + min(seg.stop - seg.start, int(round((stop_s - seg.onset_s) * sfreq)))
            last = max(last, first + 1)
            if first < seg.stop:
                spans.append((first, min(last, seg.stop)))
    return tuple(sorted(spans))


def _eeg_rate(labels: list[str], samples_per_record: np.ndarray) -> int:
    """The samples per record of the signals a reader returns (others, a slow SpO2 say, are left out): the rate of the
    most EEG electrodes, then of the most signals (a clinical export may hold more 1 Hz trend channels than EEG)."""
    groups: dict[int, list[int]] = {}
    for label, rate in zip(labels, samples_per_record.tolist()):
        electrodes, signals = groups.setdefault(rate, [0, 0])
        groups[rate] = [electrodes + (standard_name(label) is not None), signals + 1]
    return max(groups, key=lambda rate: (*groups[rate], rate))


class EdfReader(Reader):
    """EDF/BDF read a chunk at a time; channels are the data signals at the recording's main rate."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        # One descriptor for the header and every chunk (pread), opened without blocking on a FIFO.
        self._fd = open_regular_fd(self.path)
        try:
            self._parse(os.fstat(self._fd).st_size)
        except BaseException:
            self.close()
            raise

    def _parse(self, size: int) -> None:
        head = os.pread(self._fd, 256, 0)
        try:
            ns = int(_text(head[252:256]))
        except ValueError:
            ns = 0
        if 1 <= ns <= MAX_SIGNALS:
            head += os.pread(self._fd, 256 * ns, 256)
        self.header = hdr = EdfHeader(str(self.path), head, size)
        data_idx = [i for i, lbl in enumerate(hdr.labels) if lbl not in ANNOTATION_LABELS]
        main = _eeg_rate([hdr.labels[i] for i in data_idx], hdr.samples_per_record[data_idx])
        self._idx = [i for i in data_idx if hdr.samples_per_record[i] == main]
        self.skipped = [hdr.labels[i] for i in data_idx if hdr.samples_per_record[i] != main]
        self._spr = main
        offsets = np.concatenate([[0], np.cumsum(hdr.samples_per_record)])
        self._offsets = offsets[self._idx]
        scale = (hdr.phys_max - hdr.phys_min) / (hdr.dig_max - hdr.dig_min)
        to_uv = []
        for i in self._idx:
            try:
                to_uv.append(microvolt_scale(hdr.units[i], channel=hdr.labels[i]))
            except HarmonizeError:  # blank or unknown ('Volt', a writer's spelling): the range tells
                to_uv.append(unit_from_range(hdr.labels[i], hdr.phys_max[i] - hdr.phys_min[i]))
        self._gain = (scale[self._idx] * np.array(to_uv))[:, None].astype(np.float64)
        offset = hdr.phys_min[self._idx] - hdr.dig_min[self._idx] * scale[self._idx]
        self._offset = (offset * np.array(to_uv))[:, None]
        ch_names = unique_channel_names([hdr.labels[i] for i in self._idx])
        sfreq = main / hdr.record_duration
        if not MIN_SFREQ <= sfreq <= MAX_SFREQ:
            raise ReaderError(
                self.path,
                f"header fields duration of a data record ({hdr.record_duration:g} s) and samples per record "
                f"({main}) give a sampling rate of {sfreq:g} Hz; expected {MIN_SFREQ:g} to {MAX_SFREQ:g} Hz",
            )
        n_times = hdr.n_records * main
        check_info(self.path, ch_names, sfreq, n_times)
        self.info = RecordingInfo(ch_names, sfreq, n_times, hdr.clinical())
        self.identity_key = hdr.identity_key()
        self.recorded_at = hdr.recorded_at()
        if hdr.edf_plus and any(label in ANNOTATION_LABELS for label in hdr.labels):
            try:
                onsets, notes = self._annotations()
            except ReaderError:
                if hdr.discontinuous:  # its records' times are needed; an EDF+C reads without them
                    raise
                onsets, notes = np.zeros(1), []
            if hdr.discontinuous:
                segments = record_segments(self.path, onsets, hdr.record_duration, main)
                self._segments = segments if len(segments) > 1 else ()
            self.bad_spans = bad_spans(notes, onsets[0], self.segments, sfreq)
            self.events = tuple((onset - onsets[0], duration, text) for onset, duration, text in notes)
        elif hdr.discontinuous:
            raise ReaderError(
                self.path,
                f"signals: an {hdr.reserved[:5]} file needs an '{ANNOTATION_LABELS[0]}' "
                "signal holding each data record's onset; found none",
            )

    def _annotations(self) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
        """Each data record's onset (s), from the time-keeping TAL opening its first annotation signal
        (an EDF+C's follow from the first), and the records' annotations as (onset, duration, text)."""
        hdr, nb = self.header, self.header.sample_bytes
        signal = next(i for i, lbl in enumerate(hdr.labels) if lbl in ANNOTATION_LABELS)
        at = hdr.header_bytes + int(hdr.samples_per_record[:signal].sum()) * nb
        width = int(hdr.samples_per_record[signal]) * nb
        onsets, notes = np.empty(hdr.n_records), []
        for k in range(hdr.n_records):
            payload = os.pread(self._fd, width, at + k * hdr.record_bytes)
            if k and not hdr.discontinuous and b"\x00" not in payload.rstrip(b"\x00"):
                continue  # the time-keeping TAL alone, the case of nearly every record: nothing to parse
            tals = payload.split(b"\x00")
            match = _TIME_KEEPING.match(tals[0])
            if match is None:  # the bytes are not echoed: annotation text may name the patient
                raise ReaderError(
                    self.path,
                    f"data record {k + 1}: expected its onset ('+<seconds>' then 0x14) "
                    f"at the start of its {hdr.labels[signal]} signal; got none",
                )
            onsets[k] = float(match.group(1))
            for tal in tals[1:]:
                note = _TAL.match(tal)
                if note:
                    texts = note.group(3).split(b"\x14")
                    notes += [
                        (float(note.group(1)), float(note.group(2) or 0), t.decode("utf-8", "replace"))
                        for t in texts
                        if t
                    ]
        if not hdr.discontinuous:
            onsets = onsets[0] + hdr.record_duration * np.arange(hdr.n_records)
        return onsets, notes

    def _read(self, start: int, stop: int) -> np.ndarray:
        spr, nb, record = self._spr, self.header.sample_bytes, self.header.record_bytes
        first, last = start // spr, (stop - 1) // spr + 1 if stop > start else start // spr
        out = np.empty((len(self._idx), stop - start), dtype=np.float32)
        if stop == start:
            return out
        size, at = (last - first) * record, self.header.header_bytes + first * record
        buffer = os.pread(self._fd, size, at)
        if len(buffer) != size:  # the file shrank after its header was checked
            raise ReaderError(self.path, f"data records: expected {size} bytes at offset {at}; got {len(buffer)}")
        block = np.frombuffer(buffer, dtype=np.uint8).reshape(last - first, record)
        for row, off in enumerate(self._offsets):
            raw = block[:, off * nb : (off + spr) * nb]
            if nb == 2:
                digital = raw.reshape(-1).view("<i2").astype(np.float64)
            else:
                b = raw.reshape(-1, 3).astype(np.int32)
                digital = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)).astype(np.int32)
                digital = np.where(digital >= 1 << 23, digital - (1 << 24), digital).astype(np.float64)
            seg = digital[start - first * spr : stop - first * spr]
            out[row] = seg * self._gain[row, 0] + self._offset[row, 0]
        return out

    def close(self, _close=os.close) -> None:  # bound now: at interpreter exit the os module may be gone
        fd = getattr(self, "_fd", None)
        if fd is not None:
            _close(fd)
        self._fd = None

    def __del__(self) -> None:  # a reader dropped without close() (an error mid-recording)
        self.close()
