"""The encoder's attention for one forward pass, read by forward hooks without changing the output.

Three kinds of attention in the encoder (``model.encoder``) are data dependent, and each is
recomputed from the inputs its module received, by the module's own layers, so the model's
numerics are untouched (``scaled_dot_product_attention`` never materialises its weights):

- ``channel_pool`` (B, C, P): the softmax weighting of the channels in each patch that pools the
  channel tokens into patch tokens (``ChannelPool``; mean over its heads): where across the head
  the model looks, second by second. The most direct attention over channels and patches.
- ``temporal`` (B, C, P): the attention each patch *receives* from the other patches of its own
  channel in the spatio-temporal blocks (softmax(QK^T / sqrt(d)) with the rotary positions and the
  causal mask as in ``SelfAttention``; mean over heads, queries and blocks).
- ``patch`` (B, P): the attention each patch receives in the patch-level transformer layers.

Not shown: the electrode graph's edge weights (``SpatialGNNLayer.edge_weights``) depend on the
montage geometry and which channels were interpolated only, not on the EEG, so they explain no
window; the fusion gates weigh whole modalities, not channels. Attention is not attribution: it
says what was mixed, not what changed the logit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from eegfm.model.encoder import ChannelPool, SpatioTemporalBlock
from eegfm.model.temporal import SelfAttention, TransformerLayer, apply_rotary


def attention_probabilities(
    module: SelfAttention, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], causal: bool
) -> torch.Tensor:
    """(N, heads, L, L) weights ``module`` applied to (N, L, D) ``x``: its projections and rotary
    positions, SDPA's default scale 1/sqrt(head_dim) and causal mask."""
    n, length, _ = x.shape
    q, k, _ = module.qkv(x).view(n, length, 3, module.n_heads, module.head_dim).permute(2, 0, 3, 1, 4)
    q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
    scores = (q @ k.transpose(-1, -2)) * module.head_dim**-0.5
    if causal:
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.float().softmax(dim=-1)


class AttentionRecorder:
    """Forward hooks on a model's channel pool and self-attention modules; ``maps()`` after one
    forward pass gives the maps of the module docstring (only those the model has)."""

    def __init__(self, model: nn.Module) -> None:
        self.pool: list[torch.Tensor] = []
        self.temporal: list[torch.Tensor] = []
        self.patch: list[torch.Tensor] = []
        self._handles = []
        for module in model.modules():
            if isinstance(module, ChannelPool):
                self._handles.append(module.register_forward_hook(self._on_pool))
            elif isinstance(module, SpatioTemporalBlock):
                self._handles.append(module.temporal.register_forward_hook(self._on_temporal))
            elif isinstance(module, TransformerLayer):
                self._handles.append(module.attention.register_forward_hook(self._on_patch))

    @torch.no_grad()
    def _on_pool(self, module: ChannelPool, args: tuple, _output: torch.Tensor) -> None:
        (tokens,) = args
        self.pool.append(module.score(tokens).float().softmax(dim=1).mean(dim=-1))  # (B, C, P)

    @torch.no_grad()
    def _on_temporal(self, module: SelfAttention, args: tuple, _output: torch.Tensor) -> None:
        # received attention: mean over heads and queries, per key patch -> (B*C, P)
        self.temporal.append(attention_probabilities(module, *args).mean(dim=(1, 2)))

    @torch.no_grad()
    def _on_patch(self, module: SelfAttention, args: tuple, _output: torch.Tensor) -> None:
        self.patch.append(attention_probabilities(module, *args).mean(dim=(1, 2)))  # (B, P)

    def maps(self, n_chans: int) -> dict[str, torch.Tensor]:
        out = {}
        if self.pool:
            out["channel_pool"] = torch.stack(self.pool).mean(dim=0)
        if self.temporal:
            received = torch.stack(self.temporal).mean(dim=0)
            out["temporal"] = received.view(-1, n_chans, received.shape[-1])
        if self.patch:
            out["patch"] = torch.stack(self.patch).mean(dim=0)
        return out

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@contextlib.contextmanager
def recording_attention(model: nn.Module) -> Iterator[AttentionRecorder]:
    """Hooks on ``model`` for the duration of the block; removed on leaving, even on error."""
    recorder = AttentionRecorder(model)
    try:
        yield recorder
    finally:
        recorder.close()


def attention_maps(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The attention maps of one no-grad forward pass of ``model(**inputs)`` ({} for a model
    without the encoder's attention modules)."""
    with recording_attention(model) as recorder, torch.no_grad():
        model(**inputs)
    return recorder.maps(inputs["eeg"].shape[1])
