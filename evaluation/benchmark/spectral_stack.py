"""eegfm's recipe on a labeled benchmark, its network stacked with a spectral readout: the
``eegfm`` and ``eegfm_ensemble`` rows (the network alone is the ``eegfm_model`` row).

Two models of one window, fused:

- the fine-tuned eegfm network of a seed (the ``eegfm_model`` row's run, or the seeds' mean);
- the *readout*: a class-balanced logistic regression on the frozen pretrained encoder's window
  embedding (``pooled``) beside the window's log band powers (:func:`baselines.band_power_features`),
  and, where validation prefers it, each band's inter-channel correlations
  (:func:`band_correlation_features`). The feature set and C are chosen by validation log loss.

The fusion is the normalised geometric mean of the two class distributions (a mean of
log-probabilities). Why: on eegmat the fine-tuned model ranks most people's windows well and
misses one validation subject whose rest the band powers read correctly; on a simulated group
study the difference between the groups is a spatially coherent delta source that neither the
encoder's embedding nor per-channel powers show and the correlations do (docs/benchmarks.md).

Every input is one window's own: no statistic spans a subject's windows. The regression is fitted
on the training windows alone; validation chooses its features and C; test never chooses anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from eegfm.contract.schema import SFREQ
from eegfm.evaluation.benchmark import baselines
from eegfm.evaluation.benchmark.windows import WindowSet
from eegfm.model.architectures import quiet_transformers
from eegfm.model.modeling import EEGFMModel

# The fine-tuned model's share of the fusion. Equal shares: the product of the two experts'
# opinions, with no weight fitted to a few validation subjects (docs/benchmarks.md measures the
# alternatives).
FUSION_WEIGHT = 0.5
_BATCH = 64
_CHUNK = 256  # windows per Fourier transform: bounds the complex copy
_FLOOR = 1e-9  # a probability of 0 would veto a class outright
_MAX_R = 0.999  # |r| of 1 (a channel interpolated from one neighbour) would give an infinite z
# The readout's candidate feature sets, smaller first: validation log loss picks one.
READOUT_FEATURES: Mapping[str, tuple[str, ...]] = {
    "embedding+powers": ("embedding", "powers"),
    "embedding+powers+correlations": ("embedding", "powers", "correlations"),
}


def band_correlation_features(eeg: np.ndarray, sfreq: float = SFREQ) -> np.ndarray:
    """[N, bands * C(C-1)/2] per window of ``eeg`` [N, C, T] (uV) and band of
    :data:`baselines.BANDS`: the Pearson correlation of every pair of channels after keeping only
    the band's frequencies of the window's own spectrum, Fisher z-transformed. A flat channel
    correlates 0.

    The band-limiting zeroes Fourier bins rather than running a filter: a filter's start-up
    transient spans most of a 5 s window at 0.5 Hz and makes independent channels correlate
    (mean |r| 0.34 against 0.14 for white noise in 0.5-4 Hz)."""
    eeg = np.nan_to_num(np.asarray(eeg, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    freqs = np.fft.rfftfreq(eeg.shape[-1], 1.0 / sfreq)
    upper = np.triu_indices(eeg.shape[1], 1)
    out = np.zeros((len(eeg), len(baselines.BANDS), len(upper[0])))
    for start in range(0, len(eeg), _CHUNK):
        spectrum = np.fft.rfft(eeg[start : start + _CHUNK], axis=-1)
        for b, (low, high) in enumerate(baselines.BANDS):
            part = spectrum[..., (freqs >= low) & (freqs < high)]
            cross = np.einsum("ncf,ndf->ncd", part, part.conj()).real
            scale = np.sqrt(np.einsum("ncc->nc", cross)) + _FLOOR
            r = cross / scale[:, :, None] / scale[:, None, :]
            out[start : start + _CHUNK, b] = r[:, upper[0], upper[1]]
    return np.arctanh(np.clip(out, -_MAX_R, _MAX_R)).reshape(len(eeg), -1)


def embedding(encoder_dir: Path) -> Callable[[WindowSet], np.ndarray]:
    """[N, D] windows' ``pooled`` embedding by the frozen encoder in ``encoder_dir`` (a pretraining
    or fine-tuning model folder)."""
    with quiet_transformers():  # a pretraining folder has no head: the missing-keys table is expected
        model = EEGFMModel.from_pretrained(encoder_dir).eval()

    def featurize(windows: WindowSet) -> np.ndarray:
        parts = [np.zeros((0, model.config.hidden_size))]
        with torch.no_grad():
            for start in range(0, len(windows), _BATCH):
                eeg = torch.from_numpy(windows.eeg[start : start + _BATCH])
                mask = torch.from_numpy(windows.channel_mask[start : start + _BATCH])
                parts.append(model.forward_features(eeg, channel_mask=mask).pooled.double().numpy())
        return np.concatenate(parts)

    return featurize


def readout_feature_sets(encoder_dir: Path) -> dict[str, Callable[[WindowSet], np.ndarray]]:
    """The readout's candidate featurizers by name (:data:`READOUT_FEATURES`). Each part of a
    window set's features is computed once, however many sets and calls read it."""
    compute = {
        "embedding": embedding(encoder_dir),
        "powers": lambda windows: baselines.band_power_features(windows.eeg),
        "correlations": lambda windows: band_correlation_features(windows.eeg),
    }
    cache: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}

    def part(windows: WindowSet, name: str) -> np.ndarray:
        held, found = cache.get(id(windows.eeg), (None, {}))
        if held is not windows.eeg:  # a new window set (an id can be reused once an array is freed)
            found = {}
            cache[id(windows.eeg)] = (windows.eeg, found)
        if name not in found:
            found[name] = compute[name](windows)
        return found[name]

    return {
        name: (lambda windows, names=names: np.concatenate([part(windows, n) for n in names], axis=1))
        for name, names in READOUT_FEATURES.items()
    }


def spectral_readout(encoder_dir: Path, train: WindowSet, n_classes: int, validation: WindowSet):
    """The readout (module docstring); returns ``(predict, {"features": name, "C": C})``."""
    target = baselines.targets(validation, n_classes)
    fits = {}
    for name, featurize in readout_feature_sets(encoder_dir).items():
        predict, c = baselines.feature_lr(featurize, train, n_classes, validation)
        fits[name] = (baselines.log_loss(predict(validation), target, balanced=True), predict, c)
    name = min(fits, key=lambda n: fits[n][0])  # ties: the first, the smaller set
    return fits[name][1], {"features": name, "C": fits[name][2]}


def fuse(model_probs: np.ndarray, readout_probs: np.ndarray, weight: float = FUSION_WEIGHT) -> np.ndarray:
    """[N, C] the normalised weighted geometric mean: ``weight`` on ``model_probs``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight: expected a number in [0, 1]; got {weight}")
    log_model, log_readout = (np.log(np.clip(p, _FLOOR, 1.0)) for p in (model_probs, readout_probs))
    log = weight * log_model + (1 - weight) * log_readout
    fused = np.exp(log - log.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)
