"""The held-out confusion matrix (metrics.classification, metrics.plots)."""

from __future__ import annotations

import numpy as np

from eegfm.metrics.classification import confusion_matrix
from eegfm.metrics.plots import plot_confusion


def test_counts_land_in_their_true_row_and_predicted_column(tmp_path):
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    plot_confusion(matrix, ["a", "b", "c", "none seen"], "t", tmp_path / "c.png")  # an empty row draws too
    assert (tmp_path / "c.png").stat().st_size > 1000
