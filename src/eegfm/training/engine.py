"""The training engine that pretraining and fine-tuning both drive: one optimizer step over
``grad_accum_steps`` micro-batches (:func:`train_step`), one log interval's training metrics
(:class:`Interval`), one validation (:func:`validate`) and one checkpoint save (:func:`save`).

A loop hands the engine only what its objective owns: ``forward(batch, micro)``, the micro-batch's
loss under autocast (:class:`MicroBatch`); its state (:class:`~eegfm.training.run_state.TrainState`)
says which random stream a step draws from and which modules train.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from eegfm.core.logs import get_logger
from eegfm.training import run_state
from eegfm.training.cpu_use import follow_neighbours
from eegfm.training.run_log import RunLog
from eegfm.training.run_state import TrainState
from eegfm.training.steps import backward, optimizer_step, step_seed

log = get_logger(__name__)


@dataclasses.dataclass
class MicroBatch:
    """What a loop's ``forward`` returns for one micro-batch."""

    loss: torch.Tensor  # the objective, before the 1/grad_accum_steps scaling
    samples: int  # windows in the micro-batch
    tokens: int = 0  # tokens as the encoder's blocks see them, where the loop counts them
    means: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # more metrics, averaged over the step
    minima: dict[str, float] = dataclasses.field(default_factory=dict)  # metrics reported as the step's least


@dataclasses.dataclass
class Step:
    """One optimizer step on this rank: its ``metrics`` (``loss``, the micro-batches' ``means``,
    ``grad_norm``, ``lr``; 0-dim device tensors where the device made them), the least of each of
    the micro-batches' ``minima``, its windows and tokens."""

    metrics: dict[str, Any]
    samples: int
    tokens: int
    minima: dict[str, float] = dataclasses.field(default_factory=dict)


Forward = Callable[[Any, int], MicroBatch]


def train_step(run: TrainState, batches: Iterator[Any], forward: Forward) -> Step:
    """One optimizer step over ``grad_accum_steps`` micro-batches of ``batches``; gradients are
    synchronised on the last one only."""
    dist, model, accum = run.dist, run.model, run.cfg.optim.grad_accum_steps
    follow_neighbours()  # threads from the machine make room for busy neighbours: core/neighbours.py
    run.train_mode()
    means: dict[str, Any] = {}
    minima: dict[str, float] = {}
    samples = tokens = 0
    for micro in range(accum):
        batch = next(batches)
        # Seeded after the fetch: a DataLoader iterator draws its base seed from the global
        # generator when it starts, which is at another step in a resumed run.
        torch.manual_seed(step_seed(*run.seed_parts(), micro))
        with dist.no_sync(model, skip=micro < accum - 1):
            out = forward(batch, micro)
            backward(out.loss / accum, run.scaler)
        for key, value in {"loss": out.loss, **out.means}.items():
            # Kept on the device and read only when the loop logs: float() here would wait for the GPU.
            means[key] = means.get(key, 0.0) + value.detach().double() / accum
        for key, value in out.minima.items():
            minima[key] = min(minima.get(key, math.inf), value)
        samples, tokens = samples + out.samples, tokens + out.tokens
    grad_norm = optimizer_step(model, run.optimizer, run.scheduler, run.scaler, dist, run.cfg.optim.grad_clip)
    run.step += 1
    run.samples += samples * dist.world_size
    lr = max(run.scheduler.get_last_lr())
    return Step({**means, "grad_norm": grad_norm, "lr": lr}, samples, tokens, minima)


class Interval:
    """The steps since the last log line: the mean of each step metric, the least of each
    minimum, the latest learning rate."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.minima: dict[str, float] = {}
        self.lr, self.steps = math.nan, 0

    def add(self, step: Step) -> None:
        for key, value in step.metrics.items():
            if key == "lr":
                self.lr = value
            else:
                self.sums[key] = self.sums.get(key, 0.0) + value
        for key, value in step.minima.items():
            self.minima[key] = min(self.minima.get(key, math.inf), value)
        self.steps += 1

    def mean_loss(self, dist) -> float:
        """The mean training loss over every rank's steps, or nan for no step. Collective."""
        return dist.mean({"loss": float(self.sums.get("loss", math.nan)) / max(1, self.steps)})["loss"]

    def reduce(self, dist) -> dict[str, float]:
        """The interval's metrics over the ranks. Collective."""
        metrics = dist.mean({key: float(value) / max(1, self.steps) for key, value in self.sums.items()})
        lows = dist.max({key: -float(value) for key, value in self.minima.items()})
        return {**metrics, **{key: -value for key, value in lows.items()}, "lr": float(self.lr)}

    def log(
        self,
        run: TrainState,
        run_log: RunLog,
        extra: dict[str, Any],
        name: Callable[[str], str] = str,
        **shown: str,
    ) -> None:
        """Collective: the interval's metrics over the ranks, its rates and ``extra`` as one
        metrics line (keys renamed by ``name``) at the run's global step and on the progress bar."""
        metrics = self.reduce(run.dist)
        metrics.update(run_log.rates(), **extra)
        run_log.record({name(key): value for key, value in metrics.items()}, run.global_step)
        run_log.end_interval(metrics, run.loader.config.num_workers, **shown)


def validate(run_log: RunLog, evaluate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The loop's validation metrics now; their time is left out of the interval's rates."""
    with run_log.paused():
        return evaluate()


def save(run: TrainState, output: Path, is_best: bool) -> Path | None:
    """Collective checkpoint at the run's global step; ``is_best`` moves the ``best`` pointer."""
    path = run_state.save_state(run, output, run.global_step, is_best)
    if is_best and path is not None:
        log.info("best checkpoint so far: %s", path)
    return path
