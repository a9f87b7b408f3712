"""BIDS sidecars that change how a recording is processed: ``*_channels.tsv`` (channels whose
``status`` is ``bad`` are left out and interpolated, as if not recorded) and ``*_eeg.json``
(``PowerLineFrequency``: the notch frequency, where ``--line_freq auto`` would otherwise detect it).

BIDS's inheritance principle decides which sidecars apply to a recording: a sidecar in the
recording's folder or any folder above it, up to the data set root, whose entities (``sub-01``,
``task-rest`` ...) are all among the recording's. JSON sidecars are merged from the farthest to the
nearest (nearer values win); of the TSV files, the nearest applies.

The launcher finds the sidecars (:class:`SidecarIndex`, from file names only); each worker reads
its recording's (:func:`read_sidecars`), so one malformed sidecar quarantines its recordings with
a reason that names the file and the field, and no other.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import posixpath
import re
from collections.abc import Sequence

_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
CHANNEL_STATUS = ("good", "bad", "n/a", "")
LINE_FREQUENCIES = (50, 60)


class SidecarError(ValueError):
    """A sidecar that cannot be used; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class SidecarInfo:
    bad_channels: tuple[str, ...] = ()  # the recording's channel names marked bad
    line_freq: int | None = None  # PowerLineFrequency, where given


def parse_name(path: str) -> tuple[dict[str, str], str, str] | None:
    """``(entities, suffix, extension)`` of a BIDS file name (``sub-01_task-rest_eeg.edf``:
    ``({'sub': '01', 'task': 'rest'}, 'eeg', '.edf')``); None where it is not one."""
    name = posixpath.basename(path)
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if match is None:
            return None
        entities[match.group(1)] = match.group(2)
    suffix = parts[-1]
    if not suffix.isalnum():
        return None
    return entities, suffix, dot + ext.lower()


class SidecarIndex:
    """The sidecars among ``files`` by folder, for :meth:`applicable` (a data set's files are
    indexed once; each recording then looks only in its own folder and those above it)."""

    def __init__(self, files: Sequence[str], kinds: Sequence[tuple[str, str]] = (("channels", ".tsv"),
                                                                             ("eeg", ".json"))) -> None:
        self._by_folder: dict[str, list[tuple[dict[str, str], str, str, str]]] = {}
        for path in files:
            parsed = parse_name(path)
            if parsed is not None and (parsed[1], parsed[2]) in kinds:
                self._by_folder.setdefault(posixpath.dirname(path), []).append((*parsed, path))

    def applicable(self, recording: str, suffix: str, extension: str) -> list[str]:
        """The ``*_<suffix><extension>`` sidecars that apply to ``recording``, farthest first."""
        parsed = parse_name(recording)
        if parsed is None:
            return []
        entities, folder, found = parsed[0], posixpath.dirname(recording), []
        while True:
            for their, kind, ext, path in self._by_folder.get(folder, ()):
                if kind == suffix and ext == extension and all(entities.get(k) == v for k, v in their.items()):
                    found.append((folder.count("/"), len(their), path))
            parent = posixpath.dirname(folder)
            if parent == folder or not folder:
                break
            folder = parent
        return [path for *_, path in sorted(found)]


def bad_channels(text: str, name: str) -> tuple[str, ...]:
    """The channels a ``channels.tsv`` marks ``bad`` (its ``status`` column is optional)."""
    rows = csv.DictReader(io.StringIO(text), delimiter="\t")
    columns = rows.fieldnames or []
    if "name" not in columns:
        raise SidecarError(f"{name}: no 'name' column (columns: {', '.join(columns) or 'none'}); "
                           "a BIDS channels.tsv starts with name, type, units")
    bad = []
    for line, row in enumerate(rows, start=2):
        status = (row.get("status") or "").strip().lower()
        if status not in CHANNEL_STATUS:
            raise SidecarError(f"{name}: line {line}, status: expected one of 'good', 'bad', 'n/a'; "
                               f"got {row.get('status')!r}")
        if status == "bad":
            bad.append((row.get("name") or "").strip())
    return tuple(b for b in bad if b)


def power_line_frequency(value: object, name: str) -> int | None:
    """``PowerLineFrequency`` as 50 or 60 Hz; None for ``"n/a"`` or absent."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("n/a", "")):
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is not None and math.isfinite(number) and float(number) in LINE_FREQUENCIES:
        return int(number)
    raise SidecarError(f"{name}: PowerLineFrequency: expected 50, 60 or \"n/a\"; got {value!r}")


def sidecar_info(channels: tuple[str, str] | None, eeg_json: Sequence[tuple[str, str]]) -> SidecarInfo:
    """What the sidecars say, from ``(file name, text)`` pairs: the nearest channels.tsv, and
    the eeg.json files farthest first."""
    merged: dict[str, object] = {}
    source = {}
    for name, text in eeg_json:
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as err:
            raise SidecarError(f"{name}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(fields, dict):
            raise SidecarError(f"{name}: expected a JSON object; got {type(fields).__name__}")
        merged.update(fields)
        source.update(dict.fromkeys(fields, name))
    line = power_line_frequency(merged.get("PowerLineFrequency"), source.get("PowerLineFrequency", ""))
    bad = bad_channels(channels[1], channels[0]) if channels else ()
    return SidecarInfo(bad_channels=bad, line_freq=line)


def read_sidecars(channels_tsv: str, eeg_json: Sequence[str]) -> SidecarInfo:
    """:func:`sidecar_info` of the named files (local or any Beam file system)."""
    if not channels_tsv and not eeg_json:
        return SidecarInfo()

    def read(path: str) -> tuple[str, str]:
        from apache_beam.io.filesystems import FileSystems

        try:
            with FileSystems.open(path) as fh:
                return posixpath.basename(path), fh.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SidecarError(f"{posixpath.basename(path)}: not UTF-8 text") from None

    return sidecar_info(read(channels_tsv) if channels_tsv else None, [read(p) for p in eeg_json])
