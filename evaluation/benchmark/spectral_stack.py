"""eegfm stacked with a spectral readout: the ``eegfm_stacked`` rows of a labeled benchmark.

Two models of one window, fused:

- the fine-tuned eegfm model of a seed (the ``eegfm`` row's run, or the seeds' mean);
- a logistic regression on the *pretrained* encoder's window embedding (frozen; ``pooled``) beside
  the window's log band powers (:func:`baselines.band_power_features`), C chosen on validation
  as the band-power baseline's is (:func:`baselines.feature_lr`).

The fusion is the normalised weighted geometric mean of the two class distributions (a weighted
mean of log-probabilities). Why: on eegmat the fine-tuned model ranks most people's windows well
and misses one validation subject whose rest the band powers read correctly, while the frozen
embedding with the band powers errs on other windows; each corrects part of the other.

Every input is one window's own: no statistic spans a subject's windows. The regression is fitted
on the training windows alone; validation chooses its C; test never chooses anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from eegfm.evaluation.benchmark import baselines
from eegfm.evaluation.benchmark.windows import WindowSet
from eegfm.model.architectures import quiet_transformers
from eegfm.model.modeling import EEGFMModel

# The fine-tuned model's share of the fusion. Equal shares: the product of the two experts'
# opinions, with no weight fitted to a few validation subjects (docs/benchmarks.md measures the
# alternatives).
FUSION_WEIGHT = 0.5
_BATCH = 64
_FLOOR = 1e-9  # a probability of 0 would veto a class outright


def embedding_features(encoder_dir: Path) -> Callable[[WindowSet], np.ndarray]:
    """A featurizer: [N, D + band-power features] of windows, the frozen pretrained encoder's
    ``pooled`` embedding (``encoder_dir``: a pretraining or fine-tuning model folder) beside
    :func:`baselines.band_power_features`."""
    with quiet_transformers():  # a pretraining folder has no head: the missing-keys table is expected
        model = EEGFMModel.from_pretrained(encoder_dir).eval()

    def featurize(windows: WindowSet) -> np.ndarray:
        parts = []
        with torch.no_grad():
            for start in range(0, len(windows), _BATCH):
                eeg = torch.from_numpy(windows.eeg[start : start + _BATCH])
                mask = torch.from_numpy(windows.channel_mask[start : start + _BATCH])
                parts.append(model.forward_features(eeg, channel_mask=mask).pooled.double().numpy())
        embedding = np.concatenate(parts) if parts else np.zeros((0, model.config.hidden_size))
        return np.concatenate([embedding, baselines.band_power_features(windows.eeg)], axis=1)

    return featurize


def spectral_readout(encoder_dir: Path, train: WindowSet, n_classes: int, validation: WindowSet):
    """The regression on :func:`embedding_features`; returns ``(predict, chosen C)``."""
    return baselines.feature_lr(embedding_features(encoder_dir), train, n_classes, validation)


def fuse(model_probs: np.ndarray, readout_probs: np.ndarray, weight: float = FUSION_WEIGHT) -> np.ndarray:
    """[N, C] the normalised weighted geometric mean: ``weight`` on ``model_probs``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight: expected a number in [0, 1]; got {weight}")
    log_model, log_readout = (np.log(np.clip(p, _FLOOR, 1.0)) for p in (model_probs, readout_probs))
    log = weight * log_model + (1 - weight) * log_readout
    fused = np.exp(log - log.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)


def stacked(model_predict, readout_predict, weight: float = FUSION_WEIGHT):
    """A predictor of windows' class probabilities: :func:`fuse` of the two predictors'."""
    return lambda windows: fuse(model_predict(windows), readout_predict(windows), weight)
