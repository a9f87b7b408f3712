"""The canonical 10-20 channel table, its aliases and electrode positions.

The 19 channels of the HMS set in HMS order, with the old 10-20 names (T3/T4/T5/T6) canonical and
the 10-10 names (T7/T8/P7/P8) as aliases (MNE's alias table maps T5 to T9, wrong here). Positions
are on an idealized unit sphere (x right, y front, z up) computed from the 10-10 layout rules, so
no montage file is needed.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
from functools import cache, lru_cache

import numpy as np

CANONICAL_CHANNELS: tuple[str, ...] = tuple("Fp1 F3 C3 P3 F7 T3 T5 O1 Fz Cz Pz Fp2 F4 C4 P4 F8 T4 T6 O2".split())
N_CANONICAL = len(CANONICAL_CHANNELS)

# 10-10 name -> canonical 10-20 name (T7/T8/P7/P8 were renamed in the 10-10 system).
TEN_TEN_TO_CANONICAL: dict[str, str] = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
CANONICAL_TO_TEN_TEN: dict[str, str] = {v: k for k, v in TEN_TEN_TO_CANONICAL.items()}

LEFT_CHANNELS = tuple(c for c in CANONICAL_CHANNELS if c[-1] in "1357")
RIGHT_CHANNELS = tuple(c for c in CANONICAL_CHANNELS if c[-1] in "2468")
MIDLINE_CHANNELS = tuple(c for c in CANONICAL_CHANNELS if c.endswith("z"))

# Non-EEG channel kinds recognised by name; the value is the kind reported to later stages.
_AUX_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^(ECG|EKG)", "ecg"),
    (r"^(EOG|LOC|ROC|VEOG|HEOG)", "eog"),
    (r"^(EMG|CHIN)", "emg"),
    (r"^(PHOTIC|PHO|STIM|TRIG|STATUS|EVENT)", "stim"),
    (r"^(RESP|SPO2|SAO2|PULSE|PLETH|DC\d*|BURSTS|SUPPR|IBI)", "misc"),
)

# Prefixes and suffixes clinical systems wrap around electrode names.
_PREFIX = re.compile(r"^(EEG|EOG|ECG|EKG|EMG|POL)[\s_:-]+", re.IGNORECASE)
# The reference after a dash or underscore, or in brackets: a reference word, average, an ear or
# mastoid, BioSemi's CMS, or linked ears/mastoids however written (A1A2, (A1+A2)/2, M1M2 ...).
_REF_SUFFIX = re.compile(
    r"([\s_]*-[\s_]*(AR|AV|A1|A2|M1|M2|CZ|CMS|LM|RM|A12|M12|MASTOIDS?|(\(?[AM][12][+/]?[AM][12]\)?(/2)?))"
    r"|[\s_]*[-_][\s_]*(REF|LE|AVG|AVE|CAR|AVERAGE|LINKED|LINKED[\s_]?EARS|COMMON)"
    r"|\s*[(\[]\s*(REF|AVG|AVE|AV|CAR|CZ|A1|A2|M1|M2|A1A2|M1M2)\s*[)\]])$",
    re.IGNORECASE,
)

# 10-10 electrode rows between the Fp and O rings: (row prefix, polar angle of the midline
# electrode from the vertex, positive toward the nose, azimuth where the row meets the equator on
# the right, 0 = right ear, 90 = nose). The equator is the ring through Fpz-T7-Oz-T8; a row's
# columns 1..8 run from the midline to it in four equal steps (odd numbers left), 9/10 one step below.
_ROWS: tuple[tuple[str, float, float], ...] = (
    ("AF", 67.5, 54.0),
    ("F", 45.0, 36.0),
    ("FC", 22.5, 18.0),
    ("C", 0.0, 0.0),
    ("CP", -22.5, -18.0),
    ("P", -45.0, -36.0),
    ("PO", -67.5, -54.0),
)
# Ring electrodes with names of their own in the 10-10 system.
_RING_NAMES = {"FC": "FT", "C": "T", "CP": "TP"}


def _unit(polar_deg: float, azimuth_deg: float) -> np.ndarray:
    theta, phi = np.deg2rad(polar_deg), np.deg2rad(azimuth_deg)
    return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    omega = np.arccos(np.clip(a @ b, -1.0, 1.0))
    if omega < 1e-9:
        return a.copy()
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


@lru_cache(maxsize=1)
def _ten_ten_positions() -> dict[str, np.ndarray]:
    positions: dict[str, np.ndarray] = {}
    for row, polar, right_az in _ROWS:
        mid = _unit(abs(polar), 90.0 if polar >= 0 else -90.0)
        positions[f"{row}z"] = mid
        for col in range(1, 11):
            azimuth = 180.0 - right_az if col % 2 == 1 else right_az  # odd numbers left
            name = f"{_RING_NAMES.get(row, row) if col >= 7 else row}{col}"
            step = ((col + 1) // 2) / 4.0
            positions[name] = _unit(112.5, azimuth) if col >= 9 else _slerp(mid, _unit(90.0, azimuth), step)
    # The Fp and O rows lie on the ring itself.
    positions.update(
        {
            "Fpz": _unit(90.0, 90.0),
            "Fp1": _unit(90.0, 108.0),
            "Fp2": _unit(90.0, 72.0),
            "Oz": _unit(90.0, -90.0),
            "O1": _unit(90.0, -108.0),
            "O2": _unit(90.0, -72.0),
            "Nz": _unit(112.5, 90.0),
            "Iz": _unit(112.5, -90.0),
            "A1": _unit(120.0, 180.0),
            "A2": _unit(120.0, 0.0),
            "M1": _unit(125.0, 200.0),
            "M2": _unit(125.0, -20.0),
        }
    )
    return positions


@lru_cache(maxsize=1)
def _upper_names() -> dict[str, str]:
    """Upper-case electrode name -> its 10-10 spelling; the 10-20 temporal names (T3 ...) are valid
    electrode names too, of their 10-10 positions."""
    return {
        **{name.upper(): name for name in _ten_ten_positions()},
        **{k.upper(): v for k, v in CANONICAL_TO_TEN_TEN.items()},
    }


def clean_channel_name(raw: str) -> str:
    """Strip system prefixes/reference suffixes: 'EEG FP1-REF' -> 'FP1', 'Fp1.' -> 'Fp1'."""
    name = _REF_SUFFIX.sub("", _PREFIX.sub("", raw.strip().strip(".").strip()))
    return name.strip().strip(".").strip()


def standard_name(raw: str) -> str | None:
    """The 10-10 spelling of an electrode name ('EEG FP1-REF' -> 'Fp1', 'T7.' -> 'T7'), or None."""
    return _upper_names().get(clean_channel_name(raw).replace(" ", "").upper())


_EAR_REFERENCES = frozenset({"A1", "A2", "M1", "M2"})


def derivation(raw: str) -> tuple[str, str] | None:
    """The two 10-10 electrodes of a channel named as one minus another, 'EEG FP1-F7' ->
    ('Fp1', 'F7'), else None; an ear, mastoid or reference word as the second is a referential
    channel. 'T8-P8-1' (a duplicate numbered as MNE does) is still the pair."""
    name = _PREFIX.sub("", raw.strip().strip(".").strip())
    parts = re.split(r"\s*-\s*", name)
    if len(parts) == 3 and parts[2].isdigit():
        parts = parts[:2]
    if len(parts) != 2:
        return None
    first, second = standard_name(parts[0]), standard_name(parts[1])
    if first is None or second is None or second in _EAR_REFERENCES:
        return None
    return first, second


def canonical_name(raw: str) -> str | None:
    """The canonical 10-20 name of a recorded channel, or None if it is not one of the 19.

    >>> canonical_name("EEG T7-REF"), canonical_name("Fp1."), canonical_name("EEG Fp1-Ref")
    ('T3', 'Fp1', 'Fp1')
    """
    name = standard_name(raw)
    return None if name is None else canonical_of(name)


def canonical_of(standard: str) -> str | None:
    """The canonical 10-20 name of a 10-10 electrode ('T7' -> 'T3'), or None if not one of the 19."""
    name = TEN_TEN_TO_CANONICAL.get(standard, standard)
    return name if name in CANONICAL_CHANNELS else None


def auxiliary_kind(raw: str) -> str | None:
    """'ecg', 'eog', 'emg', 'stim' or 'misc' for a recognised non-EEG channel, else None."""
    name = re.sub(r"^(POL|EEG)[\s_:-]+", "", raw.strip().upper())
    return next((kind for pattern, kind in _AUX_PATTERNS if re.match(pattern, name)), None)


# BioSemi's ABC caps by their last letter (A1..B32 is the 64-electrode cap).
BIOSEMI_CAPS = {"A": "biosemi32", "B": "biosemi64", "D": "biosemi128", "E": "biosemi160", "H": "biosemi256"}
# The 32 and 64 caps carry 10-10 electrodes: A1, A2 ... (then B1 ...) in MNE's layout order.
_ABC_NAMED_BY_LAYOUT = {"biosemi32": "A", "biosemi64": "AB"}
# Caps whose labels name no 10-20 site, by MNE's built-in layout names: BioSemi's ABC caps
# (recognised by their labels) and those a run names with --montage (EasyCap, EGI, MGH).
CAP_LAYOUTS: tuple[str, ...] = (
    *BIOSEMI_CAPS.values(),
    *"easycap-M10 easycap-M43 EGI_256 GSN-HydroCel-32 GSN-HydroCel-64_1.0 GSN-HydroCel-65_1.0 GSN-HydroCel-128 "
    "GSN-HydroCel-129 GSN-HydroCel-256 GSN-HydroCel-257 mgh60 mgh70".split(),
)


def cap_label(raw: str) -> str:
    """A channel name as a cap's layout spells it: 'EEG 001' is mgh60's 'EEG001'."""
    return raw.replace(" ", "").strip()


def cap_positions(cap: str) -> dict[str, np.ndarray]:
    """Unit-sphere positions of a cap's electrodes by label, e.g. ``cap_positions('biosemi128')['A1']``,
    or of a recording's own digitized electrodes (``file_cap``)."""
    if cap.startswith("file-"):
        if cap not in _FILE_CAPS:
            raise KeyError(f"cap: {cap!r}: no recording's positions registered under that name in this process")
        return _FILE_CAPS[cap]
    if cap not in CAP_LAYOUTS:
        raise KeyError(f"cap: expected one of {', '.join(CAP_LAYOUTS)}; got {cap!r}")
    return _layout_positions(cap)


@cache
def _layout_positions(cap: str) -> dict[str, np.ndarray]:
    import mne  # heavy: loaded only when a cap layout is needed

    positions = mne.channels.make_standard_montage(cap).get_positions()["ch_pos"]
    xyz = np.array(list(positions.values()), dtype=np.float64)
    centre, _ = sphere_fit(xyz)
    labels = list(abc_ten_ten_names(cap)) or [cap_label(label) for label in positions]
    return {label: _direction(p - centre) for label, p in zip(labels, xyz)}


@cache
def abc_ten_ten_names(cap: str) -> dict[str, str]:
    """The 10-10 electrode each ABC label of BioSemi's 32 or 64 cap stands for ('A5': 'F3' on the
    64); {} for any other cap."""
    if cap not in _ABC_NAMED_BY_LAYOUT:
        return {}
    import mne  # heavy: loaded only when a cap layout is needed

    names = mne.channels.make_standard_montage(cap).ch_names
    labels = [f"{letter}{k}" for letter in _ABC_NAMED_BY_LAYOUT[cap] for k in range(1, 33)]
    if len(names) != len(labels):
        raise RuntimeError(f"{cap}: MNE's layout has {len(names)} electrodes; BioSemi's cap has {len(labels)}")
    return dict(zip(labels, names))


def sphere_fit(xyz: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre of the sphere that fits electrode positions best, and their spread (std of radii
    over the radius). Measured caps sit 1-2 cm off the origin, so directions are taken from it."""
    # |p - c|^2 = r^2  <=>  2 p.c + (r^2 - |c|^2) = |p|^2: linear least squares in (c, r^2 - |c|^2)
    fit = np.linalg.lstsq(np.c_[2 * xyz, np.ones(len(xyz))], (xyz**2).sum(axis=1), rcond=None)[0]
    radii = np.linalg.norm(xyz - fit[:3], axis=1)
    return fit[:3], float(radii.std() / radii.mean())


def _direction(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# The recordings' own caps, the latest few: each is needed only while its channels are planned.
_FILE_CAPS: collections.OrderedDict[str, dict[str, np.ndarray]] = collections.OrderedDict()
_FILE_CAPS_KEPT = 64
# Digitized positions farther than this (std of radii over radius) from a sphere are not a scalp.
_MAX_SPHERE_SPREAD = 0.2


@dataclasses.dataclass(frozen=True)
class Digitized:
    """Electrode positions a recording holds (x toward the right ear, y toward the nose; metres),
    in a head frame with the nasion and ears that define it, or without them on the 10-20 sphere
    itself (a BrainVision header's [Coordinates])."""

    positions: dict[str, tuple[float, float, float]]
    nasion: tuple[float, float, float] | None = None
    lpa: tuple[float, float, float] | None = None
    rpa: tuple[float, float, float] | None = None


# The nasion and the ears lie 18 degrees (10 % of the nasion-inion arc) below the Fpz-T7-Oz-T8 ring.
_FIDUCIAL_POLAR_DEG = 108.0
# A real head's nasion and ears, turned onto those points, land within a few degrees of them.
_MAX_FIDUCIAL_MISFIT_DEG = 20.0


def file_cap(digitized: Digitized) -> str:
    """A recording's own electrode positions as a cap of this process, turned so that its nasion
    and ears sit where the 10-20 system puts them, named by their digest (so interpolation matrices
    are cached once); '' where they lie on no plausible head."""
    labels = sorted(digitized.positions)
    xyz = np.array([digitized.positions[label] for label in labels], dtype=np.float64)
    if len(labels) < 4:
        return ""
    centre, spread = sphere_fit(xyz)
    radius = float(np.linalg.norm(xyz - centre, axis=1).mean())
    if not (spread <= _MAX_SPHERE_SPREAD and 0.03 < radius < 0.2 and np.isfinite(centre).all()):
        return ""
    directions = _direction(xyz - centre)
    if digitized.nasion is None:  # angles on the 10-20 sphere already
        return _register(xyz, labels, directions)
    measured = _direction(np.array([digitized.nasion, digitized.lpa, digitized.rpa], dtype=np.float64) - centre)
    ideal = np.array([_unit(_FIDUCIAL_POLAR_DEG, azimuth) for azimuth in (90.0, 180.0, 0.0)])  # nasion, ears
    # Kabsch: the rotation taking the measured fiducial directions closest to the ideal ones
    u, _, vt = np.linalg.svd(measured.T @ ideal)
    flip = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, flip]) @ u.T
    misfit = np.degrees(np.arccos(np.clip(np.sum((measured @ rotation.T) * ideal, axis=1), -1.0, 1.0)))
    if misfit.max() > _MAX_FIDUCIAL_MISFIT_DEG:
        return ""  # no turn puts them near the nasion and ears: a mirrored or mislabelled head
    return _register(np.r_[xyz, measured], labels, directions @ rotation.T)


def _register(digest_of: np.ndarray, labels: list[str], directions: np.ndarray) -> str:
    name = "file-" + hashlib.sha256(np.round(digest_of, 6).tobytes() + "\0".join(labels).encode()).hexdigest()[:12]
    _FILE_CAPS[name] = {cap_label(label): d for label, d in zip(labels, directions)}
    _FILE_CAPS.move_to_end(name)
    while len(_FILE_CAPS) > _FILE_CAPS_KEPT:
        _FILE_CAPS.popitem(last=False)
    return name


def electrode_position(name: str) -> np.ndarray:
    """Unit-sphere position (x right, y front, z up) of a 10-10 electrode or canonical name, or
    of a cap's electrode written ``<cap>:<label>`` (``biosemi128:C29``)."""
    cap, sep, label = name.partition(":")
    if sep:
        positions = cap_positions(cap)
        if label not in positions:
            raise KeyError(f"electrode {name!r}: no electrode {label!r} on cap {cap!r}")
        return positions[label].copy()
    std = standard_name(name)
    if std is None:
        raise KeyError(f"electrode {name!r}: not a 10-20/10-10 electrode name")
    return _ten_ten_positions()[std].copy()


def canonical_positions() -> np.ndarray:
    """Positions of the 19 canonical channels, shape (19, 3), in canonical order."""
    return np.stack([electrode_position(c) for c in CANONICAL_CHANNELS])


def known_electrodes() -> tuple[str, ...]:
    """All 10-10 electrode names with a position."""
    return tuple(sorted(_ten_ten_positions()))
