"""Uncertainty of a window's prediction from sampled class probabilities (numpy).

``probabilities`` is (B, S, C): S samples of the class distribution per window, from the fixed
MC-dropout masks of a model's head (``model.uncertainty``) or the members of an ensemble. With
p̄ the mean over samples and H the entropy in nats:

- predictive entropy  H(p̄): all the uncertainty about the class;
- expected entropy    mean_s H(p_s): the aleatoric part, how unsure each sample is on its own;
- mutual information  H(p̄) - mean_s H(p_s) >= 0: the epistemic part, how much the samples
  disagree (0 when every sample says the same);
- confidence          max_c p̄_c.

Entropies are at most log(C); ``normalized_entropy`` divides by it, for thresholds shared by
models with different numbers of classes.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Uncertainty:
    """Per window (arrays of length B); see the module docstring."""

    mean_probabilities: np.ndarray  # (B, C)
    predictive_entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    confidence: np.ndarray
    passes: int

    @property
    def normalized_entropy(self) -> np.ndarray:
        n_classes = self.mean_probabilities.shape[-1]
        return self.predictive_entropy / np.log(n_classes) if n_classes > 1 else np.zeros_like(self.confidence)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis; 0 log 0 = 0."""
    p = np.asarray(probabilities, dtype=np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=-1)


def uncertainty_of(probabilities: np.ndarray) -> Uncertainty:
    """The measures of the module docstring for (B, S, C) sampled probabilities (S >= 1)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] < 1 or p.shape[2] < 1:
        raise ValueError(f"probabilities: expected an array (windows, samples >= 1, classes); got shape {p.shape}")
    if np.any(p < -1e-9) or not np.allclose(p.sum(-1), 1.0, atol=1e-4):
        raise ValueError("probabilities: expected distributions (non-negative, summing to 1 over the classes)")
    mean = p.mean(axis=1)
    predictive = entropy(mean)
    expected = entropy(p).mean(axis=1)
    # H(mean) >= mean H by concavity; rounding can leave a -1e-16 where the samples agree
    mutual = np.maximum(predictive - expected, 0.0)
    return Uncertainty(mean, predictive, expected, mutual, mean.max(axis=-1), passes=p.shape[1])
