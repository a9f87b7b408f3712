"""The montages a reviewer reads EEG in, as one definition: each a list of derivations of the 19
canonical channels (``contract.schema.CHANNELS``), and each derivation a row of weights over them.

- ``referential``: the 19 channels as the pipeline gives them (its reference): the model's own input;
- ``average``: each electrode minus the mean of the 19;
- ``double_banana``: the 18 longitudinal bipolar derivations, the spectrogram's four chains
  (``contract.spectrogram.CHAINS``) then the midline;
- ``transverse``: the 18 transverse bipolar derivations, front to back, each row left to right
  (the ACNS transverse bipolar montage, as used at Queen Square);
- ``custom``: a reviewer's own list (:func:`parse_derivations`: ``A-B``, ``A-avg`` or ``A``).

Each derivation names its ``group`` (a chain, a row, a hemisphere): the review page gaps between
groups and moves through them. Pure data and one matrix product: the montage is a display choice,
never the model's input, which stays ``referential``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eegfm.contract.channels import TEN_TEN_TO_CANONICAL
from eegfm.contract.schema import CHANNELS
from eegfm.contract.spectrogram import CHAINS

MODEL_MONTAGE = "referential"
AVERAGE = "avg"  # the second term of a derivation against the 19 channels' mean
MAX_CUSTOM = 40  # a page of 40 rows is already denser than a clinical screen


class MontageError(ValueError):
    """A montage or derivation the caller asked for that does not exist; the message names it."""


@dataclasses.dataclass(frozen=True)
class Derivation:
    """``first`` minus ``second`` (a canonical electrode, ``AVERAGE``, or None: referential)."""

    first: str
    second: str | None
    group: str

    @property
    def name(self) -> str:
        return self.first if self.second is None else f"{self.first}-{self.second}"

    @property
    def electrodes(self) -> tuple[str, ...]:
        """The canonical electrodes the derivation names (the mean's 19 are not listed)."""
        return tuple(e for e in (self.first, self.second) if e is not None and e != AVERAGE)


# Chain names as a reviewer reads them, for the spectrogram's chain codes.
_CHAIN_GROUPS = {"LL": "left temporal", "RL": "right temporal", "LP": "left parasagittal", "RP": "right parasagittal"}
DOUBLE_BANANA: tuple[tuple[str, str], ...] = (
    *(pair for chain in CHAINS.values() for pair in chain),
    ("Fz", "Cz"),
    ("Cz", "Pz"),
)
_TRANSVERSE_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("frontopolar", ("F7", "Fp1", "Fp2", "F8")),
    ("frontal", ("F7", "F3", "Fz", "F4", "F8")),
    ("central", ("T3", "C3", "Cz", "C4", "T4")),
    ("parietal", ("T5", "P3", "Pz", "P4", "T6")),
    ("occipital", ("T5", "O1", "O2", "T6")),
)


def _hemisphere(electrode: str) -> str:
    return "midline" if electrode.endswith("z") else "left" if electrode[-1] in "13579" else "right"


def _double_banana() -> tuple[Derivation, ...]:
    chains = [Derivation(a, b, _CHAIN_GROUPS[code]) for code, chain in CHAINS.items() for a, b in chain]
    return (*chains, Derivation("Fz", "Cz", "midline"), Derivation("Cz", "Pz", "midline"))


def _transverse() -> tuple[Derivation, ...]:
    return tuple(Derivation(a, b, row) for row, chain in _TRANSVERSE_ROWS for a, b in zip(chain, chain[1:]))


MONTAGES: dict[str, tuple[str, tuple[Derivation, ...]]] = {
    "referential": (
        "referential (the pipeline's reference: the model's input)",
        tuple(Derivation(c, None, _hemisphere(c)) for c in CHANNELS),
    ),
    "average": ("average reference", tuple(Derivation(c, AVERAGE, _hemisphere(c)) for c in CHANNELS)),
    "double_banana": ("double banana (longitudinal bipolar)", _double_banana()),
    "transverse": ("transverse bipolar", _transverse()),
}
CUSTOM = "custom"
MONTAGE_KEYS: tuple[str, ...] = (*MONTAGES, CUSTOM)
assert tuple((d.first, d.second) for d in MONTAGES["double_banana"][1]) == DOUBLE_BANANA


def montage(key: str) -> tuple[str, tuple[Derivation, ...]]:
    """The title and derivations of a named montage (not ``custom``: see :func:`parse_derivations`)."""
    if key not in MONTAGES:
        raise MontageError(f"montage: expected one of {', '.join(MONTAGES)}; got {key[:40]!r}")
    return MONTAGES[key]


# Any case, and the 10-10 names of the four renamed temporal electrodes (T7 is T3).
_ELECTRODES = {c.lower(): c for c in CHANNELS} | {k.lower(): v for k, v in TEN_TEN_TO_CANONICAL.items()}


def parse_derivations(entries: list[str] | str) -> tuple[Derivation, ...]:
    """A custom montage from ``entries`` (a list, or one comma-separated string): each ``A-B`` (two
    of the 19 canonical electrodes), ``A-avg`` (minus the 19's mean) or ``A`` (referential); 1 to
    ``MAX_CUSTOM`` of them. MontageError names the first bad entry as ``derivations[i]``."""
    if isinstance(entries, str):
        entries = entries.split(",") if entries.strip() else []
    if not 1 <= len(entries) <= MAX_CUSTOM:
        raise MontageError(f"derivations: expected 1 to {MAX_CUSTOM} comma-separated entries; got {len(entries)}")
    return tuple(_parsed(i, entry) for i, entry in enumerate(entries))


def _parsed(i: int, entry: str) -> Derivation:
    terms = [term.strip() for term in entry.split("-")]
    first = _ELECTRODES.get(terms[0].lower())
    second = None if len(terms) == 1 else AVERAGE if terms[1].lower() == AVERAGE else _ELECTRODES.get(terms[1].lower())
    if len(terms) > 2 or first is None or (len(terms) == 2 and second is None) or first == second:
        shown = entry.strip()[:24]
        raise MontageError(
            f"derivations[{i}]: expected 'A-B' (two different canonical electrodes), 'A-avg' or 'A', "
            f"the electrodes among {' '.join(CHANNELS)}; got {shown!r}"
        )
    return Derivation(first, second, "custom")


def derivation_matrix(derivations: tuple[Derivation, ...]) -> np.ndarray:
    """(n_derivations, 19) float32 weights: derivations = matrix @ channels (the 19 in CHANNELS order)."""
    matrix = np.zeros((len(derivations), len(CHANNELS)), dtype=np.float64)
    for row, derivation in zip(matrix, derivations):
        row[CHANNELS.index(derivation.first)] += 1.0
        if derivation.second == AVERAGE:
            row -= 1.0 / len(CHANNELS)
        elif derivation.second is not None:
            row[CHANNELS.index(derivation.second)] -= 1.0
    return matrix.astype(np.float32)
