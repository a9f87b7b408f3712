"""Electrode potentials from a bipolar recording (CHB-MIT's double banana and many clinical exports),
so that it harmonizes like a referential one.

Over derivations ``A-B`` that connect electrodes into one chain, the minimum-norm least-squares
solution (the pseudo-inverse of the incidence matrix) gives the potentials on their average
reference; redundant derivations are averaged. Chains not connected to the largest one have a
reference of their own: they are left out (and interpolated) and named in the manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from eegfm.contract.channels import auxiliary_kind, derivation, standard_name


@dataclasses.dataclass(frozen=True)
class BipolarPlan:
    """How to turn a recording's derivations into electrode potentials (average reference over
    the reconstructed electrodes)."""

    electrodes: tuple[str, ...]  # 10-10 names of the reconstructed electrodes
    derivations: tuple[int, ...]  # channel indices of the derivations used
    matrix: np.ndarray  # (len(electrodes), len(derivations)) float64: potentials = matrix @ derivations
    left_out: tuple[str, ...] = ()  # derivations of chains not connected to the largest one
    chains: tuple[tuple[str, ...], ...] = ()  # the electrodes of every chain, the one used first

    def as_dict(self, ch_names: Sequence[str]) -> dict:
        return {
            "derivations": [ch_names[i] for i in self.derivations],
            "electrodes": list(self.electrodes),
            "left_out": list(self.left_out),
        }


def bipolar_plan(ch_names: Sequence[str], exclude: Sequence[str] = ()) -> BipolarPlan | None:
    """The reconstruction of a bipolar montage's electrodes, or None where the channels are not one
    (fewer than two derivations, or all against one electrode: a referential montage). ``exclude``:
    channels known to be bad."""
    excluded = set(exclude)
    pairs = {
        i: pair
        for i, name in enumerate(ch_names)
        if name not in excluded
        and auxiliary_kind(name) is None
        and (pair := derivation(name)) is not None
        and pair[0] != pair[1]
    }
    if len(pairs) < 2 or len({second for _, second in pairs.values()}) < 2:
        return None
    # The chains: electrodes joined by derivations (union-find).
    parent: dict[str, str] = {}

    def root(e: str) -> str:
        while parent.setdefault(e, e) != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    for a, b in pairs.values():
        parent[root(a)] = root(b)
    chains: dict[str, list[str]] = {}
    for e in sorted(parent):
        chains.setdefault(root(e), []).append(e)
    # The largest chain; of equal ones, the one with more derivations, then by name (deterministic).
    used_by = {r: [i for i, (a, _) in pairs.items() if root(a) == r] for r in chains}
    best = max(chains, key=lambda r: (len(chains[r]), len(used_by[r]), chains[r]))
    electrodes = tuple(chains[best])
    used = tuple(sorted(used_by[best]))
    column = {e: k for k, e in enumerate(electrodes)}
    incidence = np.zeros((len(used), len(electrodes)))
    for row, i in enumerate(used):
        a, b = pairs[i]
        incidence[row, column[a]], incidence[row, column[b]] = 1.0, -1.0
    left_out = tuple(ch_names[i] for i in sorted(pairs) if i not in set(used))
    others = sorted((tuple(c) for r, c in chains.items() if r != best), key=lambda c: (-len(c), c))
    return BipolarPlan(electrodes, used, np.linalg.pinv(incidence), left_out, (electrodes, *others))


class BipolarReader:
    """A reader presenting the reconstructed electrodes first, then the channels that name no
    electrode; everything else is the wrapped reader's."""

    def __init__(self, reader, plan: BipolarPlan):
        self._reader, self.bipolar = reader, plan
        names = reader.info.ch_names
        # Beside the electrodes, the channels that name none (others have another reference).
        used = set(plan.derivations)
        self._kept = [
            i for i, n in enumerate(names) if i not in used and derivation(n) is None and standard_name(n) is None
        ]
        self.info = dataclasses.replace(reader.info, ch_names=plan.electrodes + tuple(names[i] for i in self._kept))
        self._matrix = plan.matrix.astype(np.float32)
        self._rows = list(plan.derivations)

    def read(self, start: int = 0, stop: int | None = None, *, check_finite: bool = True) -> np.ndarray:
        raw = self._reader.read(start, stop, check_finite=check_finite)
        out = np.empty((len(self.info.ch_names), raw.shape[1]), dtype=np.float32)
        np.matmul(self._matrix, raw[self._rows], out=out[: len(self.bipolar.electrodes)])
        out[len(self.bipolar.electrodes) :] = raw[self._kept]
        return out

    def __getattr__(self, name: str):
        return getattr(self._reader, name)

    def close(self) -> None:
        self._reader.close()
