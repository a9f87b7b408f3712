"""Temporal self-attention over patches, with rotary (relative) position encoding.

Rotary tables are computed from the sequence length at call time, so no maximum length is baked
into the weights (a model trained on 10 s windows runs on 5-60 s ones; ONNX keeps time dynamic).

On CUDA, sequences of at most ``MATH_ATTENTION_MAX_LENGTH`` patches use SDPA's math backend: the
fused kernels tile 64+ queries, so 10-patch sequences mostly compute padding (on an H100 the
compiled base pretraining step fell from 135.5 to 119.9 ms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from eegfm.model.config import EEGFMConfig

ROPE_BASE = 10_000.0
MATH_ATTENTION_MAX_LENGTH = 16


def rotary_tables(
    length: int, dim: int, *, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (length, dim // 2) for positions 0..length-1."""
    inv_freq = ROPE_BASE ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs (i, i + dim/2) of x (..., length, dim) by position-dependent angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float, causal: bool) -> torch.Tensor:
    """``scaled_dot_product_attention`` of (N, H, L, E) tensors; short CUDA sequences take the math backend."""
    if q.is_cuda and q.shape[-2] <= MATH_ATTENTION_MAX_LENGTH:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (N, L, D), rotary positions."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], causal: bool) -> torch.Tensor:
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        out = attention(q, k, v, dropout_p=self.attention_dropout if self.training else 0.0, causal=causal)
        return self.out(out.transpose(1, 2).reshape(n, length, width))


class MLP(nn.Module):
    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        hidden = int(round(config.hidden_size * config.mlp_ratio))
        self.fc1 = nn.Linear(config.hidden_size, hidden)
        self.fc2 = nn.Linear(hidden, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer over (N, L, D) sequences (used for the patch-level stack)."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)
        self.adapter: nn.Module | None = None  # set by model.adapters.add_adapters

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], causal: bool) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), rotary, causal))
        x = x + self.mlp(self.norm2(x))
        if self.adapter is not None:
            x = self.adapter(x)
        return x
