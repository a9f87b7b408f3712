"""A LaBraM-style patch transformer (Jiang et al., ICLR 2024), built here from the paper, for the
labeled benchmarks' from-scratch peer rows.

The paper's design on eegfm's 1 s patches (``model.patch_transformer``):

- **temporal encoder**: the convolutional embedding of each patch's samples;
- **spatial and temporal embeddings**: a learned vector per electrode (the 19 canonical ones) and
  per patch index, added to each token;
- **one transformer over all (channel x patch) tokens** behind a class token; its blocks are the
  paper's: pre-LayerNorm attention and feed-forward, each scaled by a learned per-channel layer
  scale (``layer_scale_init``, 0.1), and LayerNorm on each head's queries and keys;
- the task head reads the LayerNorm-ed mean of the patch tokens, as the paper's classifier does.

At most ``max_patches`` patches a window (the temporal embedding's length). The paper pretrains
with a vector-quantized neural tokenizer, then masked code prediction; ``LaBraMForPretraining``
(``model.patch_pretraining``) predicts the masked patches' spectra directly, without the tokenizer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eegfm.model.canonical import N_CANONICAL
from eegfm.model.patch_transformer import (
    PatchConvEmbedding,
    PatchTransformerConfig,
    PatchTransformerModel,
    masked_tokens,
    to_patches,
)


class LaBraMConfig(PatchTransformerConfig):
    """Configuration of :class:`LaBraM` (``model_type`` ``eegfm_labram``); fields as in
    ``PatchTransformerConfig``, plus ``max_patches`` and ``layer_scale_init`` (the blocks' layer
    scales start there). ``base`` is the paper's LaBraM-base (width
    200, 12 blocks, 10 heads); ``tiny`` eegfm's ``tiny`` width and depth, the benchmark presets' size."""

    model_type = "eegfm_labram"
    presets = {
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4),
        "base": {},
    }
    num_attention_heads: int = 10
    max_patches: int = 64
    layer_scale_init: float = 0.1

    def validate_fields(self) -> None:
        super().validate_fields()
        self.check_heads_divide(self.hidden_size, self.num_attention_heads, "hidden_size")
        self.check_int("max_patches", self.max_patches, 1, 4096)
        self.check_number("layer_scale_init", self.layer_scale_init, 1e-6, 10.0)


class LaBraMBlock(nn.Module):
    """(B, L, D) -> (B, L, D): x + g1 * attention(LN(x)), then x + g2 * feed-forward(LN(x)), with
    LayerNorm on each head's queries and keys; g1, g2 are per-channel layer scales."""

    def __init__(self, config: LaBraMConfig) -> None:
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.head_dim = width // self.heads
        self.dropout = config.dropout
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=eps)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=eps)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(width, config.intermediate_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.intermediate_size, width),
        )
        self.layer_scale_init = config.layer_scale_init
        self.scale_attention = nn.Parameter(torch.full((width,), config.layer_scale_init))
        self.scale_feed_forward = nn.Parameter(torch.full((width,), config.layer_scale_init))
        self.drop = nn.Dropout(config.dropout)

    def layer_scales(self) -> list[nn.Parameter]:
        return [self.scale_attention, self.scale_feed_forward]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v, dropout_p=dropout)
        x = x + self.drop(self.scale_attention * self.proj(attended.transpose(1, 2).reshape(b, length, width)))
        return x + self.drop(self.scale_feed_forward * self.feed_forward(self.norm2(x)))


class LaBraMEncoder(nn.Module):
    """(B, 19, T) scaled EEG and (B, 19) mask -> (B, hidden_size), in whole 1 s patches; ``tokens``
    gives the (B, 19, N, hidden_size) patch tokens, with the patches ``hidden`` marks (B, 19, N)
    replaced by the mask token before the embeddings are added (the paper's masked modeling)."""

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
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(LaBraMBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def embeddings(self) -> list[nn.Parameter]:
        return [self.electrode, self.patch_index, self.interpolated, self.class_token, self.mask_token]

    def forward(self, eeg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tokens(eeg, mask).mean(dim=(1, 2)))

    def tokens(self, eeg: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        patches = to_patches(eeg, self.patch_size)
        b, c, n, _ = patches.shape
        if n > self.max_patches:
            raise ValueError(f"eeg: at most max_patches={self.max_patches} patches a window; got {n}")
        tokens = masked_tokens(self.temporal_encoder(patches), hidden, self.mask_token)
        tokens = tokens + self.electrode[:, None, :] + self.patch_index[:n]
        tokens = tokens + (1.0 - mask)[:, :, None, None] * self.interpolated
        sequence = torch.cat([self.class_token.expand(b, 1, -1), tokens.reshape(b, c * n, -1)], dim=1)
        for block in self.blocks:
            sequence = block(sequence)
        return sequence[:, 1:].reshape(b, c, n, -1)


class LaBraM(PatchTransformerModel):
    """The LaBraM-style encoder with one task head (``model.architectures``: ``labram``)."""

    config_class = LaBraMConfig
    config: LaBraMConfig
    base_model_prefix = "labram"
    encoder_class = LaBraMEncoder
