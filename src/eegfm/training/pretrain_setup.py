"""Pretraining's set-up: the model, AdamW, the schedule and the infinite loader, wrapped for the
backend, as one :class:`Run` that ``training.pretrain``'s steps advance and checkpoints hold."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from eegfm.contract import model_files as files
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.model.architectures import get_architecture, saved_model_type
from eegfm.model.modeling import pretraining_losses
from eegfm.training.config import PretrainConfig, resolve_precision
from eegfm.training.data import EEGLoader, RecordFilter
from eegfm.training.distributed import Dist, unwrap
from eegfm.training.run_state import TrainState, core_state, load_core_state
from eegfm.training.steps import configure_kernels, loader_config

log = get_logger("eegfm.training.pretrain")  # one logger name for all of pretraining, as in pretrain_validation


def untrained_by_pretraining(model: torch.nn.Module) -> set[str]:
    """Names of the parameters that the pretraining losses give no gradient (probe: one step).

    Without the summary objective (``summary_weight`` 0) both objectives read the per-channel
    tokens, so the encoder's top is only trained by fine-tuning; AdamW would still decay those
    parameters, so they go to an lr-0 group.
    """
    probe = torch.randn(2, 19, 4 * model.config.patch_size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.train()
    rng = torch.get_rng_state()
    try:
        out = model(probe.to(model.device) * 20.0, generator=torch.Generator().manual_seed(0))
        objective = sum(getattr(out, name) for name in pretraining_losses(model))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(objective, [p for _, p in named], allow_unused=True)
    finally:
        torch.set_rng_state(rng)  # the probe must not shift the run's random streams
        model.train(was_training)
    return {n for (n, _), g in zip(named, grads) if g is None}


def load_initial_weights(model: torch.nn.Module, folder: Path) -> None:
    """``model`` starts from the weights a pretraining saved in ``folder`` (``init_from``): every
    tensor, by name and shape; ConfigError naming the folder and what differs otherwise."""
    weights = folder / files.WEIGHTS
    if not weights.is_file() or not (folder / files.CONFIG).is_file():
        raise ConfigError(
            f"init_from: {folder}: expected a pretraining's model folder ({files.CONFIG} and {files.WEIGHTS})"
        )
    model_type = saved_model_type(folder)
    if model_type != model.config.model_type:
        raise ConfigError(
            f"init_from: {folder} holds a {model_type!r} model; this run pretrains {model.config.model_type!r}"
        )
    try:
        model.load_state_dict(load_file(weights), strict=True)
    except RuntimeError as err:  # torch lists each missing, unexpected or reshaped tensor
        raise ConfigError(
            f"init_from: {folder}: its weights do not fit this run's model (give the model settings it was "
            f"pretrained with): {str(err).splitlines()[-1].strip()[:400]}"
        ) from err
    log.info("pretraining continues from the weights in %s", folder)


def configure_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings (1-D tensors); lr 0 for the
    parameters pretraining does not train (see :func:`untrained_by_pretraining`)."""
    frozen = untrained_by_pretraining(unwrap(model))
    params = [(name, p) for name, p in sorted(unwrap(model).named_parameters()) if p.requires_grad]
    fixed = [p for name, p in params if name in frozen]
    decay = [p for name, p in params if name not in frozen and p.dim() >= 2]
    no_decay = [p for name, p in params if name not in frozen and p.dim() < 2]
    if fixed:
        log.info(
            "%d of %d parameters are trained only by fine-tuning (encoder top: pooling, fusion, patch "
            "layers); pretraining keeps them at their initial values",
            sum(p.numel() for p in fixed),
            sum(p.numel() for p in unwrap(model).parameters()),
        )
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": fixed, "weight_decay": 0.0, "lr": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)


@dataclasses.dataclass(kw_only=True)
class Run(TrainState):
    """Everything a step touches, and what a checkpoint must hold to continue it."""

    cfg: PretrainConfig

    def seed_parts(self) -> tuple[int, ...]:
        # A 0 before the micro-batch's index; (seed, rank, step, index + 1) seeds its masking generator.
        return (self.cfg.seed, self.dist.rank, self.step, 0)

    def state_dict(self) -> dict[str, Any]:
        """Full training state. Collective: every rank must call it."""
        return core_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_core_state(self, state)
        self.step = int(state["step"])


def build_run(cfg: PretrainConfig, dist: Dist, data: str | Sequence[str], filters: RecordFilter | None = None) -> Run:
    """The model, optimizer and infinite loader of a run; ``filters`` choose the training windows."""
    configure_kernels(cfg, dist.device)
    amp_dtype = resolve_precision(cfg.precision, dist.device)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts)
    model = get_architecture(cfg.architecture).pretraining_class(cfg.model_config())
    if cfg.init_from is not None:
        load_initial_weights(model, Path(cfg.init_from))
    model = model.to(dist.device)
    optimizer = configure_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cfg.optim.lr_factor)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    config = loader_config(cfg.loader, model.config.patch_size, filters=filters)
    loader = EEGLoader(data, config, rank=dist.rank, world_size=dist.world_size, infinite=True)
    wrapped = dist.wrap_model(model)
    if cfg.compile:
        wrapped = torch.compile(wrapped, mode=cfg.compile_mode)
    optimizer = dist.wrap_optimizer(optimizer, wrapped, cfg.optim.grad_accum_steps)
    return Run(
        cfg=cfg,
        dist=dist,
        model=wrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loader=loader,
        amp_dtype=amp_dtype,
    )
