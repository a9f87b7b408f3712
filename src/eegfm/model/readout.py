"""The spatial readout: the channel tokens, weighted by where each electrode sits, into the embedding.

Channel pooling mixes the channels of each patch before the patch layers, so the mean-pooled
embedding keeps little of the montage's layout, while many EEG tasks are decided by where power
changes (frontal theta, posterior alpha): on eegmat a linear probe of the channel tokens kept per
channel beats one of the pooled embedding by 0.09 AUROC. The readout keeps that layout without
fixing the montage::

    h_c = mean over patches of channel c's tokens                  (B, C, D)
    w_c = MLP(Fourier features of electrode c's position)           (C, K): K spatial filters
    z_k = mean over channels of w_ck h_c                            (B, K, D)
    readout = Linear(K * D -> D)(z)                                  added to the pooled embedding

A spatial filter is a smooth function of scalp position, so any montage (any channel count, seen
in training or not) gets weights; with K at least the channel count the readout can give each
10-20 electrode weights of its own, as a linear model on all channels does.

With ``config.spectral_readout`` each channel's log absolute and relative band powers
(``model.band_powers.channel_band_features``) are projected to the width and added to ``h_c``.
A small labelled corpus is often decided by those powers per channel, which a regularized linear
model reads directly; the projection starts at zero, so fine-tuning starts from the pretrained
function and learns how much of them to use.
"""

from __future__ import annotations

import torch
from torch import nn

from eegfm.model.band_powers import SUMMARY_BANDS, channel_band_features
from eegfm.model.config import EEGFMConfig
from eegfm.model.embedding import fourier_features


class SpatialReadout(nn.Module):
    """Channel tokens (B, C, P, D) and positions (B or 1, C, 3) -> (B, D); with a spectral readout
    also the window (B, C, T) and its channel mask (B, C)."""

    n_frequencies = 4

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width, n_filters = config.hidden_size, config.spatial_filters
        self.filters = nn.Sequential(
            nn.Linear(3 + 6 * self.n_frequencies, width), nn.GELU(), nn.Linear(width, n_filters)
        )
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.proj = nn.Linear(n_filters * width, width)
        self.sfreq = config.sfreq
        self.spectral = nn.Linear(2 * len(SUMMARY_BANDS), width) if config.spectral_readout else None
        if self.spectral is not None:  # zero (``_init_weights`` reads the flag): the readout starts as pretrained
            self.spectral.zero_init = True
            nn.init.zeros_(self.spectral.weight)
            nn.init.zeros_(self.spectral.bias)

    def forward(
        self,
        channel_tokens: torch.Tensor,
        positions: torch.Tensor,
        eeg: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        per_channel = self.norm(channel_tokens.mean(dim=2))  # (B, C, D)
        if self.spectral is not None:
            bands = channel_band_features(eeg, self.sfreq, channel_mask).to(per_channel.dtype)
            per_channel = per_channel + self.spectral(bands)
        weights = self.filters(fourier_features(positions.to(per_channel.dtype), self.n_frequencies))
        weights = weights.expand(per_channel.shape[0], -1, -1) / per_channel.shape[1]  # (B, C, K)
        filtered = torch.einsum("bck,bcd->bkd", weights, per_channel)
        return self.proj(filtered.flatten(1))
