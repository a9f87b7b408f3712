"""The eegfm encoder: channel tokens -> spatio-temporal blocks -> patch tokens -> fusion -> embedding.

EEG (B, C, T) -> (B, C, P, D) channel tokens (P = T // patch_size) -> ``num_hidden_layers``
spatio-temporal blocks (attention along P, a GNN step across C, an MLP) -> softmax pooling over
channels to (B, P, D) -> fusion of the optional modalities -> ``num_patch_layers`` transformer
layers -> final norm; the mean over patches (+ ``model.readout``'s spatial readout of the channel
tokens, with ``spatial_filters``; + ``model.covariance_branch``'s band covariances of the window, with
``covariance_channels``) is the recording embedding (B, D). Only the blocks
run on C x P tokens, which keeps the ``base`` preset fast on CPUs.

``config.causal`` makes both temporal stacks causal; the fusion's gates read the mean of all
patches, so with optional modalities present a patch can depend on later EEG through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.utils import ModelOutput

from eegfm.contract.channels import N_CANONICAL
from eegfm.model.band_powers import COVARIANCE_BANDS, head_spectral_features
from eegfm.model.config import EEGFMConfig
from eegfm.model.covariance_branch import CovarianceBranch
from eegfm.model.embedding import ChannelTokenizer
from eegfm.model.fusion import CrossModalFusion
from eegfm.model.readout import SpatialReadout
from eegfm.model.spatial import ElectrodeGraph, SpatialGNNLayer, build_electrode_graph
from eegfm.model.temporal import MLP, SelfAttention, TransformerLayer, rotary_tables


@dataclass
class EncoderOutput(ModelOutput):
    """What ``forward_features`` returns.

    channel_tokens: (B, C, P, D) per channel and patch, after the spatio-temporal blocks.
    patch_tokens: (B, P, D) per patch, after channel pooling, fusion and the patch layers.
    pooled: (B, D) recording embedding (mean of ``patch_tokens``, + the spatial readout and the
        covariance branch if configured).
    modality_gates: (B, n_modalities) gate applied to each configured modality (0 if absent), in
        ``config.modalities`` order; None when the config has no modalities.
    band_features: (B, F) what the task head reads beside the embedding
        (``model.band_powers.head_spectral_features``): each channel's Welch log band powers and
        relative powers where ``config.head_band_powers``, then each band's tangent vector where
        ``config.head_covariances``; else None.
    """

    channel_tokens: torch.Tensor | None = None
    patch_tokens: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    modality_gates: torch.Tensor | None = None
    band_features: torch.Tensor | None = None


class SpatioTemporalBlock(nn.Module):
    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.temporal_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.temporal = SelfAttention(config)
        self.spatial_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.spatial = SpatialGNNLayer(config)
        self.mlp_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)
        self.adapter: nn.Module | None = None  # set by model.adapters.add_adapters

    def forward(
        self, x: torch.Tensor, graph: ElectrodeGraph, rotary: tuple[torch.Tensor, torch.Tensor], causal: bool
    ) -> torch.Tensor:
        batch, n_chans, n_patches, width = x.shape
        sequences = self.temporal_norm(x).reshape(batch * n_chans, n_patches, width)
        x = x + self.dropout(self.temporal(sequences, rotary, causal).view_as(x))
        x = x + self.dropout(self.spatial(self.spatial_norm(x), graph))
        x = x + self.mlp(self.mlp_norm(x))
        if self.adapter is not None:
            x = self.adapter(x)
        return x


class ChannelPool(nn.Module):
    """(B, C, P, D) -> (B, P, D): ``channel_pool_heads`` learned softmax weightings of the channels
    of each patch, concatenated and projected; one head alone is a single weighted mean."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        heads, width = config.channel_pool_heads, config.hidden_size
        self.score = nn.Linear(width, heads)
        self.proj = nn.Linear(heads * width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = self.score(tokens).softmax(dim=1)  # (B, C, P, H)
        pooled = torch.einsum("bcph,bcpd->bphd", weights, tokens)
        return self.proj(pooled.flatten(2))


class EEGFMEncoder(nn.Module):
    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.tokenizer = ChannelTokenizer(config)
        self.blocks = nn.ModuleList(SpatioTemporalBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.channel_pool = ChannelPool(config)
        self.fusion = CrossModalFusion(config) if config.modalities else None
        self.patch_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_patch_layers))
        self.final_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.spatial_readout = SpatialReadout(config) if config.spatial_filters else None
        self.covariance_branch = CovarianceBranch(config) if config.covariance_channels else None
        if config.head_covariances:  # read with head_covariance_metric "riemann" (model.config)
            whitening = torch.eye(N_CANONICAL).expand(len(COVARIANCE_BANDS), -1, -1).clone()
            self.register_buffer("head_covariance_whitening", whitening)
        # Hugging Face's activation_checkpointing_enable() flips this flag (and may set the function).
        self.gradient_checkpointing = config.gradient_checkpointing
        self._gradient_checkpointing_func = None

    def set_gnn_impl(self, impl: str) -> None:
        for block in self.blocks:
            block.spatial.impl = impl

    def _run(self, layer: nn.Module, *args: object) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            if self._gradient_checkpointing_func is not None:
                return self._gradient_checkpointing_func(layer.__call__, *args)
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)

    def forward(
        self,
        eeg: torch.Tensor,
        positions: torch.Tensor,
        channel_mask: torch.Tensor,
        spectrogram: torch.Tensor | None = None,
        ecg: torch.Tensor | None = None,
        age: torch.Tensor | None = None,
        sex: torch.Tensor | None = None,
        sample_mask: torch.Tensor | None = None,
    ) -> EncoderOutput:
        causal = self.config.causal
        tokens = self.tokenizer(eeg, positions, channel_mask, sample_mask)
        n_patches = tokens.shape[2]
        graph = build_electrode_graph(positions, channel_mask, self.config.graph_neighbours)
        rotary = rotary_tables(n_patches, self.config.head_dim, device=tokens.device, dtype=tokens.dtype)
        for block in self.blocks:
            tokens = self._run(block, tokens, graph, rotary, causal)
        channel_tokens = self.norm(tokens)
        patch_tokens = self.channel_pool(channel_tokens)
        gates = None
        if self.fusion is not None:
            patch_tokens, gates = self.fusion(patch_tokens, spectrogram, ecg, age, sex)
        for layer in self.patch_layers:
            patch_tokens = self._run(layer, patch_tokens, rotary, causal)
        patch_tokens = self.final_norm(patch_tokens)
        pooled = patch_tokens.mean(dim=1)
        if self.spatial_readout is not None:
            pooled = pooled + self.spatial_readout(channel_tokens, positions, eeg, channel_mask)
        if self.covariance_branch is not None:
            pooled = pooled + self.covariance_branch(eeg, positions, channel_mask)
        bands = None
        if self.config.head_band_powers or self.config.head_covariances:
            riemann = self.config.head_covariances and self.config.head_covariance_metric == "riemann"
            bands = head_spectral_features(
                eeg,
                self.config.sfreq,
                channel_mask,
                self.config.head_band_powers,
                self.config.head_covariances,
                self.head_covariance_whitening if riemann else None,
            ).to(pooled.dtype)
        return EncoderOutput(
            channel_tokens=channel_tokens,
            patch_tokens=patch_tokens,
            pooled=pooled,
            modality_gates=gates,
            band_features=bands,
        )
