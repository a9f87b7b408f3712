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


WELCH_SEGMENT_S = 2.0  # the benchmark's band powers' segments (model.spectral_features.SEGMENT_S)


def _welch_kernels(segment: int, sfreq: float, bands, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(2 * n_bins, 1, segment) detrended Hann-windowed cosine and sine kernels of the bins inside
    ``bands``, and the (n_bins, n_bands) masks that sum those bins per band."""
    k = torch.arange(segment, device=device, dtype=torch.float32)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * k / segment)  # periodic Hann, scipy's get_window
    low, high = bands[0][0], bands[-1][1]
    bins = [b for b in range(segment // 2 + 1) if low <= b * sfreq / segment < high]
    frequency = torch.tensor(bins, device=device, dtype=torch.float32).unsqueeze(1)
    phase = 2 * math.pi * frequency * k / segment
    kernels = torch.cat([window * torch.cos(phase), window * torch.sin(phase)])
    # Removing each segment's mean (scipy's ``detrend="constant"``) is linear: fold it into the kernels.
    kernels = kernels - kernels.mean(dim=1, keepdim=True)
    masks = band_masks(frequency.squeeze(1) * (sfreq / segment), bands)
    return kernels.unsqueeze(1), masks


def welch_band_features(signal: torch.Tensor, sfreq: float, channel_mask: torch.Tensor, bands=COVARIANCE_BANDS):
    """(B, C, T) -> (B, C, 2 * n_bands): each channel's log band powers by Welch's method (Hann
    segments of :data:`WELCH_SEGMENT_S`, half overlapping, each segment's mean removed: the
    segments ``model.spectral_features`` averages; its powers up to one scale), then log relative
    powers (band over the bands' sum); zero on channels ``channel_mask`` marks absent.

    A convolution with the bins' kernels, so an exported graph keeps the window length dynamic:
    the signal is padded by one segment and only segments that lie inside it are averaged (a
    window shorter than a segment gets its zero-padded one)."""
    with float32_region(signal.device):
        batch, n_chans, n_times = signal.shape
        segment = int(round(WELCH_SEGMENT_S * sfreq))
        hop = segment // 2
        kernels, masks = _welch_kernels(segment, sfreq, bands, signal.device)
        flat = torch.nn.functional.pad(signal.float().reshape(batch * n_chans, 1, n_times), (0, segment))
        spectra = torch.nn.functional.conv1d(flat, kernels, stride=hop)  # (B * C, 2 * bins, S)
        n_bins = kernels.shape[0] // 2
        power = spectra[:, :n_bins].square() + spectra[:, n_bins:].square()
        starts = torch.arange(power.shape[-1], device=signal.device) * hop
        inside = (starts + segment <= n_times).float()
        inside = torch.where(inside.sum() > 0, inside, (starts == 0).float())  # shorter than a segment
        mean_power = (power * inside).sum(-1) / inside.sum()  # (B * C, bins)
        absolute = torch.log(mean_power @ masks + 1e-6).reshape(batch, n_chans, -1)
        relative = absolute - torch.logsumexp(absolute, dim=-1, keepdim=True)
        present = (channel_mask > 0.5).unsqueeze(-1).to(absolute.dtype)
        return torch.cat([absolute, relative], dim=-1) * present
