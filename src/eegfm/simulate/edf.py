"""European Data Format (EDF, EDF+C) writing in plain numpy.

EDF: a fixed-width ASCII header (256 bytes, then 256 per signal), then data records of int16
samples, one block per signal per record; EDF+ adds an ``EDF Annotations`` signal of Time-stamped
Annotation Lists (TALs). Spec: https://www.edfplus.info/specs/edf.html and .../edfplus.html.
Not pyedflib: it wants whole signals in memory, and the simulator and tests need every header byte
(planted identifiers, forged damaged files), so :func:`header_bytes` and the rest are public.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

ANNOTATION_LABEL = "EDF Annotations"
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_N_RECORDS_OFFSET = 236  # of the 8-byte "number of data records" field


class EDFError(ValueError):
    """A header value cannot be written as EDF; the message names the field and the value."""


@dataclasses.dataclass(frozen=True)
class EDFSignal:
    """One signal's header entry. ``samples_per_record`` / record duration is its sampling rate."""

    label: str
    physical_min: float
    physical_max: float
    samples_per_record: int
    physical_dimension: str = "uV"
    digital_min: int = -32768
    digital_max: int = 32767
    transducer: str = ""
    prefiltering: str = ""
    reserved: str = ""


@dataclasses.dataclass(frozen=True)
class Annotation:
    """An EDF+ annotation: onset and duration in seconds from the recording start, and text."""

    onset: float
    text: str
    duration: float | None = None


@dataclasses.dataclass(frozen=True)
class EDFHeader:
    """The whole header. ``edf_plus`` appends an ``EDF Annotations`` signal of ``annotation_samples`` 2-byte samples per
    record and marks ``EDF+C``. ``n_records`` -1 means unknown (the spec allows it while recording)."""

    signals: tuple[EDFSignal, ...]
    start: datetime
    patient: str = "X X X X"
    recording: str = ""
    record_duration: float = 1.0
    n_records: int = -1
    edf_plus: bool = False
    annotation_samples: int = 0
    version: str = "0"

    def all_signals(self) -> tuple[EDFSignal, ...]:
        """The signals as they appear in the file, annotation signal (if any) last."""
        if not self.edf_plus:
            return tuple(self.signals)
        annotations = EDFSignal(ANNOTATION_LABEL, -1.0, 1.0, self.annotation_samples, physical_dimension="")
        return (*self.signals, annotations)

    @property
    def header_size(self) -> int:
        return 256 * (1 + len(self.all_signals()))

    @property
    def record_size(self) -> int:
        """Bytes per data record."""
        return 2 * sum(s.samples_per_record for s in self.all_signals())


def edf_date(day: date) -> str:
    """``dd-MMM-yyyy`` with an upper-case English month, as EDF+ wants (``14-MAR-1957``)."""
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year:04d}"


def edf_plus_patient(code: str, sex: str, birthdate: date | None, name: str) -> str:
    """The EDF+ patient field: four space-separated subfields, ``X`` for unknown (spaces in one: ``_``)."""
    if sex not in ("F", "M", "X"):
        raise EDFError(f"patient sex: expected one of 'F', 'M', 'X'; got {sex!r}")
    birth = edf_date(birthdate) if birthdate is not None else "X"
    return " ".join(_subfield(v) for v in (code, sex, birth, name))


def edf_plus_recording(start: date, admin_code: str, technician: str, equipment: str) -> str:
    """The EDF+ recording field: ``Startdate dd-MMM-yyyy <admin code> <technician> <equipment>``."""
    fields = (admin_code, technician, equipment)
    return " ".join(["Startdate", edf_date(start), *(_subfield(v) for v in fields)])


def _subfield(value: str) -> str:
    value = value.strip().replace(" ", "_")
    return value or "X"


def format_number(value: float, width: int = 8, *, field: str = "number") -> str:
    """The shortest decimal form of ``value`` that fits ``width`` characters; EDFError for a value
    that does not fit even rounded (123456789), never a truncated field."""
    if not math.isfinite(value):
        raise EDFError(f"{field}: expected a finite number; got {value!r}")
    if float(value).is_integer() and len(str(int(value))) <= width:
        return str(int(value))
    for decimals in range(width, -1, -1):
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= width:
            return text
    raise EDFError(f"{field}: {value!r} does not fit in {width} characters")


def _field(value: str, width: int, name: str) -> bytes:
    if len(value) > width:
        raise EDFError(f"{name}: at most {width} characters; got {len(value)} ({value!r})")
    if any(not 32 <= ord(ch) <= 126 for ch in value):
        raise EDFError(f"{name}: only printable ASCII is allowed in EDF headers; got {value!r}")
    return value.ljust(width).encode("ascii")


def header_bytes(header: EDFHeader) -> bytes:
    """The complete header (``header.header_size`` bytes) exactly as it goes on disk."""
    signals = header.all_signals()
    if header.edf_plus and header.annotation_samples < 1:
        raise EDFError(f"annotation_samples: expected >= 1 for an EDF+ header; got {header.annotation_samples}")
    start = header.start
    fixed = [
        (header.version, 8, "version"),
        (header.patient, 80, "patient"),
        (header.recording, 80, "recording"),
        (f"{start.day:02d}.{start.month:02d}.{start.year % 100:02d}", 8, "startdate"),
        (f"{start.hour:02d}.{start.minute:02d}.{start.second:02d}", 8, "starttime"),
        (str(header.header_size), 8, "header bytes"),
        ("EDF+C" if header.edf_plus else "", 44, "reserved"),
        (str(header.n_records), 8, "number of data records"),
        (format_number(header.record_duration, field="record duration"), 8, "record duration"),
        (str(len(signals)), 4, "number of signals"),
    ]
    columns = [
        ("label", 16, lambda s: s.label),
        ("transducer", 80, lambda s: s.transducer),
        ("physical dimension", 8, lambda s: s.physical_dimension),
        ("physical minimum", 8, lambda s: format_number(s.physical_min, field=f"{s.label} minimum")),
        ("physical maximum", 8, lambda s: format_number(s.physical_max, field=f"{s.label} maximum")),
        ("digital minimum", 8, lambda s: str(int(s.digital_min))),
        ("digital maximum", 8, lambda s: str(int(s.digital_max))),
        ("prefiltering", 80, lambda s: s.prefiltering),
        ("samples per record", 8, lambda s: str(int(s.samples_per_record))),
        ("reserved", 32, lambda s: s.reserved),
    ]
    return b"".join(_field(*f) for f in fixed) + b"".join(
        _field(get(s), width, f"signal {i} ({s.label!r}) {name}")
        for name, width, get in columns
        for i, s in enumerate(signals)
    )


def written_scaling(signal: EDFSignal) -> tuple[float, float]:
    """``(gain, offset)`` with physical = digital * gain + offset, from the limits *as written*
    (8-character fields round them), the only ones a reader sees."""
    pmin = float(format_number(signal.physical_min))
    pmax = float(format_number(signal.physical_max))
    if pmax == pmin:
        raise EDFError(f"{signal.label}: physical minimum and maximum are equal ({pmin}) once written")
    if signal.digital_max <= signal.digital_min:
        raise EDFError(
            f"{signal.label}: digital maximum must exceed digital minimum; got "
            f"{signal.digital_min}..{signal.digital_max}"
        )
    gain = (pmax - pmin) / (signal.digital_max - signal.digital_min)
    return gain, pmin - signal.digital_min * gain


def physical_to_digital(values: np.ndarray, signal: EDFSignal) -> np.ndarray:
    """Quantize physical values to int16, clipping at the signal's digital range (like an ADC)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise EDFError(f"{signal.label}: samples must be finite; got NaN or infinity")
    gain, offset = written_scaling(signal)
    digital = np.rint((values - offset) / gain)
    np.clip(digital, signal.digital_min, signal.digital_max, out=digital)
    return digital.astype("<i2")


def digital_to_physical(digital: np.ndarray, signal: EDFSignal) -> np.ndarray:
    gain, offset = written_scaling(signal)
    return np.asarray(digital, dtype=np.float64) * gain + offset


def encode_tal(onset: float, texts: Sequence[str] = (), duration: float | None = None) -> bytes:
    """One Time-stamped Annotation List (EDF+ 2.2.2: 0x15 before a duration, 0x14 after the onset and each
    text, 0x00 at the end); with no texts a time-keeping TAL, ``+12\\x14\\x14\\x00``."""
    head = (("-" if onset < 0 else "+") + format_number(abs(onset), width=20, field="annotation onset")).encode()
    if duration is not None:
        head += b"\x15" + format_number(duration, width=20, field="annotation duration").encode("ascii")
    body = b"".join(_encode_annotation_text(t) + b"\x14" for t in texts)
    return head + b"\x14" + (body or b"\x14") + b"\x00"


def _encode_annotation_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    if any(b in raw for b in (0, 0x14, 0x15)):
        raise EDFError(f"annotation text: must not contain bytes 0x00, 0x14 or 0x15; got {text!r}")
    return raw


def record_annotation_bytes(record_onset: float, annotations: Sequence[Annotation]) -> bytes:
    """The annotation signal payload of one record: time-keeping TAL, then one TAL per annotation."""
    return encode_tal(record_onset) + b"".join(encode_tal(a.onset, [a.text], a.duration) for a in annotations)


def assign_annotations(annotations: Sequence[Annotation], record_duration: float) -> dict[int, list[Annotation]]:
    """Group annotations by the record their onset falls in (the convention readers expect)."""
    by_record: dict[int, list[Annotation]] = {}
    for note in sorted(annotations, key=lambda a: a.onset):
        if note.onset < 0:
            raise EDFError(f"annotation onset: expected >= 0 s; got {note.onset} ({note.text!r})")
        by_record.setdefault(int(note.onset // record_duration), []).append(note)
    return by_record


def annotation_samples_needed(annotations: Sequence[Annotation], record_duration: float) -> int:
    """Annotation-signal samples per record big enough for the fullest record (plus the TAL end);
    the time-keeping TAL is sized for a recording of up to 10 million records."""
    by_record = assign_annotations(annotations, record_duration)
    payloads = [record_annotation_bytes(10_000_000 * record_duration, [])]
    payloads += [record_annotation_bytes(k * record_duration, notes) for k, notes in by_record.items()]
    longest = max(map(len, payloads))
    return (longest + 1) // 2 + 1  # +1 sample so every record ends in at least one 0 byte


class EDFWriter:
    """Stream physical samples into an EDF/EDF+C file, in chunks of any size (they do not change
    the file). ``close`` writes the record count into the header; a trailing partial record is an
    error unless ``pad_last_record`` (filled with the physical value closest to 0)."""

    def __init__(
        self,
        path: str | Path,
        header: EDFHeader,
        annotations: Sequence[Annotation] = (),
        *,
        pad_last_record: bool = False,
    ) -> None:
        if annotations and not header.edf_plus:
            raise EDFError("annotations: only EDF+ headers (edf_plus=True) can hold annotations")
        if header.record_duration <= 0:
            raise EDFError(f"record_duration: expected > 0 s; got {header.record_duration}")
        if header.edf_plus:
            needed = annotation_samples_needed(annotations, header.record_duration)
            header = dataclasses.replace(header, annotation_samples=max(needed, header.annotation_samples))
        self.header = dataclasses.replace(header, n_records=-1)
        self.path = Path(path)
        self._signals = header.signals
        self._spr = np.array([s.samples_per_record for s in self._signals], dtype=np.int64)
        self._by_record = assign_annotations(annotations, header.record_duration)
        self._pad_last_record = pad_last_record
        self._pending: list[np.ndarray] = [np.empty(0) for _ in self._signals]
        self._offsets = np.concatenate([[0], np.cumsum(self._spr)])
        self.n_records = 0
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(header_bytes(self.header))

    def __enter__(self) -> EDFWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the original error; leave the partial file for the caller to discard
            self.abort()

    def write(self, block: np.ndarray | Sequence[np.ndarray]) -> None:
        """Append physical samples: a 2-D array (all signals at one rate) or one 1-D array per signal."""
        if self._file is None:
            raise EDFError(f"{self.path}: writer is closed")
        columns = self._split(block)
        self._pending = [np.concatenate([p, c]) for p, c in zip(self._pending, columns)]
        n_complete = int(min(len(p) // s for p, s in zip(self._pending, self._spr)))
        if n_complete:
            self._write_records(n_complete)

    def _split(self, block: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        columns = list(block) if not isinstance(block, np.ndarray) else list(np.atleast_2d(block))
        if len(columns) != len(self._signals):
            raise EDFError(
                f"block: expected {len(self._signals)} signals (the header's data signals); got {len(columns)}"
            )
        columns = [np.asarray(c, dtype=np.float64).ravel() for c in columns]
        lengths = np.array([len(c) for c in columns])
        # Each signal must advance by the same amount of time (lengths proportional to rates).
        if np.any(lengths * self._spr[0] != lengths[0] * self._spr):
            raise EDFError(
                "block: signal lengths must be proportional to samples_per_record "
                f"{self._spr.tolist()}; got {lengths.tolist()}"
            )
        return columns

    def _write_records(self, n_records: int) -> None:
        width = int(self._offsets[-1]) + self.header.annotation_samples * self.header.edf_plus
        out = np.empty((n_records, width), dtype="<i2")
        for i, signal in enumerate(self._signals):
            take = n_records * int(self._spr[i])
            digital = physical_to_digital(self._pending[i][:take], signal)
            out[:, self._offsets[i] : self._offsets[i + 1]] = digital.reshape(n_records, -1)
            self._pending[i] = self._pending[i][take:]
        if self.header.edf_plus:
            out[:, self._offsets[-1] :] = self._annotation_block(n_records)
        assert self._file is not None
        self._file.write(out.tobytes())
        self.n_records += n_records

    def _annotation_block(self, n_records: int) -> np.ndarray:
        n_bytes = 2 * self.header.annotation_samples
        raw = bytearray(n_records * n_bytes)
        for k in range(n_records):
            index = self.n_records + k
            payload = record_annotation_bytes(index * self.header.record_duration, self._by_record.pop(index, []))
            if len(payload) >= n_bytes:
                raise EDFError(
                    f"annotations of record {index} need {len(payload)} bytes; the annotation "
                    f"signal holds {n_bytes - 1} (set annotation_samples higher)"
                )
            raw[k * n_bytes : k * n_bytes + len(payload)] = payload
        return np.frombuffer(bytes(raw), dtype="<i2").reshape(n_records, -1)

    def close(self) -> None:
        """Write any padded last record, fix the record count in the header, close the file."""
        if self._file is None:
            return
        leftover = [len(p) for p in self._pending]
        if any(leftover):
            if not self._pad_last_record:
                self.abort()
                raise EDFError(
                    f"{self.path}: {leftover} samples do not fill a data record of "
                    f"{self._spr.tolist()} samples; write whole records or pass pad_last_record=True"
                )
            self._pad_partial_record()
        if self._by_record:
            onsets = sorted(n.onset for notes in self._by_record.values() for n in notes)
            self.abort()
            raise EDFError(
                f"{self.path}: annotations at {onsets} s fall after the last data record "
                f"(recording lasts {self.n_records * self.header.record_duration} s)"
            )
        self._file.seek(_N_RECORDS_OFFSET)
        self._file.write(_field(str(self.n_records), 8, "number of data records"))
        self._file.close()
        self._file = None
        self.header = dataclasses.replace(self.header, n_records=self.n_records)

    def _pad_partial_record(self) -> None:
        filled = []
        for pending, signal, spr in zip(self._pending, self._signals, self._spr):
            fill = float(np.clip(0.0, signal.physical_min, signal.physical_max))
            filled.append(np.concatenate([pending, np.full(int(spr) - len(pending), fill)]))
        self._pending = filled
        self._write_records(1)

    def abort(self) -> None:
        """Close the file without finalizing it (after an error; the caller discards it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def write_edf(
    path: str | Path, header: EDFHeader, data: np.ndarray | Sequence[np.ndarray], annotations: Sequence[Annotation] = ()
) -> EDFHeader:
    """Write a whole recording at once; returns the header as written (with its record count)."""
    with EDFWriter(path, header, annotations) as writer:
        writer.write(data)
    return writer.header
