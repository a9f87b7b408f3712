"""The ways clinical EEG gets worse that ``eegfm-robustness`` scores a model under: white noise by
SNR, amplifier gain, lost electrodes and mains interference, each at increasing severity."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from eegfm.contract.schema import SFREQ


# Each takes (eeg (B, C, T) µV, channel_mask (B, C), severity, generator) and returns new tensors.
def add_noise(eeg: torch.Tensor, mask: torch.Tensor, snr_db: float, generator: torch.Generator):
    """White noise whose power is ``snr_db`` below each window's channel's own."""
    rms = eeg.float().pow(2).mean(-1, keepdim=True).sqrt()
    noise = torch.randn(eeg.shape, generator=generator).to(eeg.device)
    return eeg + noise * rms * 10 ** (-snr_db / 20), mask


def scale_gain(eeg: torch.Tensor, mask: torch.Tensor, factor: float, generator: torch.Generator):
    return eeg * factor, mask


def drop_electrodes(eeg: torch.Tensor, mask: torch.Tensor, count: float, generator: torch.Generator):
    """``count`` random measured channels per window (or all measured ones) zeroed and marked missing."""
    measured = mask > 0.5
    scores = torch.rand(mask.shape, generator=generator).to(mask.device)
    scores = torch.where(measured, scores, torch.full_like(scores, -1.0))  # measured ones first
    k = min(int(count), mask.shape[1])
    chosen = torch.zeros_like(measured)
    chosen.scatter_(1, scores.topk(k, dim=1).indices, True)
    chosen &= measured
    return eeg.masked_fill(chosen[..., None], 0.0), mask.masked_fill(chosen, 0.0)


def add_mains(eeg: torch.Tensor, mask: torch.Tensor, ratio: float, generator: torch.Generator, freq: float = 50.0):
    """A ``freq`` Hz sinusoid of ``ratio`` times each channel's RMS (in amplitude), random phase."""
    rms = eeg.float().pow(2).mean(-1, keepdim=True).sqrt()
    phase = torch.rand(eeg.shape[:2] + (1,), generator=generator).to(eeg.device) * 2 * math.pi
    t = torch.arange(eeg.shape[-1], device=eeg.device) / SFREQ
    return eeg + ratio * rms * math.sqrt(2) * torch.sin(2 * math.pi * freq * t + phase), mask


@dataclasses.dataclass(frozen=True)
class Perturbation:
    name: str
    apply: Callable
    severities: tuple[float, ...]
    unit: str  # the x axis


PERTURBATIONS = (
    Perturbation("noise", add_noise, (20.0, 10.0, 5.0, 0.0), "signal-to-noise ratio (dB)"),
    Perturbation("gain", scale_gain, (0.5, 0.8, 1.25, 2.0), "gain factor"),
    Perturbation("electrodes", drop_electrodes, (1, 3, 6, 10), "channels lost per window (of 19)"),
    Perturbation("mains", add_mains, (0.25, 0.5, 1.0, 2.0), "mains amplitude / channel RMS"),
)


def generator_of(seed: int, perturbation: int, severity: int, batch: int) -> torch.Generator:
    """The draws of one (perturbation, severity) on one batch: the same for the same ``seed``."""
    return torch.Generator().manual_seed(((seed * 1000 + perturbation) * 1000 + severity) * 1_000_003 + batch)
