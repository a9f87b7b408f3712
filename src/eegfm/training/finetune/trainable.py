"""What a fine-tuning run trains: the mode (linear, adapter, full), gradual unfreezing, and the
optimizer's parameter groups with layer-wise learning-rate decay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from eegfm.core.logs import get_logger
from eegfm.model import adapters as adapters_lib
from eegfm.model.modeling import EEGFMModel
from eegfm.model.optim import decays, param_groups_lrd
from eegfm.training.config import ConfigError, FinetuneConfig
from eegfm.training.distributed import unwrap

if TYPE_CHECKING:  # setup builds a Run with these functions
    from eegfm.training.finetune.setup import Run

log = get_logger("eegfm.training.finetune")


def configure_mode(model: EEGFMModel, cfg: FinetuneConfig) -> None:
    """Which parameters train: linear = head; adapter = adapters + head; full = all."""
    if cfg.mode == "linear":
        model.freeze_encoder()
    elif cfg.mode == "adapter":
        kind = model.config.adapter_kind
        if kind is None:
            model.add_adapters(cfg.adapter_kind, cfg.adapter_rank)
        elif kind != cfg.adapter_kind or model.config.adapter_rank != cfg.adapter_rank:
            raise ConfigError(
                f"adapter_kind: --pretrained already has {kind!r} adapters of rank "
                f"{model.config.adapter_rank}; got {cfg.adapter_kind!r} rank {cfg.adapter_rank}"
            )
        else:
            for name, parameter in model.named_parameters():
                parameter.requires_grad = adapters_lib.is_adapter_parameter(name) or name.startswith("head.")
    else:
        model.unfreeze_encoder(None)


def unfreeze_level(cfg: FinetuneConfig, step: int, steps_per_epoch: int) -> int:
    """How many milestones of ``unfreeze_schedule`` have passed at ``step`` (0-based)."""
    now = step // steps_per_epoch if cfg.unfreeze_unit == "epoch" else step
    return sum(now >= milestone for milestone in cfg.unfreeze_schedule)


def apply_unfreeze(model: EEGFMModel, cfg: FinetuneConfig, level: int) -> None:
    """Gradual unfreezing (full mode): level 0 trains the head alone; level i of k the top
    ``round(i / k)`` share of the encoder's layers (``unfreeze_encoder`` order); level k all."""
    schedule = cfg.unfreeze_schedule
    if cfg.mode != "full":
        return
    if not isinstance(model, EEGFMModel):  # built from scratch (build_model): everything trains
        model.unfreeze_encoder(None)
        return
    if not schedule or level >= len(schedule):
        model.unfreeze_encoder(None)
    elif level == 0:
        model.freeze_encoder()
    else:
        n_layers = len(model.encoder.blocks) + len(model.encoder.patch_layers)
        model.unfreeze_encoder(max(1, round(n_layers * level / len(schedule))))


def optimizer_groups(model: EEGFMModel, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise lr decay over every parameter, frozen or not: AdamW skips
    parameters without gradients, so gradual unfreezing needs no new optimizer. Architectures
    other than eegfm: two groups, with and without weight decay, at the base lr."""
    if not isinstance(model, EEGFMModel):
        named = list(model.named_parameters())
        decayed = [p for n, p in named if decays(n, p)]
        rest = [p for n, p in named if not decays(n, p)]
        return [
            {"params": decayed, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
            {"params": rest, "lr": cfg.optim.lr, "weight_decay": 0.0},
        ]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        return param_groups_lrd(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.layer_decay)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)


def set_trainable(run: Run) -> None:
    """Apply the unfreeze level of the current step; rewrap for DDP when it changes (DDP fixes
    the parameters it synchronises when built)."""
    level = len(run.cfg.unfreeze_schedule)  # stage 2 continues with everything the mode trains
    if run.stage.index == 0:
        level = unfreeze_level(run.cfg, run.step, run.steps_per_epoch)
    if level == run.unfreeze:
        return
    model = unwrap(run.model)
    apply_unfreeze(model, run.cfg, level)
    wrapped = run.dist.wrap_model(model)
    run.model = torch.compile(wrapped, mode=run.cfg.compile_mode) if run.cfg.compile else wrapped
    if run.cfg.unfreeze_schedule and run.cfg.mode == "full":
        log.info(
            "%s step %d: unfreeze level %d of %d, %d trainable parameters",
            run.stage.name,
            run.step,
            level,
            len(run.cfg.unfreeze_schedule),
            adapters_lib.count_trainable(model),
        )
    run.unfreeze = level
