"""EEGNet (Lawhern et al. 2018, braindecode's ``EEGNetv4``) as eegfm feeds it: each window alone
resampled to 128 Hz and divided by one fixed constant. The benchmark trains it
(``evaluation.comparison.deep_baselines``); an exported model (``model.fused``) runs it the same way.

- Input: each window resampled to :data:`MODEL_SFREQ` (polyphase anti-aliasing filter along its
  time axis only) and its uV divided by :data:`SCALE_UV`: no statistic spans windows, so a held-out
  subject's windows never shape another window's input.
- Network: EEGNet-8,2 (F1 8, D 2, F2 16), a temporal kernel of half a second; its output is logits,
  computed in ``model.eegnet_factored``'s order (the same network, 3x cheaper to train on CPU).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from braindecode.models import EEGNetv4
from scipy.signal import resample_poly

from eegfm.contract.schema import SFREQ
from eegfm.model import eegnet_factored

# Preprocessed EEG has a standard deviation near 10 uV; one fixed divisor puts it near unit scale
# without any statistic of the data (a per-set mean or std would read held-out windows).
SCALE_UV = 10.0
# EEGNet was designed at 128 Hz, its temporal kernel half a second (64 samples). Halving the rate
# also makes training affordable on CPU (about 4x fewer operations than 256 Hz with a 128 kernel).
MODEL_SFREQ = 128
KERNEL_LENGTH = MODEL_SFREQ // 2


def inputs(eeg: np.ndarray, sfreq: float = SFREQ) -> torch.Tensor:
    """[N, C, T * 128 / sfreq] float32 of ``eeg`` [N, C, T] (uV): each window resampled on its own,
    its uV over the fixed :data:`SCALE_UV`."""
    ratio = Fraction(MODEL_SFREQ) / Fraction(sfreq).limit_denominator(1000)
    resampled = resample_poly(np.asarray(eeg, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return torch.from_numpy((resampled / SCALE_UV).astype(np.float32))


def build_model(n_chans: int, n_times: int, n_classes: int, drop_prob: float) -> torch.nn.Module:
    """EEGNet-8,2 as braindecode builds it, for windows of ``n_times`` samples at 128 Hz, its weights
    in channels-last memory format: the one-channel temporal convolution then runs on oneDNN's
    channels-last kernels, 1.4-2.7x faster to train on CPU with bit-identical outputs."""
    model = EEGNetv4(
        n_chans=n_chans, n_outputs=n_classes, n_times=n_times, kernel_length=KERNEL_LENGTH, drop_prob=drop_prob
    )
    return model.to(memory_format=torch.channels_last)


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Eval-mode logits: batch norm uses the training split's running statistics and each window
    is predicted on its own, whatever else is in the batch (``model.eegnet_factored``'s order)."""
    model.eval()
    return (
        torch.cat([eegnet_factored.forward(model, part) for part in x.split(batch)]) if len(x) else torch.zeros((0, 0))
    )


def probabilities(model: torch.nn.Module, eeg: np.ndarray, n_classes: int) -> np.ndarray:
    """[N, n_classes] float64 class probabilities of ``eeg`` [N, C, T] (uV at 256 Hz)."""
    if not len(eeg):
        return np.zeros((0, n_classes))
    return torch.softmax(logits_of(model, inputs(eeg)).double(), dim=-1).numpy()
