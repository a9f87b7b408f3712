"""Band quantities of a window, in torch, from one Hann-windowed FFT of the whole window: log band
powers (the pretraining summary objective's targets and the spectral readout's inputs,
``model.readout``) and each band's spatial covariance (the covariance branch's input,
``model.covariance_branch``); every one a function of each window alone."""

from __future__ import annotations

import math

import torch

from eegfm.core.dsp.bands import BANDS, band_edges, bands_within
from eegfm.model.numerics import float32_region

# Delta to gamma, 0.5-70 Hz (core.dsp.bands.BANDS): the bands clinical EEG reads power in.
SUMMARY_BANDS: tuple[tuple[float, float], ...] = band_edges(BANDS)
# The same bands cut at 45 Hz, for the covariance branch and the benchmark's covariance readout
# (model.spectral_features.BANDS): above it eegmat's recordings (and most clinical ones) are
# low-passed and line noise sits, so a higher band measures the filter and the mains.
COVARIANCE_BANDS: tuple[tuple[float, float], ...] = band_edges(bands_within(0.5, 45.0))


def hann_spectrum(signal: torch.Tensor, sfreq: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., T) float32 -> (its Hann-windowed rfft (..., T // 2 + 1) complex, the bins' frequencies,
    the window (T,)); each channel's mean is removed first."""
    signal = signal - signal.mean(dim=-1, keepdim=True)
    n_times = signal.shape[-1]
    # torch.hann_window(n_times, periodic=False), spelled out so an exported graph keeps the
    # window's length dynamic
    k = torch.arange(n_times, device=signal.device, dtype=torch.float32)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * k / max(n_times - 1, 1))
    # rfftfreq's values; spelled out because ONNX has no rfftfreq
    freqs = torch.arange(n_times // 2 + 1, device=signal.device, dtype=torch.float32) * (sfreq / n_times)
    return torch.fft.rfft(signal * window), freqs, window


def band_masks(freqs: torch.Tensor, bands: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """(n_freqs, n_bands) float: 1 on each band's bins (low <= f < high)."""
    return torch.stack([((freqs >= lo) & (freqs < hi)).float() for lo, hi in bands], dim=1)


def log_band_powers(signal: torch.Tensor, sfreq: float, bands=SUMMARY_BANDS) -> torch.Tensor:
    """(B, C, T) -> (B, C, n_bands): log mean power in each band of a Hann-windowed periodogram of
    the whole window (float32; a function of each window alone)."""
    with float32_region(signal.device):
        spectrum, freqs, _ = hann_spectrum(signal.float(), sfreq)
        power = spectrum.abs().square()
        weights = band_masks(freqs, bands)
        return torch.log(power @ (weights / weights.sum(0).clamp_min(1.0)) + 1e-6)


def channel_band_features(signal: torch.Tensor, sfreq: float, channel_mask: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, C, 2 * n_bands): each channel's log band powers (µV²) then its log relative
    powers (band over the bands' sum), as a careful user's band-power baseline reads a window;
    zero on channels ``channel_mask`` marks absent, whose flat signal would give log(1e-6)."""
    absolute = log_band_powers(signal, sfreq)
    relative = absolute - torch.logsumexp(absolute, dim=-1, keepdim=True)
    present = (channel_mask > 0.5).unsqueeze(-1).to(absolute.dtype)
    return torch.cat([absolute, relative], dim=-1) * present


def band_covariances(
    signal: torch.Tensor, sfreq: float, bands: tuple[tuple[float, float], ...] = COVARIANCE_BANDS
) -> torch.Tensor:
    """(B, C, T) -> (B, n_bands, C, C) float32: each band's spatial covariance of the window (units
    of the signal, squared), the covariance of the window through an ideal band-pass filter.

    By Parseval the band-passed signals' covariance is the real part of the cross-spectrum summed
    over the band's bins; ``2 / (T sum(w^2))`` undoes the one-sided spectrum and the Hann window's
    energy, so a band's variance does not depend on the window's length."""
    with float32_region(signal.device):
        spectrum, freqs, window = hann_spectrum(signal.float(), sfreq)
        parts = torch.view_as_real(spectrum)  # (B, C, F, 2): real and imaginary parts
        scale = 2.0 / (signal.shape[-1] * window.square().sum())
        masks = band_masks(freqs, bands).T  # (n_bands, F)
        # (B, 1, C, F, 2) * (n_bands, 1, F, 1) -> (B, n_bands, C, 2F); Re(X Y*) = Re X Re Y + Im X Im Y
        banded = (parts.unsqueeze(1) * masks[:, None, :, None]).flatten(-2)
        return (banded @ banded.transpose(-2, -1)) * scale
