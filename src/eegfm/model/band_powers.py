"""Band quantities of a window, in torch; every one a function of each window alone.

- From one Hann-windowed FFT of the whole window: log band powers (the pretraining summary
  objective's targets and the spectral readout's inputs, ``model.readout``) and each band's
  spatial covariance (the covariance branch's input, ``model.covariance_branch``).
- By Welch's method (2 s Hann segments, as the benchmark's features, ``model.spectral_features``):
  each channel's band powers and each band's co-spectral matrix as a tangent vector, what a task
  head reads beside the embedding (:func:`head_spectral_features`, ``model.heads``). Strided
  convolutions and matrix products, so an ONNX export keeps the window length dynamic."""

from __future__ import annotations

import math

import torch

from eegfm.core.dsp.bands import BANDS, band_edges, bands_within
from eegfm.model.numerics import float32_region
from eegfm.model.spd import tangent_vectors

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


def _welch_bins(segment: int, sfreq: float, bands) -> list[int]:
    """The Fourier bins of a ``segment``-sample segment that lie inside ``bands`` (plain ints: an
    exported graph slices by them)."""
    low, high = bands[0][0], bands[-1][1]
    return [b for b in range(segment // 2 + 1) if low <= b * sfreq / segment < high]


def _welch_kernels(segment: int, sfreq: float, bands, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(2 * n_bins, 1, segment) detrended Hann-windowed cosine and sine kernels of the bins inside
    ``bands``, and the (n_bins, n_bands) masks that sum those bins per band."""
    k = torch.arange(segment, device=device, dtype=torch.float32)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * k / segment)  # periodic Hann, scipy's get_window
    bins = _welch_bins(segment, sfreq, bands)
    frequency = torch.tensor(bins, device=device, dtype=torch.float32).unsqueeze(1)
    phase = 2 * math.pi * frequency * k / segment
    kernels = torch.cat([window * torch.cos(phase), window * torch.sin(phase)])
    # Removing each segment's mean (scipy's ``detrend="constant"``) is linear: fold it into the kernels.
    kernels = kernels - kernels.mean(dim=1, keepdim=True)
    masks = band_masks(frequency.squeeze(1) * (sfreq / segment), bands)
    return kernels.unsqueeze(1), masks


def _welch_segments(signal: torch.Tensor, sfreq: float, bands) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, T) -> the Hann-windowed, mean-removed segments' Fourier parts (B, C, 2, n_bins, S)
    (cosine then sine, the bins inside ``bands``; segments that do not lie inside the signal are
    zero, and each kept one is scaled by 1 / sqrt(kept), so squares summed over segments are
    their mean), and the (n_bins, n_bands) masks that sum bins per band.

    A convolution with the bins' kernels, so an exported graph keeps the window length dynamic:
    the signal is padded by one segment and only segments that lie inside it are kept (a window
    shorter than a segment keeps its zero-padded one)."""
    batch, n_chans, n_times = signal.shape
    segment = int(round(WELCH_SEGMENT_S * sfreq))
    hop = segment // 2
    kernels, masks = _welch_kernels(segment, sfreq, bands, signal.device)
    flat = torch.nn.functional.pad(signal.float().reshape(batch * n_chans, 1, n_times), (0, segment))
    spectra = torch.nn.functional.conv1d(flat, kernels, stride=hop)  # (B * C, 2 * bins, S)
    starts = torch.arange(spectra.shape[-1], device=signal.device) * hop
    inside = (starts + segment <= n_times).float()
    inside = torch.where(inside.sum() > 0, inside, (starts == 0).float())  # shorter than a segment
    spectra = spectra * (inside / inside.sum()).sqrt()
    return spectra.reshape(batch, n_chans, 2, kernels.shape[0] // 2, -1), masks


def welch_band_features(signal: torch.Tensor, sfreq: float, channel_mask: torch.Tensor, bands=COVARIANCE_BANDS):
    """(B, C, T) -> (B, C, 2 * n_bands): each channel's log band powers by Welch's method (Hann
    segments of :data:`WELCH_SEGMENT_S`, half overlapping, each segment's mean removed: the
    segments ``model.spectral_features`` averages; its powers up to one scale), then log relative
    powers (band over the bands' sum); zero on channels ``channel_mask`` marks absent."""
    with float32_region(signal.device):
        return _powers(*_welch_segments(signal, sfreq, bands), channel_mask)


def _powers(parts: torch.Tensor, masks: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
    mean_power = parts.square().sum(dim=(2, 4))  # (B, C, bins): the segments' mean periodogram
    absolute = torch.log(mean_power @ masks + 1e-6)
    relative = absolute - torch.logsumexp(absolute, dim=-1, keepdim=True)
    present = (channel_mask > 0.5).unsqueeze(-1).to(absolute.dtype)
    return torch.cat([absolute, relative], dim=-1) * present


def welch_band_covariances(signal: torch.Tensor, sfreq: float, bands=COVARIANCE_BANDS) -> torch.Tensor:
    """(B, C, T) -> (B, n_bands, C, C): each band's co-spectral matrix by Welch's method (the real
    part of the cross-spectrum, averaged over the segments of :func:`welch_band_features` and the
    band's bins): pyRiemann's ``CoSpectra`` averaged over a band, what the benchmark's covariance
    readout reads (``model.spectral_features.band_covariances``), up to one scale."""
    with float32_region(signal.device):
        return _covariances(_welch_segments(signal, sfreq, bands)[0], sfreq, bands)


def _covariances(parts: torch.Tensor, sfreq: float, bands) -> torch.Tensor:
    segment = int(round(WELCH_SEGMENT_S * sfreq))
    frequencies = [b * sfreq / segment for b in _welch_bins(segment, sfreq, bands)]
    covariances = []
    for low, high in bands:
        kept = [i for i, f in enumerate(frequencies) if low <= f < high]  # contiguous
        if not kept:
            raise ValueError(f"bands: band {(low, high)} holds no {1 / WELCH_SEGMENT_S:g} Hz bin")
        x = parts[:, :, :, kept[0] : kept[-1] + 1].flatten(2)  # Re X Re Y + Im X Im Y, summed
        covariances.append((x @ x.transpose(-2, -1)) / len(kept))
    return torch.stack(covariances, dim=1)


def welch_tangent_features(signal: torch.Tensor, sfreq: float, channel_mask: torch.Tensor, bands=COVARIANCE_BANDS):
    """(B, C, T) -> (B, n_bands * C (C + 1) / 2): each band's shrunk co-spectral matrix
    (:func:`welch_band_covariances`, absent channels zeroed) in the log-Euclidean tangent space at
    the identity (``model.spd``: matrix products only, so it exports to ONNX). The benchmark's
    log-Euclidean readout maps at the training windows' mean instead
    (``spectral_features.log_euclidean_chart``): a fixed linear map, up to a constant."""
    with float32_region(signal.device):
        parts, _ = _welch_segments(_present(signal, channel_mask), sfreq, bands)
        return tangent_vectors(_covariances(parts, sfreq, bands)).flatten(1)


def _present(signal: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
    """The signal with absent channels zeroed, whatever they hold (NaN included)."""
    return torch.where((channel_mask > 0.5).unsqueeze(-1), signal.float(), 0.0)


def head_spectral_width(n_chans: int, powers: bool, covariances: bool, bands=COVARIANCE_BANDS) -> int:
    """How many values :func:`head_spectral_features` gives a window of ``n_chans`` channels."""
    return len(bands) * (2 * n_chans * powers + n_chans * (n_chans + 1) // 2 * covariances)


def head_spectral_features(
    signal: torch.Tensor,
    sfreq: float,
    channel_mask: torch.Tensor,
    powers: bool,
    covariances: bool,
    whitening: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, C, T) -> (B, :func:`head_spectral_width`): what a task head reads beside the embedding
    (``model.heads.TaskHead``): each channel's Welch band powers with ``powers``, then each band's
    tangent vector with ``covariances`` (at the identity, or with ``whitening`` (n_bands, C, C) at
    each band's reference point: ``model.spd.tangent_vectors``); one set of Welch segments serves both."""
    with float32_region(signal.device):
        parts, masks = _welch_segments(_present(signal, channel_mask), sfreq, COVARIANCE_BANDS)
        found = []
        if powers:
            found.append(_powers(parts, masks, channel_mask).flatten(1))
        if covariances:
            band_covariances = _covariances(parts, sfreq, COVARIANCE_BANDS)
            found.append(tangent_vectors(band_covariances, whitening=whitening).flatten(1))
        return torch.cat(found, dim=-1)
