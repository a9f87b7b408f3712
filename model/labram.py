"""A LaBraM-style patch transformer (Jiang et al., ICLR 2024), built here from the paper, for the
labeled benchmarks' from-scratch peer rows.

The paper's design on eegfm's 1 s patches (``model.patch_transformer``):

- **temporal encoder**: the convolutional embedding of each patch's samples;
- **spatial and temporal embeddings**: a learned vector per electrode (the 19 canonical ones) and
  per patch index, added to each token;
- **one transformer over all (channel x patch) tokens** behind a class token (pre-LayerNorm
  blocks);
- the task head reads the LayerNorm-ed mean of the patch tokens, as the paper's classifier does.

At most ``max_patches`` patches a window (the temporal embedding's length). Built from scratch;
the paper's own pretraining (a vector-quantized neural tokenizer, then masked code prediction) is
not run.
"""

from __future__ import annotations

import torch
from torch import nn

from eegfm.model.canonical import N_CANONICAL
from eegfm.model.patch_transformer import (
    PatchConvEmbedding,
    PatchTransformerConfig,
    PatchTransformerModel,
    to_patches,
)


class LaBraMConfig(PatchTransformerConfig):
    """Configuration of :class:`LaBraM` (``model_type`` ``eegfm_labram``); fields as in
    ``PatchTransformerConfig``, plus ``max_patches``. ``base`` is the paper's LaBraM-base (width
    200, 12 blocks, 10 heads); ``tiny`` eegfm's ``tiny`` width and depth, the benchmark presets' size."""

    model_type = "eegfm_labram"
    presets = {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4),
        "base": {},
    }
    num_attention_heads: int = 10
    max_patches: int = 64

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_heads_divide(self.hidden_size, self.num_attention_heads, "hidden_size")
        self.check_int("max_patches", self.max_patches, 1, 4096)


class LaBraMEncoder(nn.Module):
    """(B, 19, T) scaled EEG and (B, 19) mask -> (B, hidden_size), in whole 1 s patches."""

    def __init__(self, config: LaBraMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.patch_size = config.patch_size
        self.max_patches = config.max_patches
        self.temporal_encoder = PatchConvEmbedding(config)
        self.electrode = nn.Parameter(torch.zeros(N_CANONICAL, width))
        self.patch_index = nn.Parameter(torch.zeros(config.max_patches, width))
        self.interpolated = nn.Parameter(torch.zeros(width))
        self.class_token = nn.Parameter(torch.zeros(width))
        layer = nn.TransformerEncoderLayer(
            width,
            config.num_attention_heads,
            config.intermediate_size,
            config.dropout,
            activation="gelu",
            layer_norm_eps=config.layer_norm_eps,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.num_hidden_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def embeddings(self) -> list[nn.Parameter]:
        return [self.electrode, self.patch_index, self.interpolated, self.class_token]

    def forward(self, eeg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        patches = to_patches(eeg, self.patch_size)
        b, c, n, _ = patches.shape
        if n > self.max_patches:
            raise ValueError(f"eeg: at most max_patches={self.max_patches} patches a window; got {n}")
        tokens = self.temporal_encoder(patches) + self.electrode[:, None, :] + self.patch_index[:n]
        tokens = tokens + (1.0 - mask)[:, :, None, None] * self.interpolated
        sequence = torch.cat([self.class_token.expand(b, 1, -1), tokens.reshape(b, c * n, -1)], dim=1)
        return self.norm(self.transformer(sequence)[:, 1:].mean(dim=1))


class LaBraM(PatchTransformerModel):
    """The LaBraM-style encoder with one task head (``model.architectures``: ``labram``)."""

    config_class = LaBraMConfig
    base_model_prefix = "labram"
    encoder_class = LaBraMEncoder
