"""Expert votes: counts, agreement with the generating class, documented confusions."""

import numpy as np
import pytest

from eegfm.simulate.sites import CLASSES
from eegfm.simulate.votes import (
    CONFUSIONS,
    MAX_RATERS,
    VOTE_COLUMNS,
    agreement_probability,
    consensus,
    draw_rater_count,
    draw_votes,
)

ALLOWED = {cls: {cls, *CONFUSIONS[cls]} for cls in CLASSES}


def _draws(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        strength = float(rng.uniform(0.3, 1.0))
        raters = draw_rater_count(rng)
        yield cls, strength, raters, draw_votes(rng, cls, strength, raters)


def test_votes_sum_to_the_rater_count_within_1_to_20():
    counts = []
    for _, _, raters, votes in _draws():
        assert 1 <= raters <= MAX_RATERS
        assert votes.sum() == raters and votes.min() >= 0 and len(votes) == len(CLASSES)
        counts.append(raters)
    counts = np.array(counts)
    assert np.mean(counts <= 3) > 0.5  # most windows have few raters ...
    assert np.mean(counts >= 10) > 0.1  # ... a minority many, as in HMS
    assert counts.max() == MAX_RATERS and counts.min() == 1


def test_consensus_agrees_with_the_generating_class_more_often_than_not():
    agree = {cls: [] for cls in CLASSES}
    for cls, _, _, votes in _draws():
        agree[cls].append(consensus(votes) == cls)
    for cls, hits in agree.items():
        assert np.mean(hits) > 0.6, cls
    # ... and more often for clear patterns than for faint ones.
    assert agreement_probability(1.0) > agreement_probability(0.3) > 0.5


def test_disagreements_follow_the_documented_confusions():
    for cls, _, _, votes in _draws():
        voted = {CLASSES[i] for i in np.flatnonzero(votes)}
        assert voted <= ALLOWED[cls], (cls, voted)
    pairs = {frozenset(p) for p in [("LPD", "GPD"), ("LRDA", "GRDA"), ("Seizure", "LPD")]}
    for cls, row in CONFUSIONS.items():
        for other in row:
            assert frozenset((cls, other)) in pairs or "Other" in (cls, other)


def test_consensus_ties_go_to_the_earlier_class_and_columns_follow_hms():
    assert consensus(np.array([0, 2, 2, 0, 0, 0])) == "LPD"
    assert VOTE_COLUMNS == ("seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_raters: expected 1..20; got 21"):
        draw_votes(np.random.default_rng(0), "LPD", 0.5, 21)
    with pytest.raises(ValueError, match="cls: expected one of"):
        draw_votes(np.random.default_rng(0), "Spike", 0.5, 3)
