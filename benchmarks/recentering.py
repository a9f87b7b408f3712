"""Benchmark: does re-centering each recording's (or each person's) covariances to the identity
help a task? Prints one JSON object.

Re-centering (Euclidean or Riemannian alignment) moves every window's band covariance ``C`` of a
group to ``W C W``, ``W`` the inverse square root of the group's mean matrix: what the group has in
common (its person, montage, impedances) goes, what varies inside it stays. On a benchmark run's
output folder (``data/``, the pipeline's windows) this fits the tangent-space readout of
``readout_by_people.py`` (each band's shrunk co-spectral matrix, the tangent space at the training
windows' mean under each metric, a class-balanced logistic regression with C chosen by 5-fold CV
grouped by person over the training people and by the validation people) on the covariances as
they are, re-centered per recording, and re-centered per person, and prints each one's validation
figures and the training people's out-of-fold AUROC.

A group's mean reads every window of the group, a held-out person's included: re-centering is
transductive (the model must see a recording, or a person, whole before it answers any of its
windows), which is why this is an analysis and not a benchmark row.

    python benchmarks/recentering.py OUTPUT [--task eegmat_rest_task]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from pyriemann.geometry.base import invsqrtm
from pyriemann.geometry.mean import mean_riemann

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.readout_by_people import feature_set_row, two_class_splits  # noqa: E402
from eegfm.model.spectral_features import METRICS, TangentMap, band_covariances  # noqa: E402

NEEDS_INPUT = "a labeled benchmark's output folder"  # make bench skips it

GROUPINGS = ("none", "recording", "subject")


def recentered(covariances: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """[N, bands, C, C] -> each group's matrices congruent by the inverse square root of the
    group's Riemannian mean, band by band: every group's mean becomes the identity."""
    out = np.empty_like(covariances)
    for group in np.unique(groups):
        rows = groups == group
        for band in range(covariances.shape[1]):
            whitening = invsqrtm(mean_riemann(covariances[rows, band]))
            out[rows, band] = whitening @ covariances[rows, band] @ whitening
    return out


def main(argv: list[str] | None = None) -> int:
    _, train, validation = two_class_splits(
        argv, __doc__.splitlines()[0], "a labeled benchmark's output folder (its data/)"
    )
    matrices = {"train": band_covariances(train.eeg), "dev": band_covariances(validation.eeg)}
    rows = {}
    for grouping in GROUPINGS:
        moved = dict(matrices)
        if grouping != "none":
            moved = {
                name: recentered(matrices[name], np.asarray(getattr(split, grouping)))
                for name, split in (("train", train), ("dev", validation))
            }
        for metric in METRICS:
            tangent = TangentMap.fit(moved["train"], metric)
            x, x_val = tangent.transform(moved["train"]), tangent.transform(moved["dev"])
            rows[f"{grouping}, {metric}"] = feature_set_row(x, x_val, train, validation)
    summary = {
        "metrics": "balanced accuracy, AUROC, AUPRC",
        "groupings": "none; each recording's covariances re-centered; each person's",
        "people": {"train": len(set(train.subject.tolist())), "validation": len(set(validation.subject.tolist()))},
        "rows": rows,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
