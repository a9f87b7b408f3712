"""How far a classifier's stated confidence can be trusted: expected calibration error (ECE), the
Brier score and the reliability bins calibration.png draws. Targets may be distributions (hms6's
expert votes): a window's "correctness" is the target's share on the predicted class (the chance
that a rater from its panel agrees), which for one-hot targets is plain accuracy.
"""

from __future__ import annotations

import numpy as np

N_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017) and most reports since


def _checked(probs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, target = np.asarray(probs, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != target.shape:
        raise ValueError(
            f"probs, target: expected two arrays of shape [windows, classes]; got {probs.shape} and {target.shape}"
        )
    return probs, target


def reliability_bins(probs: np.ndarray, target: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Per confidence bin (``edges[b]`` < top-class probability <= ``edges[b + 1]``, 0 in the first):
    the windows, their mean confidence and mean target share of the predicted class (NaN if empty)."""
    probs, target = _checked(probs, target)
    if n_bins < 1:
        raise ValueError(f"n_bins: expected an integer >= 1; got {n_bins}")
    predicted = probs.argmax(1)
    confidence = probs[np.arange(len(probs)), predicted]
    observed = target[np.arange(len(target)), predicted]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # From the product, not a search of the edges: linspace's 0.9 is 0.9000000000000001
    which = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, n_bins) / counts
        mean_observed = np.bincount(which, observed, n_bins) / counts
    return {
        "edges": edges.tolist(),
        "count": counts.tolist(),
        "confidence": mean_confidence.tolist(),
        "observed": mean_observed.tolist(),
    }


def expected_calibration_error(probs: np.ndarray, target: np.ndarray, n_bins: int = N_BINS) -> float:
    """Windows-weighted mean gap between confidence and observed share over the bins (NaN without windows)."""
    return ece_of_bins(reliability_bins(probs, target, n_bins))


def ece_of_bins(bins: dict[str, list]) -> float:
    """The ECE of ``reliability_bins``' output (as eval.json keeps it)."""
    counts = np.asarray(bins["count"], dtype=np.float64)
    if not counts.sum():
        return float("nan")
    gaps = np.abs(np.nan_to_num(np.asarray(bins["confidence"]) - np.asarray(bins["observed"])))
    return float((counts * gaps).sum() / counts.sum())


def brier_score(probs: np.ndarray, target: np.ndarray) -> float:
    """Mean over windows of the squared distance between the predicted and the target distribution
    (0 is perfect; a uniform guess on a one-hot target of C classes scores 1 - 1/C)."""
    probs, target = _checked(probs, target)
    return float(((probs - target) ** 2).sum(1).mean()) if len(probs) else float("nan")


def calibration_metrics(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``ece`` and ``brier`` for eval.json."""
    return {"ece": expected_calibration_error(probs, target), "brier": brier_score(probs, target)}
