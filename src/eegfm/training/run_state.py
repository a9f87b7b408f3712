"""A training run's resumable state, shared by pretraining and fine-tuning: what a checkpoint holds
and restores, the output folder's claim and run.json, and the check that every replica holds the
same weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eegfm.contract import layout
from eegfm.core.run_lock import hold_run_lock
from eegfm.training.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from eegfm.training.config import ConfigError
from eegfm.training.data import EEGLoader
from eegfm.training.distributed import Dist, unwrap

MODEL_KEYS = ("model", "model_overrides")  # the config fields that shape a pretraining model's parameters


@dataclasses.dataclass(kw_only=True)
class TrainState:
    """What every training loop steps and checkpoints (:func:`core_state`)."""

    cfg: Any  # the run's config section (PretrainConfig, FinetuneConfig)
    dist: Dist
    model: torch.nn.Module  # DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    loader: EEGLoader
    amp_dtype: torch.dtype
    step: int = 0
    samples: int = 0  # windows seen by all ranks
    best_metric: float = math.inf

    @property
    def global_step(self) -> int:
        """The step that checkpoints and metrics lines are numbered by."""
        return self.step

    def seed_parts(self) -> tuple[int, ...]:
        """The integers that fix this step's random stream (with the micro-batch's index)."""
        return (self.cfg.seed, self.dist.rank, self.step)

    def train_mode(self) -> None:
        """Put the modules that train into training mode (dropout on)."""
        self.model.train()


def core_state(run: TrainState) -> dict[str, Any]:
    """Model, optimizer, scheduler, scaler, every rank's loader position and the world size.
    Collective: every rank must call it."""
    return {
        "model": unwrap(run.model).state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": None if run.scaler is None else run.scaler.state_dict(),
        "loader": run.dist.gather_objects(run.loader.state_dict()),
        "samples": run.samples,
        "best_metric": None if math.isinf(run.best_metric) else run.best_metric,
        "world_size": run.dist.world_size,
        "config": run.cfg.to_dict(),
    }


def save_state(run: TrainState, output: Path, step: int, is_best: bool) -> Path | None:
    """Collective checkpoint of ``run.state_dict()`` as ``step``: every rank contributes its loader
    position, rank 0 writes (``is_best`` moves the ``best`` pointer, kept out of rotation)."""
    state = run.state_dict()
    path = None
    if run.dist.is_main:
        path = save_checkpoint(output / "checkpoints", step, state, keep_last=run.cfg.keep_last, is_best=is_best)
    run.dist.barrier()
    return path


def check_model_unchanged(
    saved: dict[str, Any], now: dict[str, Any], checkpoint: str | os.PathLike[str], keys: Sequence[str] = MODEL_KEYS
) -> None:
    """ConfigError where a config field in ``keys`` differs from the checkpoint's run's: its
    weights would not fit this run's model (or answer another task)."""
    changed = [
        f"{key} {saved[key]!r} -> {now.get(key)!r}" for key in keys if key in saved and saved[key] != now.get(key)
    ]
    if changed:
        raise ConfigError(
            f"resume: {checkpoint} was written by a run with other model settings "
            f"({'; '.join(changed)}); a checkpoint continues the run that wrote it: resume with its "
            f"settings, or start a new run (another --output, or --resume none)"
        )


def claim_output(output: str | os.PathLike[str], dist: Dist) -> None:
    """Rank 0 takes the run folder's lock; every rank fails alike when another run holds it."""
    if problem := dist.broadcast_object(hold_run_lock(output) if dist.is_main else None):
        raise ConfigError(problem)


def write_run_json(output: Path, dist: Dist, **fields: Any) -> None:
    """``run.json``: the run's ``fields`` and the machine it runs on."""
    output.mkdir(parents=True, exist_ok=True)
    fields.update(world_size=dist.world_size, backend=dist.backend, device=str(dist.device), torch=torch.__version__)
    (output / layout.RUN).write_text(json.dumps(fields, indent=2, sort_keys=True, default=str))


def resume_checkpoint(resume: str, output: Path, dist: Dist) -> tuple[str, dict[str, Any]] | None:
    """The checkpoint ``--resume`` names, chosen by rank 0, and its state on every rank; None to
    start afresh."""
    start = resolve_resume(resume, output / "checkpoints") if dist.is_main else None
    start = dist.broadcast_object(None if start is None else str(start))
    return None if start is None else (start, load_checkpoint(start, map_location="cpu"))


def load_core_state(run: TrainState, state: dict[str, Any]) -> None:
    """Restore what :func:`core_state` saved (this rank's loader position)."""
    if state["world_size"] != run.dist.world_size:
        raise ConfigError(
            f"resume: the checkpoint was written by {state['world_size']} ranks, this run has "
            f"{run.dist.world_size}; the data position is per rank, so resume with the same world size"
        )
    unwrap(run.model).load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    try:
        run.loader.load_state_dict(state["loader"][run.dist.rank])
    except ValueError as err:  # e.g. --data now names other files: one line, exit 2, not a traceback
        raise ConfigError(
            f"resume: the checkpoint's data position does not fit this run ({err}); a checkpoint "
            f"continues the run that wrote it: give that run's --data and loader settings, or "
            f"start a new run (another --output, or --resume none)"
        ) from err
    run.samples = int(state["samples"])
    run.best_metric = math.inf if state.get("best_metric") is None else float(state["best_metric"])


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in name order: equal digests = identical replicas."""
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_replicas(run: TrainState, output: Path) -> list[str]:
    """Gather each rank's parameter digest; rank 0 records them, and differing replicas (a missed
    all-reduce, non-deterministic kernels) fail here rather than go unnoticed."""
    digests = run.dist.gather_objects(parameter_digest(run.model))
    if run.dist.is_main:
        (output / "replicas.json").write_text(
            json.dumps({"step": run.step, "backend": run.dist.backend, "digests": digests}, indent=2)
        )
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged at step {run.step}: parameter digests per rank {digests}")
    return digests
