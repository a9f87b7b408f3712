"""The uncertainty measures against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eegfm.metrics.uncertainty import entropy, uncertainty_of


def test_agreeing_samples_have_no_mutual_information():
    p = np.array([[[0.5, 0.5], [0.5, 0.5]]])
    u = uncertainty_of(p)
    assert u.predictive_entropy[0] == pytest.approx(math.log(2))
    assert u.expected_entropy[0] == pytest.approx(math.log(2))
    assert u.mutual_information[0] == pytest.approx(0.0, abs=1e-15) and u.mutual_information[0] >= 0
    assert u.confidence[0] == 0.5 and u.normalized_entropy[0] == pytest.approx(1.0) and u.passes == 2


def test_confident_samples_that_disagree_are_all_epistemic():
    # two samples, each sure, of different classes: mean (0.5, 0.5, 0)
    p = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    u = uncertainty_of(p)
    assert u.expected_entropy[0] == 0.0
    assert u.predictive_entropy[0] == pytest.approx(math.log(2))
    assert u.mutual_information[0] == pytest.approx(math.log(2))
    np.testing.assert_allclose(u.mean_probabilities, [[0.5, 0.5, 0.0]])
    assert u.normalized_entropy[0] == pytest.approx(math.log(2) / math.log(3))


def test_a_worked_example_with_three_samples():
    p = np.array([[[0.8, 0.2], [0.6, 0.4], [0.4, 0.6]]])
    u = uncertainty_of(p)
    mean = 0.6
    h = lambda q: -(q * math.log(q) + (1 - q) * math.log(1 - q))  # noqa: E731
    assert u.confidence[0] == pytest.approx(mean)
    assert u.predictive_entropy[0] == pytest.approx(h(0.6))  # 0.673012
    assert u.expected_entropy[0] == pytest.approx((h(0.8) + h(0.6) + h(0.4)) / 3)  # 0.615475
    assert u.mutual_information[0] == pytest.approx(0.0575364, abs=1e-6)


def test_one_sample_and_bad_input():
    u = uncertainty_of(np.array([[[0.25, 0.75]], [[1.0, 0.0]]]))
    np.testing.assert_allclose(u.mutual_information, [0.0, 0.0], atol=1e-15)
    assert entropy(np.array([1.0, 0.0])) == 0.0
    with pytest.raises(ValueError, match=r"expected an array \(windows, samples >= 1, classes\); got shape \(2, 3\)"):
        uncertainty_of(np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="summing to 1"):
        uncertainty_of(np.ones((1, 2, 3)))
