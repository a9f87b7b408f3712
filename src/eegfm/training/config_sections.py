"""The sections every training run's config shares: ``optim:`` (AdamW and its schedule),
``loader:`` (batches, shuffling, augmentation) and ``wandb:`` (``training.config`` re-exports them)."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from eegfm.core.config import Config, ConfigError, check_bool, check_float, check_int, check_mapping, check_option
from eegfm.training.data.config import LoaderConfig

WANDB_MODES = ("offline", "online", "disabled")
_LOADER = LoaderConfig()
INF = math.inf  # no upper bound: check_int then names the range [low, inf]


@dataclasses.dataclass
class OptimConfig(Config):
    """AdamW with linear warmup then cosine decay to ``lr * min_lr_ratio`` at ``max_steps`` (None in
    fine-tuning: the schedule spans ``epochs``). ``grad_clip`` 0: off. ``layer_decay`` < 1:
    fine-tuning's layer k from the top trains at ``lr * layer_decay**k``."""

    lr: float = 5.0e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1.0e-8
    warmup_steps: int = 0
    max_steps: int | None = None
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum_steps: int = 1
    layer_decay: float = 1.0

    def validate(self) -> None:
        self.lr = check_float("optim.lr", self.lr, 0, 10, low_inclusive=False)
        self.weight_decay = check_float("optim.weight_decay", self.weight_decay, 0, 10)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ConfigError(f"optim.betas: expected two numbers in [0, 1); got {self.betas!r}")
        self.betas = tuple(check_float("optim.betas", b, 0, 1, high_inclusive=False) for b in self.betas)
        self.eps = check_float("optim.eps", self.eps, 0, 1, low_inclusive=False)
        self.warmup_steps = check_int("optim.warmup_steps", self.warmup_steps, 0, INF, whole_float=True)
        self.max_steps = check_int("optim.max_steps", self.max_steps, 1, INF, optional=True, whole_float=True)
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ConfigError(
                f"optim.warmup_steps: expected fewer than max_steps={self.max_steps}; "
                f"got {self.warmup_steps} (for a short run lower it too: "
                f"--set optim.warmup_steps={self.max_steps // 10})"
            )
        self.min_lr_ratio = check_float("optim.min_lr_ratio", self.min_lr_ratio, 0, 1)
        self.grad_clip = check_float("optim.grad_clip", self.grad_clip, 0)
        self.grad_accum_steps = check_int("optim.grad_accum_steps", self.grad_accum_steps, 1, 4096, whole_float=True)
        self.layer_decay = check_float("optim.layer_decay", self.layer_decay, 0, 1, low_inclusive=False)

    def lr_factor(self, step: int, total_steps: int | None = None) -> float:
        """Multiplier of ``lr`` at optimizer step ``step`` (0-based), for ``LambdaLR``."""
        total = self.max_steps if total_steps is None else total_steps
        if total is None:
            raise ConfigError("optim.max_steps: the cosine schedule needs a length; set max_steps or pass total_steps")
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclasses.dataclass
class LoaderSection(Config):
    """A run's ``loader:`` section, the ``LoaderConfig`` settings a user chooses
    (``training.steps.loader_config``). With a ``token_budget``, ``batch_size`` caps the windows
    per batch; ``augment`` holds ``AugmentConfig`` fields; ``drop_last`` applies to training only."""

    # The loader's own defaults (LoaderConfig): one set, wherever a loader is made from.
    batch_size: int = _LOADER.batch_size
    token_budget: int | None = _LOADER.token_budget
    num_workers: int | str = _LOADER.num_workers
    shuffle_buffer: int = _LOADER.shuffle_buffer
    full_shuffle_mb: float = _LOADER.full_shuffle_mb
    seed: int = _LOADER.seed
    augment: dict[str, Any] = dataclasses.field(default_factory=dict)  # AugmentConfig's fields: none set
    eeg_dtype: str = _LOADER.eeg_dtype
    drop_last: bool = _LOADER.drop_last

    def validate(self) -> None:
        check_option("loader.eeg_dtype", self.eeg_dtype, ("float32", "float16"))
        self.batch_size = check_int("loader.batch_size", self.batch_size, 1, 1 << 20, whole_float=True)
        self.token_budget = check_int("loader.token_budget", self.token_budget, 1, INF, optional=True, whole_float=True)
        if self.num_workers != "auto":
            try:
                self.num_workers = check_int("loader.num_workers", self.num_workers, 0, 1024, whole_float=True)
            except ConfigError:
                raise ConfigError(
                    f"loader.num_workers: expected an integer in [0, 1024] or 'auto'; got {self.num_workers!r}"
                ) from None
        self.shuffle_buffer = check_int("loader.shuffle_buffer", self.shuffle_buffer, 0, INF, whole_float=True)
        self.full_shuffle_mb = check_float("loader.full_shuffle_mb", self.full_shuffle_mb, 0.0)
        self.seed = check_int("loader.seed", self.seed, 0, 2**63 - 1, whole_float=True)
        self.augment = check_mapping("loader.augment", self.augment)
        self.drop_last = check_bool("loader.drop_last", self.drop_last)


@dataclasses.dataclass
class WandbConfig(Config):
    project: str = "eegfm"
    mode: str = "offline"
    run_name: str | None = None

    def validate(self) -> None:
        if not isinstance(self.project, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.project):
            raise ConfigError(f"wandb.project: expected 1-128 letters, digits, '_', '.' or '-'; got {self.project!r}")
        check_option("wandb.mode", self.mode, WANDB_MODES)
        if self.run_name is not None and not isinstance(self.run_name, str):
            raise ConfigError(f"wandb.run_name: expected a string or null; got {self.run_name!r}")
