"""A reviewer's marks on a recording (``/v1/marks/{recording_id}``): checked, stored on this server
only, as a BIDS ``events.tsv`` with its ``events.json`` sidecar, one folder per recording_id under
``--marks_dir``.

A mark's text is typed by a clinician and may name the patient: it is never logged, and the files
are readable by the server's user only. The whole list is replaced on each write, atomically (a
file written beside the old one, then renamed over it), so a reader sees the old list or the new
one, never half of one. Columns: ``onset``, ``duration`` (seconds into the recording),
``trial_type`` (the mark's text), ``channel`` (the derivation or electrode it is on, ``n/a`` for
the whole recording), and ``mark_id`` (the server's id of the mark, kept across writes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

MARKS_DIR = "./eegfm-marks"  # eegfm-serve's --marks_dir default: beside where it runs
RECORDING_ID = re.compile(r"[0-9a-f]{32}")
MAX_MARKS = 5000
MAX_TEXT = 200
MAX_CHANNEL = 20
MAX_START_S = 31 * 86400.0  # as /v1/traces: a month of EEG
COLUMNS = ("onset", "duration", "trial_type", "channel", "mark_id")
NA = "n/a"  # BIDS's word for no value
_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
# A derivation or electrode as the page names one ('Fp1-F7', 'Cz-avg', 'EOG 1'): no '/', so never n/a
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .+-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # tabs and line breaks would split the TSV's rows and columns
SIDECAR = {
    "onset": {"Description": "where the reviewer's mark starts, seconds from the recording's start", "Units": "s"},
    "duration": {"Description": "how long the mark lasts (0: a point in time)", "Units": "s"},
    "trial_type": {"Description": "the reviewer's mark as typed on eegfm-serve's review page"},
    "channel": {"Description": "the derivation or electrode the mark is on; n/a: the whole recording"},
    "mark_id": {"Description": "eegfm-serve's id of the mark, kept when the list is edited"},
}


class MarksError(ValueError):
    """A request's marks or recording_id are not what the API takes; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Mark:
    id: str
    onset_s: float
    duration_s: float
    text: str
    channel: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_recording_id(recording_id: str) -> str:
    if not RECORDING_ID.fullmatch(recording_id):
        raise MarksError(
            "path parameter recording_id: expected 32 lower-case hex digits (the recording_id /v1/traces "
            f"gives: the upload's sha256, its first 32 digits); got {len(recording_id)} characters"
        )
    return recording_id


def parse_marks(body: Any) -> list[Mark]:
    """``{"marks": [...]}`` as checked marks, sorted by onset; an id is given to those without one.
    MarksError names the first bad field as ``marks[i].field``."""
    if not isinstance(body, dict) or set(body) != {"marks"} or not isinstance(body["marks"], list):
        raise MarksError('body: expected a JSON object {"marks": [...]}, the whole list of marks')
    entries = body["marks"]
    if len(entries) > MAX_MARKS:
        raise MarksError(f"marks: expected at most {MAX_MARKS} marks; got {len(entries)}")
    marks = [_mark(i, entry) for i, entry in enumerate(entries)]
    taken: set[str] = set()
    for i, mark in enumerate(marks):
        if mark.id and mark.id in taken:
            raise MarksError(f"marks[{i}].id: expected an id no other mark has; got one an earlier mark has")
        taken.add(mark.id)
    marks = [m if m.id else dataclasses.replace(m, id=_new_id(taken)) for m in marks]
    return sorted(marks, key=lambda m: (m.onset_s, m.duration_s))


def _new_id(taken: set[str]) -> str:
    while (new := f"m{secrets.token_hex(6)}") in taken:
        pass
    taken.add(new)
    return new


def _mark(i: int, entry: Any) -> Mark:
    where = f"marks[{i}]"
    if not isinstance(entry, dict):
        raise MarksError(f"{where}: expected an object with onset_s, duration_s, text and channel")
    allowed = ("id", "onset_s", "duration_s", "text", "channel")
    if unknown := sorted(set(entry) - set(allowed)):
        raise MarksError(f"{where}.{str(unknown[0])[:20]}: unexpected; expected only {', '.join(allowed)}")
    onset = _seconds(f"{where}.onset_s", entry.get("onset_s"))
    duration = _seconds(f"{where}.duration_s", entry.get("duration_s", 0.0))
    text = entry.get("text")
    if not (isinstance(text, str) and 1 <= len(text.strip()) and len(text) <= MAX_TEXT) or _CONTROL.search(text):
        raise MarksError(
            f"{where}.text: expected 1 to {MAX_TEXT} characters, without tabs, line breaks or control characters"
        )
    channel = entry.get("channel")
    if channel is not None and not (
        isinstance(channel, str) and len(channel) <= MAX_CHANNEL and _CHANNEL.fullmatch(channel)
    ):
        raise MarksError(
            f"{where}.channel: expected null (the whole recording) or a derivation or electrode name of "
            f"at most {MAX_CHANNEL} letters, digits, spaces, '.', '+' or '-' (e.g. Fp1-F7)"
        )
    mark_id = entry.get("id")
    if mark_id is not None and not (isinstance(mark_id, str) and _ID.fullmatch(mark_id)):
        raise MarksError(f"{where}.id: expected null (a new mark) or 1 to 40 letters, digits, '_' or '-'")
    return Mark(mark_id or "", onset, duration, text.strip(), channel)


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MarksError(f"{where}: expected a finite number of seconds; got {type(value).__name__}")
    if not 0 <= value <= MAX_START_S:
        raise MarksError(f"{where}: expected seconds from 0 to {MAX_START_S:g}; got {value:g}")
    return float(value)


def events_tsv(marks: list[Mark]) -> str:
    """The marks as a BIDS events.tsv (header row, then one row per mark)."""
    rows = ["\t".join(COLUMNS)]
    rows += [
        "\t".join((repr(m.onset_s), repr(m.duration_s), m.text, m.channel if m.channel is not None else NA, m.id))
        for m in marks
    ]
    return "\n".join(rows) + "\n"


def read_events_tsv(text: str) -> list[Mark]:
    """The marks :func:`events_tsv` wrote (split on tabs: the text holds none, and quotes stay text)."""
    lines = text.rstrip("\n").split("\n")
    if tuple(lines[0].split("\t")) != COLUMNS:
        raise ValueError(f"events.tsv: expected the columns {', '.join(COLUMNS)}")
    marks = []
    for line in lines[1:]:
        onset, duration, text, channel, mark_id = line.split("\t")
        marks.append(Mark(mark_id, float(onset), float(duration), text, None if channel == NA else channel))
    return marks


class MarkStore:
    """The marks under ``root`` (created, readable by this user only, on the first write)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()  # one writer at a time: a PUT replaces the whole list

    def folder(self, recording_id: str) -> Path:
        return self.root / check_recording_id(recording_id)

    def read(self, recording_id: str) -> list[Mark]:
        path = self.folder(recording_id) / "events.tsv"
        try:
            return read_events_tsv(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def tsv(self, recording_id: str) -> str:
        return events_tsv(self.read(recording_id))

    def write(self, recording_id: str, marks: list[Mark]) -> list[Mark]:
        folder = self.folder(recording_id)
        with self._lock:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            _atomic_write(folder / "events.json", json.dumps(SIDECAR, indent=2) + "\n")
            _atomic_write(folder / "events.tsv", events_tsv(marks))
        return marks


def _atomic_write(path: Path, text: str) -> None:
    """``text`` into ``path`` by a file beside it renamed over it: never half written."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
