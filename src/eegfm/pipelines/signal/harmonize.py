"""Channel harmonization: any montage -> the 19 canonical 10-20 channels in microvolts.

:func:`map_channels` decides what each recorded channel is (canonical electrode, other 10-10
electrode, auxiliary signal or unknown; HarmonizeError on duplicates), :func:`interpolation_matrix`
fills missing canonical channels with MNE's spherical spline (a matrix per montage, since the
spline is linear), and :func:`harmonize` applies both, returning ``channel_mask`` (1 measured,
0 interpolated) and the auxiliary channels.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from eegfm.contract.channels import (
    BIOSEMI_CAPS,
    CANONICAL_CHANNELS,
    CAP_LAYOUTS,
    N_CANONICAL,
    Digitized,
    abc_ten_ten_names,
    auxiliary_kind,
    canonical_of,
    canonical_positions,
    cap_label,
    cap_positions,
    clean_channel_name,
    derivation,
    electrode_position,
    file_cap,
    standard_name,
)
from eegfm.contract.schema import SFREQ
from eegfm.core.config import check_option

# Scale from a declared physical unit to microvolts. Keys are lower-cased, 'µ' folded to 'u'.
_UNIT_TO_UV = {"uv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3, "microvolts": 1.0, "millivolts": 1e3}
# Reference and ground electrodes carry no scalp signal of their own in a referential montage.
_REFERENCE_ELECTRODES = frozenset({"A1", "A2", "M1", "M2", "Nz", "Iz"})
# Adult head radius in metres; MNE's spline works on positions in head coordinates.
_HEAD_RADIUS_M = 0.095


class HarmonizeError(ValueError):
    """A recording's channels cannot be harmonized; the message says why and what was found."""


def microvolt_scale(unit: str, *, channel: str = "") -> float:
    """Factor that converts values in `unit` (EDF physical dimension) to microvolts."""
    key = unit.strip().lower().replace("µ", "u").replace("μ", "u")
    if key not in _UNIT_TO_UV:
        where = f"channel {channel!r}: " if channel else ""
        raise HarmonizeError(f"{where}physical unit: expected one of uV, mV, V, nV; got {unit!r}")
    return _UNIT_TO_UV[key]


@dataclasses.dataclass(frozen=True)
class ChannelMap:
    """What each recorded channel is, by index into the recording's channel list."""

    canonical: dict[str, int]  # canonical name -> index
    extra_eeg: dict[str, int]  # other 10-10 electrodes (interpolation sources) -> index
    auxiliary: dict[str, list[int]]  # 'ecg' | 'eog' | 'emg' | 'stim' | 'misc' -> indices
    unknown: tuple[str, ...]  # names that are none of the above
    bipolar: tuple[str, ...] = ()  # derivations of a bipolar montage (Fp1-F7 ...): no electrode of their own
    # the cap whose layout placed the electrodes, or 'file-<hex>' for digitized ones (channels.file_cap)
    cap: str = ""

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(c for c in CANONICAL_CHANNELS if c not in self.canonical)


_BIOSEMI_ABC = re.compile(r"^[A-H]([1-9]|[12][0-9]|3[0-2])$")
_LETTER_NUMBER = re.compile(r"^[A-H](\d+)$")


def is_biosemi_abc_layout(ch_names) -> bool:
    """True for BioSemi's A1..H32 cap labels, where 'C3' or 'F7' are NOT 10-20 positions: at least
    32 such labels (24 of A1..A32 alone), 16 of them no 10-10 name, none numbered past 32 (EGI's E1
    ... E256)."""
    names = [n.strip() for n in ch_names]
    abc = [n for n in names if _BIOSEMI_ABC.match(n)]
    letters = {n[0] for n in abc}
    past_32 = any(m and int(m.group(1)) > 32 for m in map(_LETTER_NUMBER.match, names))
    if past_32 or "A" not in letters:
        return False
    enough = len(abc) >= 24 if letters == {"A"} else len(abc) >= 32
    return enough and sum(standard_name(n) is None for n in abc) >= 16


# How far (degrees of arc; 7 is about 12 mm on an adult head) a cap's electrode may lie from a 10-20
# site and still record it: the spread of placement by tape measure.
CAP_SITE_TOLERANCE_DEG = 7.0


def biosemi_cap(ch_names) -> str:
    """The BioSemi cap of ABC labels, by the last letter used (A: 32, B: 64, D: 128, E: 160,
    H: 256), or ''."""
    letters = {n.strip()[0] for n in ch_names if _BIOSEMI_ABC.match(n.strip())}
    return BIOSEMI_CAPS.get(max(letters), "") if letters else ""


def _map_cap(ch_names, cap: str) -> ChannelMap:
    """Channels labelled by position on a cap: each 10-20 site gets the recorded electrode nearest
    it, within CAP_SITE_TOLERANCE_DEG, as its measured channel; the others are interpolation sources."""
    positions = cap_positions(cap) if cap else {}
    aux: dict[str, list[int]] = {}
    unknown: list[str] = []
    placed: dict[int, str] = {}
    for idx, raw in enumerate(ch_names):
        kind = auxiliary_kind(raw)
        if kind is not None:
            aux.setdefault(kind, []).append(idx)
        elif cap_label(raw) in positions:
            placed[idx] = cap_label(raw)
        else:
            unknown.append(raw)
    canonical: dict[str, int] = {}
    if placed:
        rows = list(placed)
        cosine = canonical_positions() @ np.stack([positions[placed[i]] for i in rows]).T
        degrees = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        for site, near in zip(CANONICAL_CHANNELS, degrees):
            if near.min() <= CAP_SITE_TOLERANCE_DEG:
                canonical[site] = rows[int(near.argmin())]
    taken = set(canonical.values())
    extra = {f"{cap}:{label}": idx for idx, label in placed.items() if idx not in taken}
    return ChannelMap(canonical, extra, aux, tuple(unknown), cap=cap)


def _cap_note(ch_names, cmap: ChannelMap, montage: str = "auto") -> str:
    placed = f"a 10-20 site is present where a recorded electrode lies within {CAP_SITE_TOLERANCE_DEG:g} degrees of it"
    if cmap.cap.startswith("file-"):
        return f"; the channels are placed by the positions digitized in the file: {placed}"
    if abc_ten_ten_names(cmap.cap):
        return f"; the labels are BioSemi cap positions ({cmap.cap}), each standing for the 10-10 electrode there"
    if cmap.cap:
        maker = "BioSemi cap" if cmap.cap in BIOSEMI_CAPS.values() else "cap"
        return f"; the labels are {maker} positions ({cmap.cap}): {placed}"
    if montage == "file":
        return (
            f"; --montage file: no electrode positions to place the channels by (a FIF's, EGI MFF's or EEGLAB "
            f"file's with the nasion and ears, a BrainVision header's [Coordinates] or a BIDS electrodes.tsv, "
            f"for at least {CAP_MIN_LABELS} EEG channels)"
        )
    if montage != "auto":
        found = sum(cap_label(n) in cap_positions(montage) for n in ch_names)
        return (
            f"; --montage {montage}: {found} of the channel names are its electrodes' labels, fewer than the "
            f"{min(CAP_MIN_LABELS, len(cap_positions(montage)))} that place a recording by it"
        )
    if is_biosemi_abc_layout(ch_names):
        last = max(n.strip()[0] for n in ch_names if _BIOSEMI_ABC.match(n.strip()))
        return (
            f"; the labels are BioSemi ABC cap positions (letters A to {last}), of a cap with no layout here "
            f"(known: letters to {', '.join(f'{k} ({v})' for k, v in BIOSEMI_CAPS.items())})"
        )
    return ""


# A run's --montage places a recording by that cap where this many of its labels are the cap's.
CAP_MIN_LABELS = 16
# --montage file uses digitized positions only where the names give fewer 10-20 sites than this.
FILE_NAMES_ENOUGH = 10
MONTAGES = ("auto", "file", *CAP_LAYOUTS)


def map_channels(
    ch_names: list[str] | tuple[str, ...], montage: str = "auto", digitized: Digitized | None = None
) -> ChannelMap:
    """Classify recorded channel names; raise HarmonizeError on duplicate electrodes. ``montage``: a
    cap of CAP_LAYOUTS whose labels the recordings use; 'file': place channels whose names say
    nothing by the positions ``digitized`` in the file or a BIDS electrodes.tsv; 'auto': names,
    and BioSemi's ABC labels (the one layout that names itself)."""
    check_option("montage", montage, MONTAGES)
    if montage not in ("auto", "file"):
        labels = cap_positions(montage)
        if sum(cap_label(n) in labels for n in ch_names) >= min(CAP_MIN_LABELS, len(labels)):
            return _map_by_cap(ch_names, montage)
    # BioSemi's ABC labels name positions on its cap, not 10-20 sites ('C3' is no C3).
    named = _map_by_cap(ch_names, biosemi_cap(ch_names)) if is_biosemi_abc_layout(ch_names) else _map_ten_ten(ch_names)
    if montage == "file" and digitized is not None and len(named.canonical) < FILE_NAMES_ENOUGH:
        # A position's label may lack the channel's system prefix or reference ('E1' of 'EEG E1-Ref')
        plain = {_plain(label): p for label, p in digitized.positions.items()}
        placed = {n: digitized.positions.get(n, plain.get(_plain(n))) for n in ch_names if auxiliary_kind(n) is None}
        placed = {n: p for n, p in placed.items() if p is not None}
        if len(placed) >= CAP_MIN_LABELS and (cap := file_cap(dataclasses.replace(digitized, positions=placed))):
            return _map_cap(ch_names, cap)
    return named


def _plain(label: str) -> str:
    return cap_label(clean_channel_name(label)).upper()


def _map_by_cap(ch_names, cap: str) -> ChannelMap:
    if named := abc_ten_ten_names(cap):
        # BioSemi's 32 and 64 caps carry 10-10 electrodes under ABC labels ('A5' is F3 itself).
        return dataclasses.replace(_map_ten_ten([named.get(cap_label(n), n) for n in ch_names]), cap=cap)
    return _map_cap(ch_names, cap)


def _map_ten_ten(ch_names) -> ChannelMap:
    canonical: dict[str, int] = {}
    extra: dict[str, int] = {}
    aux: dict[str, list[int]] = {}
    unknown: list[str] = []
    seen: dict[str, str] = {}
    # Channels named 'X-Y' with two electrodes: all against one Y, a referential montage with an
    # electrode as reference (X-Cz, X-FCz); against several, a bipolar one (Fp1-F7, F7-T3 ...),
    # whose derivations are no electrode's potential, not even 'Fz-Cz'.
    pairs = {
        idx: pair
        for idx, raw in enumerate(ch_names)
        if auxiliary_kind(raw) is None and (pair := derivation(raw)) is not None
    }
    bipolar = len({second for _, second in pairs.values()}) > 1
    for idx, raw in enumerate(ch_names):
        kind = auxiliary_kind(raw)
        if kind is not None:
            aux.setdefault(kind, []).append(idx)
            continue
        if bipolar and idx in pairs:
            continue
        std = pairs[idx][0] if idx in pairs else standard_name(raw)
        if std is None:
            unknown.append(raw)
            continue
        if std in seen:
            raise HarmonizeError(f"duplicate channel: {raw!r} and {seen[std]!r} are both electrode {std}")
        seen[std] = raw
        canon = canonical_of(std)
        if canon is not None:
            canonical[canon] = idx
        elif std not in _REFERENCE_ELECTRODES:
            extra[std] = idx
    derivations = tuple(ch_names[idx] for idx in pairs) if bipolar else ()
    return ChannelMap(canonical, extra, aux, tuple(unknown), derivations)


@lru_cache(maxsize=256)
def interpolation_matrix(sources: tuple[str, ...], targets: tuple[str, ...]) -> np.ndarray:
    """Spherical-spline weights from MNE, shape (len(targets), len(sources)), cached by montage."""
    import mne  # heavy: loaded only when a montage needs interpolation

    names = list(sources) + list(targets)
    positions = {n: electrode_position(n) * _HEAD_RADIUS_M for n in names}
    info = mne.create_info(names, sfreq=SFREQ, ch_types="eeg")
    montage = mne.channels.make_dig_montage(ch_pos=positions, coord_frame="head")
    identity = np.zeros((len(names), len(sources)))
    identity[: len(sources)] = np.eye(len(sources))
    raw = mne.io.RawArray(identity, info, verbose="error")
    raw.set_montage(montage, verbose="error")
    raw.info["bads"] = list(targets)
    raw.interpolate_bads(reset_bads=True, mode="accurate", origin=(0.0, 0.0, 0.0), verbose="error")
    return raw.get_data(picks=list(targets)).astype(np.float64)


@dataclasses.dataclass
class Harmonized:
    data: np.ndarray  # (19, n_times) float32 microvolts, canonical order
    channel_mask: np.ndarray  # (19,) int64, 1 measured, 0 interpolated
    auxiliary: dict[str, np.ndarray]  # kind -> (n_times,) first channel of that kind, microvolts
    interpolated: tuple[str, ...]


def plan_harmonization(
    ch_names,
    *,
    min_channels: int = 10,
    exclude: Sequence[str] = (),
    constant: Sequence[str] = (),
    montage: str = "auto",
    digitized: Digitized | None = None,
    cmap: ChannelMap | None = None,
) -> tuple[ChannelMap, np.ndarray | None]:
    """Map channels and, when some canonical ones are missing, the matrix that fills them in.

    ``exclude`` (known bad) and ``constant`` (not recorded) channels are neither used nor
    interpolated from. ``cmap``: ``map_channels(ch_names, montage, digitized)``, if already done.
    Raises HarmonizeError when fewer than `min_channels` canonical electrodes are present."""
    if not 1 <= min_channels <= N_CANONICAL:
        raise ValueError(f"min_channels: expected 1..{N_CANONICAL}; got {min_channels}")
    cmap = map_channels(list(ch_names), montage, digitized) if cmap is None else cmap
    excluded, flat = set(exclude), set(constant) - set(exclude)
    dropped = {i for i, name in enumerate(ch_names) if name in excluded}
    not_recorded = {i for i, name in enumerate(ch_names) if name in flat}
    dropped |= not_recorded
    if dropped:
        cmap = dataclasses.replace(
            cmap,
            canonical={k: i for k, i in cmap.canonical.items() if i not in dropped},
            extra_eeg={k: i for k, i in cmap.extra_eeg.items() if i not in dropped},
        )
    if len(cmap.canonical) < min_channels:
        found = ", ".join(repr(n) for n in ch_names[:30]) or "none"
        more = f" (+{len(ch_names) - 30} more)" if len(ch_names) > 30 else ""
        bad, flat_names = (", ".join(ch_names[i] for i in sorted(g)) for g in (dropped - not_recorded, not_recorded))
        derivations = ", ".join(cmap.bipolar[:4]) + (" ..." if len(cmap.bipolar) > 4 else "")
        raise HarmonizeError(
            f"only {len(cmap.canonical)} of the 19 10-20 channels are present "
            f"({', '.join(cmap.canonical) or 'none'}); need at least {min_channels} "
            f"(--min_channels). Channels found: {found}{more}"
            + (f"; marked bad and left out: {bad}" if dropped - not_recorded else "")
            + (f"; constant from start to end (not recorded), left out: {flat_names}" if not_recorded else "")
            + (
                f"; {len(cmap.bipolar)} are bipolar derivations ({derivations}), differences between two "
                "electrodes that give neither electrode's signal: export the recording with a referential montage"
                if cmap.bipolar
                else ""
            )
            + _cap_note(ch_names, cmap, montage)
        )
    if not cmap.missing:
        return cmap, None
    sources = tuple(sorted(cmap.canonical, key=CANONICAL_CHANNELS.index)) + tuple(sorted(cmap.extra_eeg))
    return cmap, interpolation_matrix(sources, cmap.missing)


def harmonize(
    data: np.ndarray,
    ch_names: list[str] | tuple[str, ...],
    *,
    min_channels: int = 10,
    reference: str = "keep",
    plan: tuple[ChannelMap, np.ndarray | None] | None = None,
    out: np.ndarray | None = None,
) -> Harmonized:
    """Canonical 19-channel array (microvolts) from ``data`` (n_chans, n_times) in microvolts.

    ``reference='average'`` re-references the 19 channels to their mean after interpolation.
    ``plan``: :func:`plan_harmonization`'s, reused across a recording's chunks. ``out``: a float32
    (19, n_times) array to write into instead of a new one."""
    check_option("reference", reference, ("keep", "average"))
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[0] != len(ch_names):
        raise ValueError(f"data: expected shape (len(ch_names)={len(ch_names)}, n_times); got {data.shape}")
    cmap, matrix = plan if plan is not None else plan_harmonization(ch_names, min_channels=min_channels)
    if out is None:
        out = np.empty((N_CANONICAL, data.shape[1]), dtype=np.float32)
    elif out.shape != (N_CANONICAL, data.shape[1]) or out.dtype != np.float32:
        raise ValueError(
            f"out: expected a float32 array of shape ({N_CANONICAL}, {data.shape[1]}); got {out.dtype} {out.shape}"
        )
    mask = np.zeros(N_CANONICAL, dtype=np.int64)
    for row, name in enumerate(CANONICAL_CHANNELS):
        if name in cmap.canonical:
            out[row] = data[cmap.canonical[name]]
            mask[row] = 1
    if matrix is not None:
        sources = [cmap.canonical[n] for n in CANONICAL_CHANNELS if n in cmap.canonical]
        sources += [cmap.extra_eeg[n] for n in sorted(cmap.extra_eeg)]
        filled = matrix @ data[sources].astype(np.float64)
        for k, name in enumerate(cmap.missing):
            out[CANONICAL_CHANNELS.index(name)] = filled[k]
    if reference == "average":
        out -= out.mean(axis=0, keepdims=True)
    aux = {kind: data[idx[0]].astype(np.float32) for kind, idx in cmap.auxiliary.items()}
    return Harmonized(out, mask, aux, cmap.missing)
