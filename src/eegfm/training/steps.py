"""One training step and what surrounds it, shared by pretraining and fine-tuning: the per-step
seed, the loader's config, autocast and kernel settings, backward and the optimizer step, and the
timer of the wait for data."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from eegfm.training.augment import AugmentConfig
from eegfm.training.config import LoaderSection, RunConfig
from eegfm.training.data import LoaderConfig, RecordFilter
from eegfm.training.distributed import Dist, unwrap

STARVED_FRACTION = 0.2  # share of an interval's wall time spent waiting for data that the loops warn about


def step_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, rank, step, micro-step, ...): independent streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def loader_config(
    section: LoaderSection, patch_size: int, *, filters: RecordFilter | None = None, train: bool = True
) -> LoaderConfig:
    """The data loader's settings from a run config's ``loader`` section; evaluation loaders
    (``train=False``) keep the file order, do not augment and drop nothing."""
    return LoaderConfig(
        batch_size=None if section.token_budget else section.batch_size,
        token_budget=section.token_budget,
        max_batch_size=section.batch_size,
        patch_size=patch_size,
        drop_last=section.drop_last and train,
        num_workers=section.num_workers,
        shuffle=train,
        shuffle_buffer=section.shuffle_buffer,
        full_shuffle_mb=section.full_shuffle_mb,
        seed=section.seed,
        eeg_dtype=section.eeg_dtype,
        augment=AugmentConfig(**section.augment) if train else AugmentConfig(),
        # A window shorter than one patch is one the model cannot read.
        filters=dataclasses.replace(RecordFilter() if filters is None else filters, min_samples=patch_size),
    )


def autocast(dist: Dist, dtype: torch.dtype):
    """bf16/fp16 autocast on the run's device; a no-op context for fp32."""
    return torch.autocast(dist.device.type, dtype=dtype, enabled=dtype != torch.float32)


def configure_kernels(cfg: RunConfig, device: torch.device) -> None:
    """Process-wide kernel choices of a run (set both ways, so an earlier run's do not linger)."""
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=cfg.deterministic and device.type == "cuda")
    if cfg.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    dist: Dist,
    grad_clip: float,
) -> torch.Tensor:
    """Synchronise (Horovod), unscale (fp16), clip, step, zero; returns the pre-clip gradient norm
    as a 0-dim device tensor (reading it waits for the GPU, so the loops read it only to log)."""
    if dist.backend == "horovod":
        optimizer.synchronize()  # all-reduce now, so clipping sees the averaged gradients
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for p in unwrap(model).parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    skip_sync = optimizer.skip_synchronize() if dist.backend == "horovod" else contextlib.nullcontext()
    with skip_sync:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    optimizer.zero_grad()  # set_to_none by default (Horovod's wrapper takes no arguments)
    scheduler.step()
    return grad_norm.detach()


class TimedBatches:
    """A loader's batches with the time the loop spends waiting for them: an upper bound of the
    device's idle time for data, logged per interval as ``data_wait_fraction``."""

    def __init__(self, batches: Iterator[Any]):
        self._batches, self._waited, self._intervals, self._warned = batches, 0.0, 0, False

    def __iter__(self) -> TimedBatches:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            return next(self._batches)
        finally:
            self._waited += time.perf_counter() - start

    def waited(self) -> float:
        """Seconds spent waiting for batches since the previous call."""
        waited, self._waited = self._waited, 0.0
        return waited

    def starved(self, fraction: float, num_workers: int) -> str | None:
        """The warning for an interval that waited ``fraction`` of its time for data: once per run,
        and not for the first interval (whose first batch waits for the workers to start)."""
        self._intervals += 1
        if self._warned or self._intervals == 1 or not fraction > STARVED_FRACTION:
            return None
        self._warned = True
        more = (
            f"raise loader.num_workers (now {num_workers} per rank)"
            if num_workers
            else "give the loader worker processes (loader.num_workers; now 0: batches are built in the "
            "training process)"
        )
        return (
            f"the loader is the bottleneck: training waited for data {fraction:.0%} of the last interval's "
            f"wall time on the slowest rank; {more}, or set loader.eeg_dtype=float16 (half the bytes to hand over)"
        )
