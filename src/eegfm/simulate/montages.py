"""The montage a site writes its EEG in: each electrode against the reference, or bipolar
derivations (differences of two electrodes), as clinical and research exports do.

- ``referential``: every recorded electrode against the site's reference (the default; labels in
  the site's vendor style).
- ``double_banana``: the 18 longitudinal bipolar derivations of clinical reading (the ACNS
  standard montages, Acharya et al., J Clin Neurophysiol 2016;33:312-316), labelled with the 10-20
  names: four chains per side (temporal Fp1-F7-T3-T5-O1, parasagittal Fp1-F3-C3-P3-O1) and the
  midline Fz-Cz-Pz. The two hemispheres and the midline share no electrode, so the reference
  between them is lost: the pipeline rebuilds only the largest chain (8 electrodes) and
  quarantines the recording, as it would a real export of this montage.
- ``chbmit23``: the 23 derivations of the CHB-MIT Scalp EEG Database (Shoeb 2009; PhysioNet),
  labelled and ordered as its EDF files are: the double banana in 10-10 names, then ``P7-T7``,
  ``T7-FT9``, ``FT9-FT10``, ``FT10-T8`` and ``T8-P8`` again. The ``T7-FT9-FT10-T8`` bridge joins
  the hemispheres, so 16 of the 19 electrodes come back against their mean; Fz-Cz-Pz stay a chain
  of their own (the pipeline interpolates them).

Every derivation ``A-B`` is ``A`` minus ``B`` as the site measured them (same reference, same
pops, drift and mains per electrode), so the reference cancels and a field shows as phase
reversals: the derivations into and out of a field's maximum have opposite signs.

**T8-P8 twice.** CHB-MIT's files carry ``T8-P8`` twice under the same label (the same signal);
it is written that way, because a reader of real CHB-MIT files must cope with it (the pipeline's
readers number the second ``T8-P8-1`` and its least squares averages the two).

**FT9 and FT10** are not among the simulator's 19 electrodes: its background and artifact
sources are tabulated per 10-20 electrode, not on a continuous head model. Their potentials are
the mean of their two nearest 10-20 electrodes, equidistant on the unit head sphere (0.49 away):
FT9 = (F7 + T3) / 2, FT10 = (F8 + T4) / 2 (inverse-distance interpolation). This smooths what lies
below the temporal chain: a field peaking at FT9 itself (an inferior-mesial temporal source) is
underestimated there, and the bridge derivations carry nothing F7-T3 does not (T7-FT9 = (T3 -
F7) / 2). Every derivation stays an exact linear function of the 19 electrodes, so the recording
is the referential one up to its reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, TEN_TEN_TO_CANONICAL, derivation
from eegfm.simulate.sites import MONTAGES, SiteProfile

DOUBLE_BANANA: tuple[str, ...] = (
    "Fp1-F7",
    "F7-T3",
    "T3-T5",
    "T5-O1",
    "Fp2-F8",
    "F8-T4",
    "T4-T6",
    "T6-O2",
    "Fp1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "Fp2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
    "Fz-Cz",
    "Cz-Pz",
)
CHBMIT23: tuple[str, ...] = (
    "FP1-F7",
    "F7-T7",
    "T7-P7",
    "P7-O1",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
    "FP2-F8",
    "F8-T8",
    "T8-P8",
    "P8-O2",
    "FZ-CZ",
    "CZ-PZ",
    "P7-T7",
    "T7-FT9",
    "FT9-FT10",
    "FT10-T8",
    "T8-P8",
)
BIPOLAR_MONTAGES: dict[str, tuple[str, ...]] = {"double_banana": DOUBLE_BANANA, "chbmit23": CHBMIT23}
# Electrodes outside the 19, as weights of the 19 (see the module docstring).
INTERPOLATED: dict[str, dict[str, float]] = {"FT9": {"F7": 0.5, "T3": 0.5}, "FT10": {"F8": 0.5, "T4": 0.5}}


def electrode_weights(name: str) -> dict[str, float]:
    """An electrode's potential as weights of the canonical electrodes ('T7' -> {'T3': 1})."""
    canonical = TEN_TEN_TO_CANONICAL.get(name, name)
    if canonical in CANONICAL_CHANNELS:
        return {canonical: 1.0}
    if name in INTERPOLATED:
        return INTERPOLATED[name]
    raise ValueError(f"electrode: expected one of the 19 10-20 electrodes or {', '.join(INTERPOLATED)}; got {name!r}")


@dataclasses.dataclass(frozen=True)
class Montage:
    """What a site writes: ``labels`` of the EEG signals and ``matrix`` (n_signals, 19) turning the
    19 measured electrodes (canonical order) into them. ``pairs`` holds each derivation's two
    electrodes (canonical names, or FT9/FT10), empty for a referential montage."""

    name: str
    labels: tuple[str, ...]
    matrix: np.ndarray
    pairs: tuple[tuple[str, str], ...] = ()

    def apply(self, eeg: np.ndarray) -> np.ndarray:
        """(n_signals, n) from (19, n) electrode potentials; channels a derivation does not use may
        be NaN (a site's unrecorded electrodes)."""
        if not self.pairs:  # referential: the rows as measured, bit for bit
            return eeg[np.argmax(self.matrix, axis=1)]
        used = np.flatnonzero(np.any(self.matrix != 0.0, axis=0))
        return self.matrix[:, used] @ eeg[used]


def site_montage(site: SiteProfile) -> Montage:
    """The site's montage over the electrodes it records: a derivation needing an unrecorded
    electrode (FT9 needs F7 and T3) is not written, as an export leaves out an unplaced pair."""
    recorded = set(site.recorded_channels())
    if site.montage == "referential":
        channels = site.recorded_channels()
        rows = np.zeros((len(channels), len(CANONICAL_CHANNELS)))
        rows[np.arange(len(channels)), [CANONICAL_CHANNELS.index(c) for c in channels]] = 1.0
        return Montage("referential", tuple(site.eeg_label(c) for c in channels), rows)
    if site.montage not in BIPOLAR_MONTAGES:
        raise ValueError(f"montage: expected one of {', '.join(MONTAGES)}; got {site.montage!r}")
    labels, rows, pairs = [], [], []
    for label in BIPOLAR_MONTAGES[site.montage]:
        first, second = derivation(label)
        weights = {name: electrode_weights(name) for name in (first, second)}
        if not all(set(w) <= recorded for w in weights.values()):
            continue
        row = np.zeros(len(CANONICAL_CHANNELS))
        for sign, name in ((1.0, first), (-1.0, second)):
            for channel, weight in weights[name].items():
                row[CANONICAL_CHANNELS.index(channel)] += sign * weight
        labels.append(label)
        rows.append(row)
        pairs.append((TEN_TEN_TO_CANONICAL.get(first, first), TEN_TEN_TO_CANONICAL.get(second, second)))
    matrix = np.array(rows).reshape(len(rows), len(CANONICAL_CHANNELS))
    return Montage(site.montage, tuple(labels), matrix, tuple(pairs))
