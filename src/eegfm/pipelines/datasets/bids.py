"""BIDS: ``sub-<label>[/ses-<label>]/eeg/*_eeg.<ext>``, and the sidecars that change how a recording is processed.

``participants.tsv``: age and sex; ``*_channels.tsv``: channels with ``status`` bad (interpolated);
``*_eeg.json``: ``PowerLineFrequency`` (the notch); under ``--montage file``, ``*_electrodes.tsv`` and
``*_coordsystem.json``: electrode positions. Recordings in ``sourcedata/``, ``derivatives/``, ``code/``
and ``stimuli/`` are `Ignored`. A sidecar applies (BIDS inheritance) from the recording's folder or one
above whose entities are all the recording's: JSON merged farthest to nearest, the nearest TSV. The
launcher finds them by name (:class:`SidecarIndex`); each worker reads its own (:func:`read_sidecars`),
so a malformed sidecar quarantines only its recordings, naming the file and the field.
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

import numpy as np

from eegfm.contract.channels import Digitized, sphere_fit
from eegfm.pipelines.datasets.adapters import Group, companion_files, register, sidecar, split_recordings
from eegfm.pipelines.datasets.items import Ignored, SourceItem
from eegfm.pipelines.datasets.tables import age_cell, csv_rows, read_text
from eegfm.pipelines.privacy.deid import normalize_sex

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
    stem, dot, ext = posixpath.basename(path).partition(".")
    *pairs, suffix = stem.split("_")
    matches = [_ENTITY.match(part) for part in pairs]
    if not suffix.isalnum() or not all(matches):
        return None
    return {m.group(1): m.group(2) for m in matches}, suffix, dot + ext.lower()


class SidecarIndex:
    """The sidecars among ``files`` by folder, for :meth:`applicable`."""

    def __init__(
        self, files: Sequence[str], kinds: Sequence[tuple[str, str]] = (("channels", ".tsv"), ("eeg", ".json"))
    ) -> None:
        self._by_folder: dict[str, list[tuple[dict[str, str], str, str, str]]] = {}
        for path in files:
            parsed = parse_name(path)
            if parsed is not None and (parsed[1], parsed[2]) in kinds:
                self._by_folder.setdefault(posixpath.dirname(path), []).append((*parsed, path))

    def applicable(self, recording: str, suffix: str, extension: str) -> list[str]:
        """The ``*_<suffix><extension>`` sidecars that apply to ``recording``, farthest first (a
        ``space-`` entity names a coordinate system, not something of the recording)."""
        parsed = parse_name(recording)
        if parsed is None:
            return []
        entities, folder, found = parsed[0], posixpath.dirname(recording), []
        while True:
            found += [
                (folder.count("/"), len(their), path)
                for their, kind, ext, path in self._by_folder.get(folder, ())
                if (kind, ext) == (suffix, extension)
                and all(entities.get(k) == v for k, v in their.items() if k != "space")
            ]
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
        raise SidecarError(
            f"{name}: no 'name' column (columns: {', '.join(columns) or 'none'}); "
            "a BIDS channels.tsv starts with name, type, units"
        )
    bad = []
    for line, row in enumerate(rows, start=2):
        status = (row.get("status") or "").strip().lower()
        if status not in CHANNEL_STATUS:
            raise SidecarError(
                f"{name}: line {line}, status: expected one of 'good', 'bad', 'n/a'; got {row.get('status')!r}"
            )
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
    raise SidecarError(f'{name}: PowerLineFrequency: expected 50, 60 or "n/a"; got {value!r}')


def sidecar_info(channels: tuple[str, str] | None, eeg_json: Sequence[tuple[str, str]]) -> SidecarInfo:
    """What the sidecars say, from ``(file name, text)`` pairs: the nearest channels.tsv, and the
    eeg.json files farthest first."""
    merged: dict[str, object] = {}
    source: dict[str, str] = {}
    for name, text in eeg_json:
        fields = _json_object(name, text)
        merged.update(fields)
        source.update(dict.fromkeys(fields, name))
    line = power_line_frequency(merged.get("PowerLineFrequency"), source.get("PowerLineFrequency", ""))
    bad = bad_channels(channels[1], channels[0]) if channels else ()
    return SidecarInfo(bad_channels=bad, line_freq=line)


def _json_object(name: str, text: str) -> dict:
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise SidecarError(f"{name}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(fields, dict):
        raise SidecarError(f"{name}: expected a JSON object; got {type(fields).__name__}")
    return fields


def read_sidecars(channels_tsv: str, eeg_json: Sequence[str]) -> SidecarInfo:
    """:func:`sidecar_info` of the named files (local or any Beam file system)."""
    if not channels_tsv and not eeg_json:
        return SidecarInfo()
    return sidecar_info(_read(channels_tsv) if channels_tsv else None, [_read(p) for p in eeg_json])


# BIDS coordinate systems the nasion and ears define (origin between the ears), whose positions can
# be placed on the head without those points: their axes toward the nasion and toward the left ear.
_FIDUCIAL_FRAMES = {
    **dict.fromkeys(("captrak", "elektaneuromag", "chietiitab"), ((0, 1, 0), (-1, 0, 0))),
    **dict.fromkeys(("eeglab", "eeglab-hj", "ctf", "4dbti", "kityokogawa"), ((1, 0, 0), (0, 1, 0))),
}
# How far the nasion and the ears lie from such a frame's origin, over the radius of the sphere the
# electrodes lie on: 0.91-1.17 and 0.77-0.91 on MNE's heads (standard_1005, EGI's, MGH's, EasyCap's).
_NASION_OVER_RADIUS, _EAR_OVER_RADIUS = 1.07, 0.84
_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
_LANDMARKS = {"nas": "nasion", "nasion": "nasion", "lpa": "lpa", "rpa": "rpa"}


def _metres(unit: object, xyz: np.ndarray, name: str, field: str) -> float:
    """Metres per unit of a coordsystem's units field; from the positions' size for 'n/a'."""
    text = str(unit or "n/a").strip().lower()
    if text in _UNITS:
        return _UNITS[text]
    if text != "n/a":
        raise SidecarError(f"{name}: {field}: expected one of 'm', 'cm', 'mm', 'n/a'; got {unit!r}")
    radius = float(np.median(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1))) if len(xyz) else 0.0
    return 1.0 if radius < 0.3 else 0.01 if radius < 30 else 0.001


def electrode_positions(
    electrodes: tuple[str, str], coordsystem: tuple[str, str] | None
) -> tuple[Digitized | None, str]:
    """The electrodes an ``electrodes.tsv`` places (``(file name, text)``, with its coordsystem.json), in
    metres, with the nasion and ears from NAS/LPA/RPA rows, AnatomicalLandmarkCoordinates or a frame's
    axes (`_FIDUCIAL_FRAMES`); ``(None, why)`` where nothing places them on the head. SidecarError: malformed."""
    name = electrodes[0]
    points = _electrode_rows(*electrodes)
    fields = _json_object(*coordsystem) if coordsystem is not None else {}
    cname = coordsystem[0] if coordsystem else name
    landmarks = {_LANDMARKS[k.lower()]: points.pop(k) for k in list(points) if k.lower() in _LANDMARKS}
    xyz = np.array(list(points.values())).reshape(-1, 3)
    scale = _metres(fields.get("EEGCoordinateUnits"), xyz, cname, "EEGCoordinateUnits")
    positions = {label: tuple(v * scale for v in p) for label, p in points.items() if label}
    landmarks = {k: tuple(v * scale for v in p) for k, p in landmarks.items()}
    system = str(fields.get("EEGCoordinateSystem") or "n/a")
    if len(landmarks) < 3:
        landmarks = _given_landmarks(fields, system, cname) or landmarks
    if not positions:
        return None, f"{name}: no electrode with coordinates"
    if len(landmarks) == 3:
        return Digitized(positions, landmarks["nasion"], landmarks["lpa"], landmarks["rpa"]), ""
    axes = _FIDUCIAL_FRAMES.get(system.lower())
    if axes is None:
        return None, (
            f"{name}: positions in the {system!r} coordinate system ({cname}), with no nasion and ears "
            "(NAS, LPA and RPA rows, or AnatomicalLandmarkCoordinates) to place them on the head by"
        )
    placed = np.array(list(positions.values()))
    radius = float(np.linalg.norm(placed - sphere_fit(placed)[0], axis=1).mean())
    nose, left = (np.asarray(a, dtype=np.float64) for a in axes)
    ear = left * _EAR_OVER_RADIUS * radius
    return Digitized(positions, tuple(nose * _NASION_OVER_RADIUS * radius), tuple(ear), tuple(-ear)), ""


def _electrode_rows(name: str, text: str) -> dict[str, tuple[float, float, float]]:
    """name -> (x, y, z) of an electrodes.tsv's measured rows ('n/a': an electrode nobody measured)."""
    rows = csv.DictReader(io.StringIO(text), delimiter="\t")
    columns = rows.fieldnames or []
    if not {"name", "x", "y", "z"} <= set(columns):
        raise SidecarError(
            f"{name}: columns: expected name, x, y, z (then optional ones); got {', '.join(columns) or 'none'}"
        )
    points: dict[str, tuple[float, float, float]] = {}
    for line, row in enumerate(rows, start=2):
        cells = [(row.get(axis) or "").strip() for axis in "xyz"]
        if any(cell.lower() in ("n/a", "") for cell in cells):
            continue
        xyz = []
        for axis, cell in zip("xyz", cells):
            try:
                xyz.append(float(cell))
            except ValueError:
                raise SidecarError(
                    f"{name}: line {line}, {axis}: expected a number or 'n/a'; got {row.get(axis)!r}"
                ) from None
        if not all(math.isfinite(v) for v in xyz):
            raise SidecarError(f"{name}: line {line}: expected finite coordinates; got {cells}")
        points[(row.get("name") or "").strip()] = tuple(xyz)
    return points


def _given_landmarks(fields: dict, system: str, name: str) -> dict[str, tuple[float, ...]]:
    """AnatomicalLandmarkCoordinates NAS, LPA and RPA in metres, if in the electrodes' coordinate system; else {}."""
    given = fields.get("AnatomicalLandmarkCoordinates")
    theirs = str(fields.get("AnatomicalLandmarkCoordinateSystem") or system)
    if not isinstance(given, dict) or theirs.lower() != system.lower():
        return {}
    found = {_LANDMARKS[k.lower()]: v for k, v in given.items() if k.lower() in _LANDMARKS}
    if len(found) != 3:
        return {}
    try:
        xyz = {k: np.asarray(v, dtype=np.float64).reshape(3) for k, v in found.items()}
    except (TypeError, ValueError):
        raise SidecarError(
            f"{name}: AnatomicalLandmarkCoordinates: expected [x, y, z] for NAS, LPA and RPA; got {given!r}"
        ) from None
    units = fields.get("AnatomicalLandmarkCoordinateUnits", fields.get("EEGCoordinateUnits"))
    unit = _metres(units, np.stack(list(xyz.values())), name, "AnatomicalLandmarkCoordinateUnits")
    return {k: tuple(float(c) * unit for c in v) for k, v in xyz.items()}


def read_electrodes(electrodes_tsv: str, coordsystem_json: str) -> tuple[Digitized | None, str]:
    """:func:`electrode_positions` of the named files (local or any Beam file system)."""
    return electrode_positions(_read(electrodes_tsv), _read(coordsystem_json) if coordsystem_json else None)


def _read(path: str) -> tuple[str, str]:
    try:
        return posixpath.basename(path), read_text(path)
    except UnicodeDecodeError:
        raise SidecarError(f"{posixpath.basename(path)}: not UTF-8 text") from None


_SIDECAR_SUFFIXES = ("_channels.tsv", "_eeg.json", "_electrodes.tsv", "_coordsystem.json")
_ENTITIES = re.compile(r"(sub|ses|task|run)-([A-Za-z0-9]+)")
# Folders of a BIDS data set that hold no raw recordings of it (read, a recording would be written twice).
_NOT_RAW = {
    "sourcedata": "the files the data set's recordings were converted from",
    "derivatives": "processed versions of the data set's recordings",
    "code": "the data set's code",
    "stimuli": "the data set's stimuli",
}


def _detect(files: list[str]) -> bool:
    return bool({"dataset_description.json", "participants.tsv"} & {posixpath.basename(f) for f in files})


@companion_files
def _bids_sidecars(path: str, _listed: set[str]) -> str | None:
    name = posixpath.basename(path)
    known = name in ("participants.tsv", "dataset_description.json") or name.endswith(_SIDECAR_SUFFIXES)
    return sidecar(path) if known else None


def _not_raw(path: str, roots: list[str], described: list[str]) -> str | None:
    """Why ``path`` is not a raw recording of its BIDS data set (in its sourcedata/ ... folder), or None.
    The data set's folder: the outermost holding a dataset_description.json, else the input folder."""
    root = next((d for d in sorted(described, key=len) if path.startswith(d + "/")), None) or next(
        (r.rstrip("/") for r in sorted(roots, key=len, reverse=True) if path.startswith(r.rstrip("/") + "/")), None
    )
    if root is None:
        return None
    top = path[len(root) + 1 :].split("/", 1)[0]
    if top not in _NOT_RAW or top == path[len(root) + 1 :]:
        return None
    return (
        f"in the BIDS folder {top}/, {_NOT_RAW[top]}, not one of its raw recordings; give "
        f"{posixpath.join(root, top)} as --input to process it on its own"
    )


def _sidecar_fields(path: str, sidecars: SidecarIndex) -> dict:
    """The SourceItem fields naming the sidecars that apply to the recording ``path``."""
    channels = sidecars.applicable(path, "channels", ".tsv")
    electrodes = sidecars.applicable(path, "electrodes", ".tsv")
    electrodes_tsv = electrodes[-1] if electrodes else ""
    # the coordsystem.json beside it, of the same space; else the nearest that applies
    coordsystems = sidecars.applicable(path, "coordsystem", ".json")
    twin = electrodes_tsv[: -len("_electrodes.tsv")] + "_coordsystem.json"
    coordsystem = twin if twin in coordsystems else (coordsystems[-1] if coordsystems else "")
    return dict(
        channels_tsv=channels[-1] if channels else "",
        electrodes_tsv=electrodes_tsv,
        eeg_json=tuple(sidecars.applicable(path, "eeg", ".json")),
        coordsystem_json=coordsystem if electrodes_tsv else "",
    )


@register("bids", detect=_detect)
def list_bids(group: Group):
    recordings, ignored = split_recordings(group.files)
    described = [posixpath.dirname(f) for f in group.files if posixpath.basename(f) == "dataset_description.json"]
    not_raw = {f: why for f in recordings if (why := _not_raw(f, group.roots, described))}
    ignored += [Ignored(f, why) for f, why in not_raw.items()]
    participants = {
        row.get("participant_id", "").strip(): row
        for f in group.files
        if posixpath.basename(f) == "participants.tsv"
        for _, row in csv_rows(f, delimiter="\t")
    }
    sidecars = SidecarIndex(
        group.files, kinds=(("channels", ".tsv"), ("eeg", ".json"), ("electrodes", ".tsv"), ("coordsystem", ".json"))
    )
    items = []
    for path in [f for f in recordings if f not in not_raw]:
        entities = dict(_ENTITIES.findall(posixpath.basename(path)))
        sub = entities.get("sub", "")
        # participant_id is "sub-<label>"; some data sets leave out the prefix.
        row = participants.get(f"sub-{sub}") or participants.get(sub) or {}
        items.append(
            SourceItem(
                path=path,
                dataset="bids",
                site=group.site or posixpath.basename(path.split("/sub-", 1)[0]) or "bids",
                subject_key=sub or path,
                session_key=entities.get("ses", ""),
                task=entities.get("task", ""),
                age=age_cell(row.get("age")),
                sex=normalize_sex(row.get("sex")),
                **_sidecar_fields(path, sidecars),
            )
        )
    return items, ignored
