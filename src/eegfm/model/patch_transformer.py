"""What the peer EEG transformers (``model.cbramod``, ``model.labram``) share: 1 s patches of the 19
canonical channels, a convolutional patch embedding, the config fields and the classifier shell.

Both peers read each channel's EEG in 1 s patches (256 samples at 256 Hz; their papers use 1 s at
200 Hz) and embed every patch with a small stack of 1-D convolutions (GroupNorm, GELU), as both
papers do; they differ in how the (channel x patch) tokens attend to one another. They are built
here from the papers so that fine-tuning trains them by eegfm's own recipe (its loader, loss,
schedule, checkpoint choice and calibration) from random weights, beside eegfm's own architecture.

Input: ``eeg`` (B, 19, T) µV in the data contract's canonical channel order, T >= ``patch_size``
(trailing samples short of a whole patch are not read), and ``channel_mask`` (B, 19), 1 measured,
0 interpolated; ``positions`` must be omitted or the canonical ones. A learned vector is added to
the tokens of interpolated channels, as eegfm does, so a model knows which signals carry no
measurement of their own.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import initialization as init

from eegfm.model.canonical import CanonicalEEGConfig, CanonicalEEGModel


class PatchTransformerConfig(CanonicalEEGConfig):
    """The peers' shared fields. ``hidden_size``: token width; ``num_hidden_layers`` /
    ``num_attention_heads``: transformer depth and heads; ``intermediate_ratio``: feed-forward width
    over ``hidden_size``; ``dropout``: after attention and feed-forward; ``conv_channels`` /
    ``conv_kernel`` / ``conv_stride``: the first convolution of the patch embedding (two 3-tap
    convolutions of the same width follow); ``mask_ratio``: the share of (channel x patch) tokens
    masked patch pretraining hides (``model.patch_pretraining``); ``input_scale_uv`` as in
    ``CanonicalEEGConfig``.
    ``patch_size`` is 256 (1 s): code that asks every model trims inputs to whole patches."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    hidden_size: int = 200
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    intermediate_ratio: float = 4.0
    dropout: float = 0.1
    conv_channels: int = 8
    conv_kernel: int = 15
    conv_stride: int = 8
    patch_size: int = 256
    mask_ratio: float = 0.5

    @property
    def intermediate_size(self) -> int:
        return max(1, round(self.intermediate_ratio * self.hidden_size))

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_int("hidden_size", self.hidden_size, 8, 4096)
        self.check_int("num_hidden_layers", self.num_hidden_layers, 1, 64)
        self.check_int("num_attention_heads", self.num_attention_heads, 1, 64)
        self.check_number("intermediate_ratio", self.intermediate_ratio, 0.25, 16.0)
        self.check_number("dropout", self.dropout, 0.0, 1.0)
        self.check_int("patch_size", self.patch_size, 16, 4096)
        self.check_int("conv_channels", self.conv_channels, 4, 512)
        if self.conv_channels % 4:
            self.fail("conv_channels", "a multiple of 4 (GroupNorm's 4 channels a group)", self.conv_channels)
        self.check_int("conv_kernel", self.conv_kernel, 1, self.patch_size)
        self.check_int("conv_stride", self.conv_stride, 1, self.patch_size)
        self.check_number("mask_ratio", self.mask_ratio, 0.05, 0.95)

    def check_heads_divide(self, width: int, heads: int, what: str) -> None:
        if width % heads:
            self.fail("num_attention_heads", f"a divisor of {what} ({width})", self.num_attention_heads)


def masked_tokens(tokens: torch.Tensor, hidden: torch.Tensor | None, mask_token: torch.Tensor) -> torch.Tensor:
    """(B, C, N, D) tokens with those ``hidden`` marks ((B, C, N) bool; None: none) replaced by ``mask_token``."""
    if hidden is None:
        return tokens
    return torch.where(hidden.unsqueeze(-1), mask_token.to(tokens.dtype), tokens)


def to_patches(eeg: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, T) -> (B, C, T // size, size): whole patches; a shorter remainder is not read."""
    n_patches = eeg.shape[-1] // size
    return eeg[..., : n_patches * size].unflatten(-1, (n_patches, size))


class PatchConvEmbedding(nn.Module):
    """(..., patch_size) samples -> (..., hidden_size): a strided convolution and two 3-tap ones
    (GroupNorm, GELU each) over the patch's samples, flattened and projected to the width."""

    def __init__(self, config: PatchTransformerConfig) -> None:
        super().__init__()
        channels, kernel, stride = config.conv_channels, config.conv_kernel, config.conv_stride
        groups = channels // 4
        self.convs = nn.Sequential(
            nn.Conv1d(1, channels, kernel, stride, kernel // 2),
            nn.GroupNorm(groups, channels),
            nn.GELU(),
            nn.Conv1d(channels, channels, 3, 1, 1),
            nn.GroupNorm(groups, channels),
            nn.GELU(),
            nn.Conv1d(channels, channels, 3, 1, 1),
            nn.GroupNorm(groups, channels),
            nn.GELU(),
        )
        n_out = (config.patch_size + 2 * (kernel // 2) - kernel) // stride + 1
        self.proj = nn.Linear(channels * n_out, config.hidden_size)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        lead, size = patches.shape[:-1], patches.shape[-1]
        features = self.convs(patches.reshape(-1, 1, size)).flatten(1)
        return self.proj(features).reshape(*lead, -1)


class PatchTransformerModel(CanonicalEEGModel):
    """A peer encoder (``encoder_class``: (B, 19, T) scaled EEG and (B, 19) mask -> (B, hidden_size),
    reading whole patches: :func:`to_patches`) with one task head."""

    config: PatchTransformerConfig

    @property
    def min_times(self) -> int:
        return self.config.patch_size

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_patch_transformer(module, self.config.initializer_range, self.encoder_class)


def init_patch_transformer(module: nn.Module, std: float, encoder_class: type[nn.Module]) -> None:
    """One module's initial weights in a peer model (``_init_weights``, for the classifier and its
    pretraining model alike): Kaiming convolutions, truncated-normal linear layers and encoder
    embeddings (``embeddings()``), unit norms, and a block's ``layer_scales()`` at its ``layer_scale_init``."""
    if isinstance(module, nn.Conv1d):
        init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, encoder_class):
        for parameter in module.embeddings():
            init.trunc_normal_(parameter, std=std)
    elif hasattr(module, "layer_scales"):
        for parameter in module.layer_scales():
            init.constant_(parameter, module.layer_scale_init)
