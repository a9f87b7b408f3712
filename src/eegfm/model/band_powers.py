"""Log band powers of a window, in torch: the pretraining summary objective's targets and the
spectral readout's inputs (``model.readout``), one function of each window alone."""

from __future__ import annotations

import math

import torch

from eegfm.core.dsp.bands import BANDS, band_edges
from eegfm.model.numerics import float32_region

# Delta to gamma, 0.5-70 Hz (core.dsp.bands.BANDS): the bands clinical EEG reads power in.
SUMMARY_BANDS: tuple[tuple[float, float], ...] = band_edges(BANDS)


def log_band_powers(signal: torch.Tensor, sfreq: float, bands=SUMMARY_BANDS) -> torch.Tensor:
    """(B, C, T) -> (B, C, n_bands): log mean power in each band of a Hann-windowed periodogram of
    the whole window (float32; a function of each window alone)."""
    with float32_region(signal.device):
        signal = signal.float() - signal.float().mean(dim=-1, keepdim=True)
        n_times = signal.shape[-1]
        # torch.hann_window(n_times, periodic=False), spelled out so an exported graph keeps the
        # window's length dynamic
        k = torch.arange(n_times, device=signal.device, dtype=torch.float32)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * k / max(n_times - 1, 1))
        power = torch.fft.rfft(signal * window).abs().square()
        # rfftfreq's values; spelled out because ONNX has no rfftfreq
        freqs = torch.arange(n_times // 2 + 1, device=signal.device, dtype=torch.float32) * (sfreq / n_times)
        weights = torch.stack([((freqs >= lo) & (freqs < hi)).float() for lo, hi in bands], dim=1)
        return torch.log(power @ (weights / weights.sum(0).clamp_min(1.0)) + 1e-6)


def channel_band_features(signal: torch.Tensor, sfreq: float, channel_mask: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, C, 2 * n_bands): each channel's log band powers (µV²) then its log relative
    powers (band over the bands' sum), as a careful user's band-power baseline reads a window;
    zero on channels ``channel_mask`` marks absent, whose flat signal would give log(1e-6)."""
    absolute = log_band_powers(signal, sfreq)
    relative = absolute - torch.logsumexp(absolute, dim=-1, keepdim=True)
    present = (channel_mask > 0.5).unsqueeze(-1).to(absolute.dtype)
    return torch.cat([absolute, relative], dim=-1) * present
