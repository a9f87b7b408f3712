"""One fine-tuning stage's training state (:class:`Run`), built from its parts: the model
(``initial_model``), what trains and the optimizer's groups (``trainable``), the loss
(``objective``) and the stage's loaders."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from eegfm.core.logs import get_logger
from eegfm.model.modeling import EEGFMModel
from eegfm.training.config import FinetuneConfig, resolve_precision
from eegfm.training.data import EEGLoader
from eegfm.training.distributed import Dist, unwrap
from eegfm.training.finetune.objective import make_loss, resolve_class_weights
from eegfm.training.finetune.plan import Plan, Stage, split_filter
from eegfm.training.finetune.trainable import optimizer_groups
from eegfm.training.run_state import TrainState, core_state, load_core_state
from eegfm.training.steps import loader_config

log = get_logger("eegfm.training.finetune")


def split_loader(
    cfg: FinetuneConfig, dist: Dist, data: str | Sequence[str], plan: Plan, name: str, patch_size: int
) -> EEGLoader:
    """One pass over a held-out split (``val``, ``test``) in file order, sharded over the ranks."""
    config = loader_config(cfg.loader, patch_size, filters=split_filter(plan, name), train=False)
    return EEGLoader(
        data, config, rank=dist.rank, world_size=dist.world_size, infinite=False, windows_per_file=plan.files.get(name)
    )


@dataclasses.dataclass(kw_only=True)
class Run(TrainState):
    """One stage's training state (``step`` counts this stage's steps)."""

    cfg: FinetuneConfig
    plan: Plan
    stage: Stage
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: str | Sequence[str]
    steps_per_epoch: int
    total_steps: int
    offset: int = 0  # steps of the stages before this one (checkpoint and log numbering)
    bad_evals: int = 0
    unfreeze: int = -1  # the applied unfreeze level (-1: none yet)
    done: bool = False  # the stage finished (all epochs, or early stopping)
    ema: AveragedModel | None = None  # the weights' moving average (``ema_decay``), what is validated

    @property
    def validated(self) -> torch.nn.Module:
        """The weights validation, checkpoints' ``best`` and the saved model read."""
        return self.model if self.ema is None else self.ema.module

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update_parameters(unwrap(self.model))

    def seed_parts(self) -> tuple[int, ...]:
        return (self.cfg.seed, self.dist.rank, self.stage.index, self.step)

    def train_mode(self) -> None:
        self.model.train()
        if self.cfg.mode == "linear":
            unwrap(self.model).encoder.eval()  # a frozen encoder is a fixed feature extractor (no dropout)

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def global_step(self) -> int:
        """Steps over all stages: stage 2 numbers its steps after stage 1's last one."""
        return self.offset + self.step

    def state_dict(self) -> dict[str, Any]:
        """Full training state. Collective: every rank must call it."""
        return {
            **core_state(self),
            "stage": self.stage.index,
            "offset": self.offset,
            "bad_evals": self.bad_evals,
            "done": self.done,
            "plan": self.plan.to_dict(),
            # the average's own weights, which ``report.best_weights`` prefers to the model's
            **({} if self.ema is None else {"ema": self.ema.module.state_dict(), "ema_n": int(self.ema.n_averaged)}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_core_state(self, state)
        self.offset = int(state["offset"])
        self.step = int(state["step"]) - self.offset
        self.bad_evals, self.done = int(state["bad_evals"]), bool(state["done"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
            self.ema.n_averaged.fill_(int(state["ema_n"]))


def build_run(
    cfg: FinetuneConfig,
    dist: Dist,
    data: str | Sequence[str],
    plan: Plan,
    stage: Stage,
    model: EEGFMModel,
    best_metric: float = math.inf,
    offset: int = 0,
) -> Run:
    amp_dtype = resolve_precision(cfg.precision, dist.device)
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, cfg), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps
    )
    batch = cfg.loader.batch_size * cfg.optim.grad_accum_steps * dist.world_size
    steps_per_epoch = max(1, math.ceil(stage.windows / batch))
    total = min(cfg.epochs * steps_per_epoch, cfg.optim.max_steps or math.inf)
    optim = cfg.optim
    if optim.warmup_steps >= total:
        log.warning(
            "optim.warmup_steps=%d is not below the %d steps of %s; warming up for %d steps",
            optim.warmup_steps,
            total,
            stage.name,
            total // 10,
        )
        optim = dataclasses.replace(optim, warmup_steps=total // 10, max_steps=None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(optim.lr_factor, total_steps=total))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    config = loader_config(cfg.loader, model.config.patch_size, filters=split_filter(plan, "train", stage.min_votes))
    loader = EEGLoader(
        data,
        config,
        rank=dist.rank,
        world_size=dist.world_size,
        infinite=True,
        windows_per_file=plan.files.get("train"),
    )
    loss_fn = make_loss(cfg, model.head, resolve_class_weights(cfg, plan))
    optimizer = dist.wrap_optimizer(optimizer, model, cfg.optim.grad_accum_steps)
    return Run(
        cfg=cfg,
        dist=dist,
        plan=plan,
        stage=stage,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loader=loader,
        loss_fn=loss_fn,
        data=data,
        amp_dtype=amp_dtype,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        offset=offset,
        best_metric=best_metric,
        ema=AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay
        else None,
    )
