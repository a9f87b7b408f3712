"""Channel tokens: each channel's 1 s patches embedded, plus where on the head the channel sits.

A token is ``LayerNorm(raw(patch) + spectrum(patch) [+ masked(sample_mask)]) + electrode(xyz)
[+ interpolated]``. The spectrum is a product with a fixed real DFT basis rather than ``torch.fft``,
so the ONNX graph is plain MatMuls; ``masked`` flags samples hidden by pretraining; the electrode
MLP of Fourier features embeds any 10-10 position, seen in training or not; ``interpolated`` is
added to channels with ``channel_mask == 0``, which carry no measurement of their own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eegfm.model.config import EEGFMConfig
from eegfm.model.numerics import float32_region, tie_unused


def real_dft_basis(n: int, *, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine bases (n, n // 2 + 1): ``x @ cos`` and ``x @ sin`` give ``rfft(x)``."""
    t = torch.arange(n, device=device, dtype=torch.float32)
    k = torch.arange(n // 2 + 1, device=device, dtype=torch.float32)
    angle = (2.0 * math.pi / n) * torch.outer(t, k)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def spectrum_magnitude(patches: torch.Tensor) -> torch.Tensor:
    """|rfft| of the last axis, (..., n) -> (..., n // 2 + 1), in float32: in float16 the squared DFT
    sums overflow (a 2 mV patch's DC term squared is 2.6e7 > 65504) and bfloat16 keeps ~3 digits of
    a 256-term sum; the 1e-12 under the root keeps the gradient of an all-zero patch finite."""
    with float32_region(patches.device):
        patches = patches.float()
        cos, sin = real_dft_basis(patches.shape[-1], device=patches.device, dtype=torch.float32)
        return torch.sqrt((patches @ cos).square() + (patches @ sin).square() + 1e-12)


def fourier_features(positions: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """[xyz, sin(2^k pi xyz), cos(2^k pi xyz)] for k < n_frequencies; (..., 3 + 6 n_frequencies)."""
    scales = math.pi * 2.0 ** torch.arange(n_frequencies, device=positions.device, dtype=positions.dtype)
    angles = (positions.unsqueeze(-1) * scales).flatten(-2)
    return torch.cat([positions, angles.sin(), angles.cos()], dim=-1)


class PatchEmbedding(nn.Module):
    """(B, C, n_patches, patch_size) scaled samples -> (B, C, n_patches, hidden_size)."""

    def __init__(self, config: EEGFMConfig, *, sample_mask_input: bool = True) -> None:
        super().__init__()
        size, width = config.patch_size, config.hidden_size
        self.patch_size = size
        self.raw = nn.Linear(size, width)
        self.spectrum = nn.Linear(size // 2 + 1, width) if config.spectral_patch_features else None
        # Bias-free so that "no mask given" and "nothing masked" are the same input.
        self.masked = nn.Linear(size, width, bias=False) if sample_mask_input else None
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def log_spectrum(self, patches: torch.Tensor) -> torch.Tensor:
        """log(1 + |rfft(patch)|) in float32 (:func:`spectrum_magnitude`)."""
        return torch.log1p(spectrum_magnitude(patches))

    def forward(self, patches: torch.Tensor, sample_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.raw(patches)
        if self.spectrum is not None:
            tokens = tokens + self.spectrum(self.log_spectrum(patches).to(patches.dtype))
        if self.masked is not None:
            if sample_mask is not None:
                tokens = tokens + self.masked(sample_mask)
            else:  # only masked pretraining feeds it; a zero tie-in keeps DDP's gradients complete
                tokens = tie_unused(tokens, self.masked)
        return self.norm(tokens)


class ElectrodeEmbedding(nn.Module):
    """(B or 1, C, 3) unit-sphere positions -> (B or 1, C, hidden_size)."""

    n_frequencies = 4

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.mlp = nn.Sequential(nn.Linear(3 + 6 * self.n_frequencies, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.mlp(fourier_features(positions, self.n_frequencies))


class ChannelTokenizer(nn.Module):
    """EEG (B, C, T) microvolts -> tokens (B, C, T // patch_size, hidden_size); a trailing partial
    patch is dropped, from ``sample_mask`` (1 where pretraining hid the sample) too."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.scale = 1.0 / config.input_scale_uv
        self.patches = PatchEmbedding(config)
        self.electrodes = ElectrodeEmbedding(config)
        self.interpolated = nn.Parameter(torch.zeros(config.hidden_size))

    def to_patches(self, signal: torch.Tensor) -> torch.Tensor:
        n_patches = signal.shape[-1] // self.patch_size
        signal = signal[..., : n_patches * self.patch_size]
        return signal.reshape(*signal.shape[:-1], n_patches, self.patch_size)

    def forward(
        self,
        eeg: torch.Tensor,
        positions: torch.Tensor,
        channel_mask: torch.Tensor,
        sample_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        patches = self.to_patches(eeg * self.scale)
        mask_patches = None if sample_mask is None else self.to_patches(sample_mask.to(eeg.dtype))
        tokens = self.patches(patches, mask_patches)
        channel = self.electrodes(positions)  # (B or 1, C, D)
        channel = channel + (1.0 - channel_mask).unsqueeze(-1) * self.interpolated
        return tokens + channel.unsqueeze(2)
