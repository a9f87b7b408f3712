"""Expert votes for labeled windows, as in HMS (1 to ~20 raters per window, mostly a few).

Each rater votes for the generating class with a probability that grows with the episode's
strength, and otherwise picks from that class's typical confusions (:data:`CONFUSIONS`: lateralized
or not, seizure or periodic discharges, there at all or Other).
"""

from __future__ import annotations

import numpy as np

from eegfm.core.tasks import HMS_VOTE_COLUMNS as VOTE_COLUMNS  # noqa: F401 (re-exported)
from eegfm.simulate.sites import CLASSES

MAX_RATERS = 20

# Where a rater who does not vote for the generating class goes (weights sum to 1 per row).
CONFUSIONS: dict[str, dict[str, float]] = {
    "Seizure": {"LPD": 0.6, "Other": 0.4},
    "LPD": {"GPD": 0.45, "Seizure": 0.3, "Other": 0.25},
    "GPD": {"LPD": 0.65, "Other": 0.35},
    "LRDA": {"GRDA": 0.6, "Other": 0.4},
    "GRDA": {"LRDA": 0.6, "Other": 0.4},
    "Other": {"Seizure": 0.1, "LPD": 0.2, "GPD": 0.2, "LRDA": 0.25, "GRDA": 0.25},
}
# Rater-count mixture: (probability, lowest, highest), skewed toward few raters as in HMS.
RATER_GROUPS = ((0.6, 1, 3), (0.22, 4, 9), (0.18, 10, MAX_RATERS))


def agreement_probability(strength: float) -> float:
    """Probability that one rater votes for the generating class: 0.45 (faint) .. 0.95 (clear)."""
    return 0.45 + 0.5 * float(np.clip(strength, 0.0, 1.0))


def draw_rater_count(rng: np.random.Generator) -> int:
    probs = np.array([g[0] for g in RATER_GROUPS])
    low, high = RATER_GROUPS[int(rng.choice(len(RATER_GROUPS), p=probs / probs.sum()))][1:]
    return int(rng.integers(low, high + 1))


def confusion_row(cls: str) -> np.ndarray:
    """(6,) distribution of a disagreeing rater's vote for generating class ``cls``."""
    row = np.array([CONFUSIONS[cls].get(other, 0.0) for other in CLASSES])
    return row / row.sum()


def draw_votes(rng: np.random.Generator, cls: str, strength: float, n_raters: int) -> np.ndarray:
    """(6,) integer vote counts in :data:`CLASSES` order summing to ``n_raters``."""
    if cls not in CLASSES:
        raise ValueError(f"cls: expected one of {', '.join(CLASSES)}; got {cls!r}")
    if not 1 <= n_raters <= MAX_RATERS:
        raise ValueError(f"n_raters: expected 1..{MAX_RATERS}; got {n_raters}")
    p_agree = agreement_probability(strength)
    probs = (1.0 - p_agree) * confusion_row(cls)
    probs[CLASSES.index(cls)] += p_agree
    return rng.multinomial(n_raters, probs / probs.sum()).astype(np.int64)


def consensus(votes: np.ndarray) -> str:
    """The class with most votes; ties go to the class listed first in :data:`CLASSES`."""
    return CLASSES[int(np.argmax(votes))]
