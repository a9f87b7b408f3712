"""A CBraMod-style criss-cross transformer (Wang et al., ICLR 2025), built here from the paper, for
the labeled benchmarks' from-scratch peer rows.

The paper's design on eegfm's 1 s patches (``model.patch_transformer``):

- **patch embedding**: the convolutional embedding of each patch's samples plus a linear map of its
  magnitude spectrum (the paper's time and frequency branches, summed);
- **asymmetric conditional positions**: a depthwise 2-D convolution over the (channel x patch)
  grid, spanning every channel and 7 patches, added to the tokens; positions come from the signal
  itself, so any number of patches works;
- **criss-cross blocks**: half of the width (and heads) attends across channels within each patch
  (spatial), the other half across patches within each channel (temporal); the halves are joined
  and a feed-forward layer follows (pre-LayerNorm, residual);
- the task head reads the LayerNorm-ed mean of every token (the paper flattens the tokens for a
  fixed window; the mean takes any length).

The paper's pretraining, masked patch reconstruction, is ``CBraModForPretraining``
(``model.patch_pretraining``); the benchmarks run it on their own training windows, not on TUEG.
"""

from __future__ import annotations

import torch
from torch import nn

from eegfm.model.canonical import N_CANONICAL
from eegfm.model.embedding import spectrum_magnitude
from eegfm.model.patch_transformer import (
    PatchConvEmbedding,
    PatchTransformerConfig,
    PatchTransformerModel,
    masked_tokens,
    to_patches,
)

POSITION_KERNEL_PATCHES = 7


class CBraModConfig(PatchTransformerConfig):
    """Configuration of :class:`CBraMod` (``model_type`` ``eegfm_cbramod``); fields as in
    ``PatchTransformerConfig``. ``base`` is the paper's size (width 200, 12 blocks, 8 heads);
    ``tiny`` eegfm's ``tiny`` width and depth, the benchmark presets' size."""

    model_type = "eegfm_cbramod"
    presets = {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4),
        "base": {},
    }
    conv_channels: int = 24
    conv_kernel: int = 63  # the paper's 49 samples at 200 Hz, at 256 Hz
    conv_stride: int = 32

    def validate_fields(self) -> None:
        super().validate_fields()
        if self.num_attention_heads % 2:
            self.fail(
                "num_attention_heads",
                "an even number (half the heads spatial, half temporal)",
                self.num_attention_heads,
            )
        if self.hidden_size % 2:
            self.fail("hidden_size", "an even width (half spatial, half temporal)", self.hidden_size)
        self.check_heads_divide(self.hidden_size // 2, self.num_attention_heads // 2, "half the width")


class CrissCrossBlock(nn.Module):
    """(B, C, N, D) -> (B, C, N, D): spatial attention on one half of the width, temporal on the other."""

    def __init__(self, config: CBraModConfig) -> None:
        super().__init__()
        width, half, heads = config.hidden_size, config.hidden_size // 2, config.num_attention_heads // 2
        self.norm1 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.spatial = nn.MultiheadAttention(half, heads, dropout=config.dropout, batch_first=True)
        self.temporal = nn.MultiheadAttention(half, heads, dropout=config.dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(width, config.intermediate_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.intermediate_size, width),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, c, n, d = tokens.shape
        spatial, temporal = self.norm1(tokens).chunk(2, dim=-1)
        across_channels = spatial.transpose(1, 2).reshape(b * n, c, d // 2)
        across_channels = self.spatial(across_channels, across_channels, across_channels, need_weights=False)[0]
        across_patches = temporal.reshape(b * c, n, d // 2)
        across_patches = self.temporal(across_patches, across_patches, across_patches, need_weights=False)[0]
        attended = torch.cat(
            [across_channels.reshape(b, n, c, d // 2).transpose(1, 2), across_patches.reshape(b, c, n, d // 2)], dim=-1
        )
        tokens = tokens + self.dropout(attended)
        return tokens + self.dropout(self.feed_forward(self.norm2(tokens)))


class CBraModEncoder(nn.Module):
    """(B, 19, T) scaled EEG and (B, 19) mask -> (B, hidden_size), in whole 1 s patches; ``tokens``
    gives the (B, 19, N, hidden_size) tokens, with the patches ``hidden`` marks (B, 19, N) replaced
    by the mask token before positions (the paper's masked patch pretraining)."""

    def __init__(self, config: CBraModConfig) -> None:
        super().__init__()
        width, size = config.hidden_size, config.patch_size
        self.patch_size = size
        self.time = PatchConvEmbedding(config)
        self.spectrum = nn.Linear(size // 2 + 1, width)
        self.interpolated = nn.Parameter(torch.zeros(width))
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.positions = nn.Conv2d(
            width,
            width,
            (N_CANONICAL, POSITION_KERNEL_PATCHES),
            padding=(N_CANONICAL // 2, POSITION_KERNEL_PATCHES // 2),
            groups=width,
        )
        self.blocks = nn.ModuleList(CrissCrossBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def embeddings(self) -> list[nn.Parameter]:
        return [self.interpolated, self.mask_token]

    def forward(self, eeg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tokens(eeg, mask).mean(dim=(1, 2)))

    def tokens(self, eeg: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        patches = to_patches(eeg, self.patch_size)
        magnitude = spectrum_magnitude(patches).to(patches.dtype)
        tokens = masked_tokens(self.time(patches) + self.spectrum(magnitude), hidden, self.mask_token)
        tokens = tokens + (1.0 - mask)[:, :, None, None] * self.interpolated
        tokens = tokens + self.positions(tokens.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens


class CBraMod(PatchTransformerModel):
    """The CBraMod-style encoder with one task head (``model.architectures``: ``cbramod``)."""

    config_class = CBraModConfig
    base_model_prefix = "cbramod"
    encoder_class = CBraModEncoder
