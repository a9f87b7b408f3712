"""What a fine-tuning step computes on a batch: the model's inputs, the task's targets, and the
loss with its class weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from eegfm.metrics import losses
from eegfm.metrics.classification import class_logits
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.data import data_label, inputs_for_modalities
from eegfm.training.distributed import unwrap
from eegfm.training.finetune.plan import Plan


def inputs_for(
    model: torch.nn.Module, batch: dict[str, Any], device: torch.device, data: str | Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """The batch's model inputs, without the optional ones the model was configured without
    (``model_overrides: {modalities: [...]}``); ConfigError naming ``data`` and the feature where
    the batch lacks one the model cannot do without (the spectrogram CNN's ``spectrogram``)."""
    net = unwrap(model)
    config = net.config
    inputs = inputs_for_modalities(batch, config.modalities, device, spectrogram_pool=config.spectrogram_pool)
    for name in getattr(net, "required_inputs", ()):
        if name in inputs:
            continue
        if batch.get(name) is None:
            where = f"--data {data_label(data)}" if data is not None else "the data"
            raise ConfigError(
                f"{where}: its windows carry no {name!r} feature, which a {type(net).__name__} reads; "
                f"preprocess the recordings again with the {name} (windows written before it have none)"
            )
        inputs[name] = batch[name].to(device, non_blocking=True)
    return inputs


def targets_of(batch: dict[str, Any], cfg: FinetuneConfig, device: torch.device) -> torch.Tensor:
    """hms6: the (mixed) vote distributions; regression: label values (NaN = none); else labels."""
    if cfg.task == "hms6":
        return batch["targets"].to(device)
    label = batch["label"].to(device)
    if cfg.task == "regression":
        return torch.where(label >= 0, label.float(), torch.full_like(label, float("nan"), dtype=torch.float32))
    return label


def make_loss(
    cfg: FinetuneConfig, head: torch.nn.Module, class_weights: torch.Tensor | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``f(logits, target)`` the config asks for."""
    if cfg.task == "regression":
        return head.loss
    name = cfg.loss or ("kl" if cfg.task == "hms6" else "ce")
    if name == "kl":
        return lambda logits, target: losses.kl_divergence(logits, target, class_weights)
    if name == "ce":
        return lambda logits, target: losses.soft_cross_entropy(
            class_logits(logits, cfg), target, cfg.label_smoothing, class_weights
        )
    return lambda logits, target: losses.focal_loss(
        class_logits(logits, cfg), target, cfg.focal_gamma, cfg.label_smoothing, class_weights
    )


def resolve_class_weights(cfg: FinetuneConfig, plan: Plan) -> torch.Tensor | None:
    if cfg.class_weights == "none" or cfg.task == "regression":
        return None
    if cfg.class_weights == "balanced":
        return losses.balanced_class_weights(plan.class_counts)
    return torch.tensor(cfg.class_weights, dtype=torch.float32)
