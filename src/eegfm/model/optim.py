"""Optimizer parameter groups: weight-decay exemptions and layer-wise learning-rate decay (LLRD).

    groups = param_groups_lrd(model, base_lr=5e-4, weight_decay=0.05, layer_decay=0.75)
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))

Depth, from the input up (``layer_id``), for a config with N spatio-temporal blocks and M patch
layers; the top trains at ``base_lr`` and every layer below it at ``layer_decay`` times the lr of
the one above (``lr = base_lr * layer_decay ** (top - layer_id)``, as in BEiT / MAE fine-tuning):

=========  ==========================================================================
layer_id   parameters
=========  ==========================================================================
0          ``encoder.tokenizer`` (patch and electrode embeddings, interpolated flag)
1 .. N     ``encoder.blocks.{i}`` (adapters inside them included)
N + 1      ``encoder.norm``, ``encoder.channel_pool``, ``encoder.fusion`` (modality branches)
N + 2 ..   ``encoder.patch_layers.{j}``
N + M + 2  ``encoder.final_norm``, ``encoder.spatial_readout``, ``encoder.covariance_branch`` and every head
=========  ==========================================================================

No weight decay on biases, normalisation weights and embedding-like parameters (every tensor
with fewer than 2 dimensions, plus the learned tokens ``null``, ``sex`` and ``kind``). Frozen
parameters (``requires_grad=False``) are left out.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from eegfm.core.config import ConfigError
from eegfm.model.config import EEGFMConfig

# Learned vectors/tokens that act as embeddings even where they are 2-D or 3-D.
NO_DECAY_NAMES = frozenset({"interpolated", "interpolated_logit", "null", "sex", "kind"})


def num_layers(config: EEGFMConfig) -> int:
    """Number of depth levels ``layer_id`` can take."""
    return config.num_hidden_layers + config.num_patch_layers + 3


def layer_id(name: str, config: EEGFMConfig) -> int:
    """Depth of the parameter called ``name`` in an ``EEGFMModel`` / ``EEGFMForPretraining``."""
    top = num_layers(config) - 1
    if not name.startswith("encoder."):
        return top  # heads
    parts = name.split(".")
    part = parts[1]
    if part == "tokenizer":
        return 0
    if part == "blocks":
        return 1 + int(parts[2])
    if part in ("norm", "channel_pool", "fusion"):
        return config.num_hidden_layers + 1
    if part == "patch_layers":
        return config.num_hidden_layers + 2 + int(parts[2])
    if part in ("final_norm", "spatial_readout", "covariance_branch"):
        return top
    raise ValueError(f"layer_id: no depth known for parameter {name!r}; add its module to model.optim.layer_id")


def decays(name: str, parameter: nn.Parameter) -> bool:
    """Whether weight decay applies: matrices of linear layers (and adapters), not the rest."""
    return parameter.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def param_groups_lrd(
    model: nn.Module, base_lr: float, weight_decay: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """One group per (depth, decay) pair with ``params``, ``lr`` (already scaled; ``LambdaLR``
    schedules scale it further), ``weight_decay``, ``lr_scale`` and ``layer_id``. ``model`` may be
    wrapped by DDP or ``torch.compile``."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # torch.compile
    config = getattr(model, "config", None)
    if not isinstance(config, EEGFMConfig):
        raise ConfigError(
            f"param_groups_lrd model: expected an eegfm model with an EEGFMConfig; got {type(model).__name__}"
        )
    for field, value, low, high in (
        ("base_lr", base_lr, 0.0, None),
        ("weight_decay", weight_decay, 0.0, None),
        ("layer_decay", layer_decay, 0.0, 1.0),
    ):
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or not value >= low or (high is not None and value > high):
            bound = "inf" if high is None else high
            raise ConfigError(f"param_groups_lrd {field}: expected a number in [{low}, {bound}]; got {value!r}")
    if layer_decay == 0.0:
        raise ConfigError("param_groups_lrd layer_decay: expected a number in (0, 1]; got 0.0")
    top = num_layers(config) - 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth, decay = layer_id(name, config), decays(name, parameter)
        if (depth, decay) not in groups:
            scale = float(layer_decay) ** (top - depth)
            groups[(depth, decay)] = {
                "params": [],
                "lr": base_lr * scale,
                "lr_scale": scale,
                "layer_id": depth,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[(depth, decay)]["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]
