"""Parameter-efficient fine-tuning: LoRA or bottleneck adapters, and encoder (un)freezing.

``add_adapters(model, "lora", rank=8)`` freezes the encoder and trains only the adapters and the
head (< 5 % of the parameters); ``config.adapter_kind`` / ``adapter_rank`` record the choice, so
``from_pretrained`` rebuilds the modules. ``lora``: every attention and GNN value/output projection
computes ``W x + (alpha / r) B A x``; ``bottleneck``: ``x + up(gelu(down(norm(x))))`` after every
block and patch layer. ``B`` and ``up`` start at zero: an adapted model starts as the frozen one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eegfm.core.config import ConfigError
from eegfm.model.config import ADAPTER_KINDS
from eegfm.model.fusion import ModalityAttention
from eegfm.model.spatial import SpatialGNNLayer
from eegfm.model.temporal import SelfAttention

LORA_ALPHA_OVER_RANK = 2.0  # scale alpha / r; alpha = 2 r is a common, rank-independent choice


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = LORA_ALPHA_OVER_RANK
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    @property
    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * self.lora_b @ self.lora_a


class BottleneckAdapter(nn.Module):
    def __init__(self, width: int, rank: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=eps)
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width)
        self.up.zero_init = True  # read by EEGFMPreTrainedModel._init_weights
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(self.norm(x))))


def _lora_targets(encoder: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every linear layer that LoRA wraps."""
    names = {SelfAttention: ("qkv", "out"), ModalityAttention: ("q", "kv", "out"), SpatialGNNLayer: ("value", "out")}
    targets = []
    for module in encoder.modules():
        for kind, attributes in names.items():
            if isinstance(module, kind):
                targets.extend((module, attr) for attr in attributes if isinstance(getattr(module, attr), nn.Linear))
    return targets


def build_adapters(encoder: nn.Module, kind: str, rank: int, eps: float = 1e-5) -> None:
    """Insert adapter modules into ``encoder`` (no freezing; used when loading adapted models)."""
    if kind not in ADAPTER_KINDS:
        raise ConfigError(f"adapter kind: expected one of {', '.join(map(repr, ADAPTER_KINDS))}; got {kind!r}")
    if kind == "lora":
        for parent, attr in _lora_targets(encoder):
            setattr(parent, attr, LoRALinear(getattr(parent, attr), rank))
    else:
        for layer in [*encoder.blocks, *encoder.patch_layers]:
            layer.adapter = BottleneckAdapter(encoder.config.hidden_size, rank, eps)


def is_adapter_parameter(name: str) -> bool:
    return ".lora_a" in name or ".lora_b" in name or ".adapter." in name


def add_adapters(model: nn.Module, kind: str = "lora", rank: int = 8) -> int:
    """Add adapters to an eegfm model's encoder and freeze all but them and the head; the number of
    trainable parameters."""
    if model.config.adapter_kind is not None:
        raise ConfigError(
            f"add_adapters: the model already has {model.config.adapter_kind!r} adapters; "
            "load the model without them to choose another kind"
        )
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"add_adapters rank: expected a positive integer; got {rank!r}")
    reference = next(model.parameters())
    build_adapters(model.encoder, kind, rank, model.config.layer_norm_eps)
    # New modules are float32 on the CPU: move them to the model's device and dtype.
    model.encoder.to(device=reference.device, dtype=reference.dtype)
    model.config.adapter_kind, model.config.adapter_rank = kind, rank
    for name, parameter in model.named_parameters():
        parameter.requires_grad = is_adapter_parameter(name) or name.startswith("head.")
    return count_trainable(model)


def freeze_encoder(model: nn.Module) -> None:
    """Linear probing: only parameters outside the encoder (the head) stay trainable, and the
    encoder's parts that are new at fine-tuning (the model's ``new_at_finetuning``: the spectral
    readout's projection, the covariance branch). Those start at zero; frozen, their option would
    add nothing to a probe."""
    model.encoder.requires_grad_(False)
    new = tuple(getattr(model, "new_at_finetuning", ()))
    for name, parameter in model.encoder.named_parameters(prefix="encoder"):
        if name.startswith(new):
            parameter.requires_grad_(True)


def unfreeze_encoder(model: nn.Module, last_n_layers: int | None = None) -> None:
    """Unfreeze the whole encoder, or only its top ``last_n_layers`` layers (counting the patch
    layers first, then the spatio-temporal blocks from the top) and its final norms, fusion, spatial
    readout and covariance branch."""
    encoder = model.encoder
    if last_n_layers is None:
        encoder.requires_grad_(True)
        return
    layers = list(encoder.blocks) + list(encoder.patch_layers)
    if isinstance(last_n_layers, bool) or not isinstance(last_n_layers, int) or not 0 <= last_n_layers <= len(layers):
        raise ConfigError(
            f"unfreeze_encoder last_n_layers: expected an integer in [0, {len(layers)}] or None; got {last_n_layers!r}"
        )
    freeze_encoder(model)
    top = layers[len(layers) - last_n_layers :] if last_n_layers else []
    if last_n_layers > len(encoder.patch_layers):  # the unfrozen range reaches below the fusion
        top += [encoder.fusion, encoder.channel_pool, encoder.norm]
    for module in top + [encoder.final_norm, encoder.spatial_readout, encoder.covariance_branch]:
        if module is not None:
            module.requires_grad_(True)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
