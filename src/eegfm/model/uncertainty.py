"""Last-layer Monte-Carlo dropout with fixed masks: samples of the head's logits that PyTorch and
ONNX Runtime reproduce exactly.

Dropout at inference (Gal & Ghahramani, 2016) spreads a window's logits over ``S`` random sub-networks;
the spread is the model's epistemic uncertainty. Here the randomness is frozen: ``S`` masks over the
head's pre-logit features (``TaskHead.pre_logits``: LayerNorm, then these masks instead of dropout,
then the linear layer), drawn once from ``config.mc_seed``. A saved model rebuilds the same masks
from its config.json, an exported graph holds them as constants, and the encoder runs once: only
the head is sampled. This measures the uncertainty of the head's last layer given the encoder's
features, not of the encoder (its dropout is off) nor the noise in the labels.

Pass ``k``'s mask comes from its own generator (seed ``mc_seed + k``), so the first ``n`` masks are
the same whatever the number of passes: a graph exported with 20 passes serves 10 by slicing.
"""

from __future__ import annotations

import torch


def mc_dropout_rate(config) -> float:
    """The fraction of features a pass drops: ``config.mc_dropout``, else ``config.head_dropout``."""
    rate = getattr(config, "mc_dropout", None)
    return float(config.head_dropout if rate is None else rate)


def dropout_masks(n_passes: int, width: int, rate: float, seed: int) -> torch.Tensor:
    """(n_passes, width) float32 inverted-dropout masks: 0 for a dropped feature, 1 / (1 - rate)
    for a kept one (as ``nn.Dropout`` scales in training), pass ``k`` drawn from seed ``seed + k``."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate: expected a dropout fraction in [0, 1); got {rate!r}")
    if n_passes < 0:
        raise ValueError(f"n_passes: expected 0 or more; got {n_passes!r}")
    masks = torch.ones(n_passes, width)
    for k in range(n_passes):
        uniform = torch.rand(width, generator=torch.Generator().manual_seed(seed + k))
        masks[k] = (uniform >= rate).float() / (1.0 - rate)
    return masks


def config_masks(config) -> torch.Tensor:
    """The masks ``config`` (an ``EEGFMConfig``) describes, for its head's input width."""
    passes = int(getattr(config, "mc_passes", 0) or 0)
    return dropout_masks(passes, config.hidden_size, mc_dropout_rate(config), int(getattr(config, "mc_seed", 0)))
