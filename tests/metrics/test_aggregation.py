"""A recording's answer from its windows: the mean of their probabilities, exactly, and a
moving-block bootstrap interval that behaves as an interval of a mean of dependent windows should."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from eegfm.metrics.aggregation import CONFIDENCE, aggregate_windows


def _dirichlet(n: int, classes: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(classes), size=n)


def _binary(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1)


def _width(probs: np.ndarray) -> float:
    answer = aggregate_windows(probs)
    return float(answer.high[1] - answer.low[1])


def _naive_interval(probs: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The moving-block bootstrap written out: every resample's windows gathered, then averaged."""
    n = len(probs)
    block = math.ceil(n ** (1 / 3))
    starts = np.random.default_rng(seed).integers(0, n - block + 1, size=(resamples, math.ceil(n / block)))
    rows = np.concatenate([np.concatenate([np.arange(s, s + block) for s in row])[None, :n] for row in starts])
    tail = (1 - CONFIDENCE) / 2 * 100
    return tuple(np.percentile(probs[rows].mean(axis=1), [tail, 100 - tail], axis=0))


def test_the_answer_is_the_exact_mean_of_the_windows_and_its_interval_holds_it():
    probs = _dirichlet(37)
    answer = aggregate_windows(probs)
    np.testing.assert_array_equal(answer.probabilities, probs.mean(axis=0))
    assert answer.n_windows == 37 and answer.probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    assert (answer.low <= answer.probabilities).all() and (answer.probabilities <= answer.high).all()
    assert (answer.low < answer.high).all() and (answer.low >= 0).all() and (answer.high <= 1).all()
    again, other = aggregate_windows(probs), aggregate_windows(probs, seed=1)
    np.testing.assert_array_equal(again.low, answer.low)  # seeded: the same recording, the same interval
    assert not np.array_equal(other.low, answer.low)


def test_block_sums_give_the_interval_of_the_windows_gathered_one_by_one():
    for n in (2, 3, 7, 28, 100):
        probs = _dirichlet(n, classes=4, seed=n)
        answer = aggregate_windows(probs, resamples=300, seed=5)
        low, high = _naive_interval(probs, 300, 5)
        # the summed interval, widened to hold the mean where the percentiles miss it
        np.testing.assert_allclose(answer.low, np.minimum(low, answer.probabilities), atol=1e-12)
        np.testing.assert_allclose(answer.high, np.maximum(high, answer.probabilities), atol=1e-12)


def test_identical_windows_give_an_interval_of_no_width_around_their_value():
    probs = np.tile([0.1, 0.7, 0.2], (50, 1))
    answer = aggregate_windows(probs)
    assert (answer.low <= answer.probabilities).all() and (answer.probabilities <= answer.high).all()
    np.testing.assert_allclose(answer.high - answer.low, 0.0, atol=1e-12)


def test_more_windows_of_independent_noise_narrow_the_interval():
    rng = np.random.default_rng(3)
    short, long = (_binary(rng.uniform(0.2, 0.8, size=n)) for n in (20, 500))
    # the standard error of a mean falls as 1/sqrt(n): 5 times narrower, give or take the bootstrap's noise
    assert _width(long) < _width(short) / 3


def test_autocorrelated_windows_give_a_wider_interval_than_the_same_windows_shuffled():
    # a latent state drifting slowly (AR(1), 0.95 per window), as drowsiness or a seizure makes neighbours alike
    rng = np.random.default_rng(4)
    z = np.zeros(400)
    for t in range(1, len(z)):
        z[t] = 0.95 * z[t - 1] + rng.normal(0, 0.5)
    drifting = _binary(1 / (1 + np.exp(-z)))
    shuffled = drifting[rng.permutation(len(drifting))]
    np.testing.assert_allclose(aggregate_windows(shuffled).probabilities, aggregate_windows(drifting).probabilities)
    assert _width(drifting) > 1.5 * _width(shuffled)


def test_fewer_than_two_windows_give_no_interval():
    answer = aggregate_windows([[0.25, 0.75]])
    assert answer.low is None and answer.high is None and answer.n_windows == 1
    np.testing.assert_array_equal(answer.probabilities, [0.25, 0.75])


@pytest.mark.parametrize(
    "probabilities, resamples, named",
    [
        ([0.2, 0.8], 10, "probabilities"),  # one window as a flat list: no classes axis
        (np.zeros((0, 3)), 10, "probabilities"),
        (np.zeros((4, 0)), 10, "probabilities"),
        (np.full((2, 2, 2), 0.5), 10, "probabilities"),
        ([[0.5, 0.5], [np.nan, 0.5]], 10, "probabilities"),
        ([[1.5, -0.5], [0.5, 0.5]], 10, "probabilities"),
        ([[0.5, 0.5], [0.5, 0.5]], 0, "resamples"),
        ([[0.5, 0.5], [0.5, 0.5]], 2.5, "resamples"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(probabilities, resamples, named):
    with pytest.raises(ValueError, match=f"^{named}: expected"):
        aggregate_windows(probabilities, resamples=resamples)


def test_a_day_of_windows_is_aggregated_in_bounded_memory():
    probs = _dirichlet(8640, classes=6)  # 24 h of 10 s windows of a six-class model
    tracemalloc.start()
    try:
        answer = aggregate_windows(probs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # gathering every resample's windows at once would take 1000 x 8640 x 6 x 8 bytes = 415 MB
    assert peak < 80e6, peak
    assert (answer.high - answer.low < 0.01).all()  # i.i.d. windows: a narrow interval
