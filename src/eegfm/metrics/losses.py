"""Fine-tuning losses: pure functions of logits and targets, each pinned by hand-computed tests.

Targets are class distributions ``(B, K)`` or class indices ``(B,)`` (``-1``: no label). Every
loss is the weighted mean over the windows with a target, ``sum_i w_i l_i / sum_i w_i`` with
``w_i = sum_k t_ik class_weight_k`` (``F.cross_entropy(..., weight=w)``'s convention); a batch
without targets gives 0 with a gradient path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def as_distribution(target: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distribution (B, K), has_target (B,))`` from indices (``-1`` = none) or from counts /
    distributions (rows are normalised; an all-zero row = none)."""
    if target.dim() == 1:
        target = target.long()
        keep = (target >= 0) & (target < n_classes)
        one_hot = F.one_hot(target.clamp(0, n_classes - 1), n_classes).float()
        return one_hot * keep.unsqueeze(1), keep
    if target.dim() != 2 or target.shape[1] != n_classes:
        raise ValueError(
            f"target: expected class indices (B,) or distributions (B, {n_classes}); got shape {tuple(target.shape)}"
        )
    target = target.float()
    if bool((target < 0).any()):
        raise ValueError("target: distributions and vote counts must not be negative")
    total = target.sum(dim=1, keepdim=True)
    keep = total.squeeze(1) > 0
    return target / total.clamp_min(1e-12), keep


def _reduce(
    per_window: torch.Tensor, distribution: torch.Tensor, keep: torch.Tensor, class_weights: torch.Tensor | None
) -> torch.Tensor:
    weight = keep.to(per_window.dtype)
    if class_weights is not None:
        weight = weight * (distribution @ class_weights.to(distribution))
    return (per_window * weight).sum() / weight.sum().clamp_min(1e-12)


def kl_divergence(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean KL(target || softmax(logits)) over windows with a target (the HMS metric)."""
    distribution, keep = as_distribution(target, logits.shape[-1])
    log_p = F.log_softmax(logits.float(), dim=-1)
    per_window = (torch.xlogy(distribution, distribution) - distribution * log_p).sum(dim=-1)
    return _reduce(per_window, distribution, keep, class_weights)


def smooth(distribution: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``(1 - eps) * t + eps / K`` (rows without a target stay zero)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1); got {label_smoothing!r}")
    if label_smoothing == 0:
        return distribution
    has = (distribution.sum(dim=-1, keepdim=True) > 0).to(distribution.dtype)
    return ((1 - label_smoothing) * distribution + label_smoothing / distribution.shape[-1]) * has


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``-sum_k t~_k log p_k`` with smoothed targets ``t~`` (class weights by the unsmoothed ones):
    :func:`focal_loss` with gamma 0, whose modulation is exactly 1."""
    return focal_loss(logits, target, 0.0, label_smoothing, class_weights)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss ``-sum_k t_k (1 - p_k)^gamma log p_k``: confident, correct windows count less."""
    if gamma < 0:
        raise ValueError(f"gamma: expected a number >= 0; got {gamma!r}")
    distribution, keep = as_distribution(target, logits.shape[-1])
    log_p = F.log_softmax(logits.float(), dim=-1)
    modulation = (1 - log_p.exp()).clamp_min(0).pow(gamma)
    per_window = -(smooth(distribution, label_smoothing) * modulation * log_p).sum(dim=-1)
    return _reduce(per_window, distribution, keep, class_weights)


def balanced_class_weights(counts: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``n / (K * n_k)`` per class (scikit-learn's "balanced"); a class with no windows gets 1."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or len(counts) < 1 or bool((counts < 0).any()):
        raise ValueError(f"counts: expected non-negative counts, one per class; got {counts.tolist()}")
    if float(counts.sum()) <= 0:
        raise ValueError("counts: expected at least one labeled window")
    weights = counts.sum() / (len(counts) * counts.clamp_min(1e-12))
    return torch.where(counts > 0, weights, torch.ones_like(weights)).float()


def binary_logits(logit: torch.Tensor) -> torch.Tensor:
    """A binary head's logits ``(B,)`` -> two-class logits ``[0, z]`` (softmax ``[1 - sigmoid, sigmoid]``)."""
    return torch.stack([torch.zeros_like(logit), logit], dim=-1)


def class_prior_log_probs(prior: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Log of a class prior, floored at ``eps`` so that a class absent from training still gets
    a finite log-probability (used as the baseline prediction and the head's initial bias)."""
    prior = prior.double().clamp_min(eps)
    return (prior / prior.sum()).log().float()
