"""Seed ensembles: the class probabilities of several fine-tuned models averaged per window."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eegfm.evaluation.benchmark.windows import WindowSet
from eegfm.model.fused import network_probabilities


def class_probabilities(model_dir: Path, windows: WindowSet) -> np.ndarray:
    """[N, C] calibrated class probabilities of one fine-tuned model (its ``model/`` folder)."""
    return network_probabilities(model_dir, windows.eeg, windows.channel_mask)


def ensemble_probabilities(model_dirs: Sequence[Path], windows: WindowSet) -> np.ndarray:
    """The mean of the models' class probabilities (a window's own predictions only)."""
    return np.mean([class_probabilities(folder, windows) for folder in model_dirs], axis=0)
