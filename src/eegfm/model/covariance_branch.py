"""The covariance branch: each band's spatial covariance of the window, in a tangent space, into
the embedding.

On eegmat and on a simulated group study (whose groups differ by a delta source coherent across
many channels) a logistic regression on each band's channel covariances in pyRiemann's tangent
space reads what the network alone misses; the branch gives the network those features itself::

    S_b = band_covariances(eeg / input_scale_uv)                     (B, bands, C, C)
    w_f = MLP(Fourier features of the electrode positions)           (B, C, F): F virtual channels
    P_b = W^T S_b W                                                   the virtual channels' covariance
    v_b = upper_triangle(log(shrink(P_b)))                            (B, bands, F (F + 1) / 2)
    branch = Linear(bands * F (F + 1) / 2 -> D)(v)                    added to the pooled embedding

The virtual channels are smooth functions of scalp position (as the spatial readout's filters,
``model.readout``), so any montage gets them and the branch's width does not depend on the channel
count. Channels ``channel_mask`` marks absent get weight 0 (an interpolated channel repeats its
neighbours), and each virtual channel's weights have unit norm over the rest, so its power is on
the scale of one electrode's whatever the montage's density. Shrinkage keeps ``P_b`` positive
definite when fewer channels are measured than there are virtual ones, and bounds its condition
number so the matrix-product logarithm (``model.spd``) converges. The logarithm is the
log-Euclidean tangent space (the metric that read eegmat best); the reference point is the final
Linear's bias. That Linear starts at zero, so a model with the branch starts as the one without.
"""

from __future__ import annotations

import torch
from torch import nn

from eegfm.model.band_powers import COVARIANCE_BANDS, band_covariances
from eegfm.model.config import EEGFMConfig
from eegfm.model.embedding import fourier_features
from eegfm.model.numerics import float32_region
from eegfm.model.spd import tangent_vectors

_NORM_FLOOR = 1e-6  # a virtual channel with no measured channel under it keeps finite weights


class CovarianceBranch(nn.Module):
    """EEG (B, C, T) µV, positions (B or 1, C, 3) and channel mask (B, C) -> (B, D)."""

    n_frequencies = 4

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width, n_virtual = config.hidden_size, config.covariance_channels
        self.filters = nn.Sequential(
            nn.Linear(3 + 6 * self.n_frequencies, width), nn.GELU(), nn.Linear(width, n_virtual)
        )
        n_features = len(COVARIANCE_BANDS) * n_virtual * (n_virtual + 1) // 2
        self.proj = nn.Linear(n_features, width)
        self.proj.zero_init = True  # ``_init_weights`` reads the flag: the branch starts silent
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.sfreq = config.sfreq
        self.input_scale_uv = config.input_scale_uv

    def virtual_weights(self, positions: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        """(B, C, F) weights of the virtual channels: zero on absent channels, unit norm over each
        virtual channel's present ones."""
        features = fourier_features(positions.to(self.proj.weight.dtype), self.n_frequencies)
        weights = self.filters(features).float() * (channel_mask > 0.5).unsqueeze(-1).float()
        return weights / (weights.square().sum(dim=1, keepdim=True) + _NORM_FLOOR**2).sqrt()

    def forward(self, eeg: torch.Tensor, positions: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        # float32 throughout: the logarithm's iteration counts are chosen for float32 rounding
        with float32_region(eeg.device):
            covariances = band_covariances(eeg.float() / self.input_scale_uv, self.sfreq)  # (B, bands, C, C)
            weights = self.virtual_weights(positions, channel_mask).unsqueeze(1)  # (B, 1, C, F)
            virtual = weights.transpose(-2, -1) @ covariances @ weights  # (B, bands, F, F)
            features = tangent_vectors(virtual).flatten(1)
            return self.proj(features.to(self.proj.weight.dtype))
