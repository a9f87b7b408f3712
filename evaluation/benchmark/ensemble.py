"""Seed ensembles: the class probabilities of several fine-tuned models averaged per window."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from eegfm.evaluation.benchmark.windows import WindowSet
from eegfm.model.architectures import quiet_transformers
from eegfm.model.modeling import EEGFMModel


def class_probabilities(model_dir: Path, windows: WindowSet, batch: int = 64) -> np.ndarray:
    """[N, C] calibrated class probabilities of one fine-tuned model (its ``model/`` folder)."""
    with quiet_transformers():  # one loading bar per model per split would bury the run's log
        model = EEGFMModel.from_pretrained(model_dir)
    parts = []
    for start in range(0, len(windows), batch):
        eeg = torch.from_numpy(windows.eeg[start : start + batch])
        mask = torch.from_numpy(windows.channel_mask[start : start + batch])
        probs = model.predict(eeg=eeg, channel_mask=mask).double().reshape(len(eeg), -1)
        parts.append(torch.cat([1 - probs, probs], dim=1) if probs.shape[1] == 1 else probs)
    return torch.cat(parts).numpy()


def ensemble_probabilities(model_dirs: Sequence[Path], windows: WindowSet) -> np.ndarray:
    """The mean of the models' class probabilities (a window's own predictions only)."""
    return np.mean([class_probabilities(folder, windows) for folder in model_dirs], axis=0)
