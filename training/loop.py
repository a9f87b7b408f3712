"""What pretraining and fine-tuning share: seeding, the optimizer step, the resumable core state,
the replicas' check, the data-wait timer and the options of every training command."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegfm.contract import layout
from eegfm.contract.schema import SchemaError
from eegfm.contract.tfrecord import CorruptTFRecordError
from eegfm.core.config import user_path
from eegfm.core.run_lock import hold_run_lock
from eegfm.core.stores import StoreUnreachableError
from eegfm.training.augment import AugmentConfig
from eegfm.training.checkpoint import CheckpointError, load_checkpoint, resolve_resume, save_checkpoint
from eegfm.training.config import ConfigError, LoaderSection, RunConfig
from eegfm.training.data import EEGLoader, LoaderConfig, RecordFilter
from eegfm.training.distributed import BACKENDS, Dist, DistributedError, init_distributed, unwrap

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped by a signal", so schedulers restart the job


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


MODEL_KEYS = ("model", "model_overrides")  # the config fields that shape a pretraining model's parameters


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


STARVED_FRACTION = 0.2  # share of an interval's wall time spent waiting for data that the loops warn about


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


# ------------------------------------------------------------------------------------------ CLI
def add_run_arguments(parser: argparse.ArgumentParser, *, kind: str) -> None:
    """The options of every training command (``kind``: pretrain or finetune)."""
    parser.add_argument(
        "--data",
        type=user_path,
        required=True,
        nargs="+",
        action="extend",
        metavar="DIR",
        help="the pipeline's output folder(s) (OUTPUT/<site>/part-*.tfrecord), local or gs://; "
        "several (--data A B, or --data A --data B: runs over other corpora, or later batches "
        "of recordings) are read as one data set, and must agree on channels, sampling rate, "
        "quality metrics and each task's classes",
    )
    parser.add_argument(
        "--config",
        type=user_path,
        default="cpu-tiny",
        help=f"a preset in training/configs (cpu-tiny, cpu-small, base, large-gpu) or a YAML file; its {kind}: "
        "section is used",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable), e.g. --set optim.lr=3e-4 "
        "--set loader.batch_size=16 --set model_overrides.dropout=0.2",
    )
    parser.add_argument(
        "--resume",
        type=user_path,
        default="auto",
        help="'auto' (newest valid checkpoint in OUTPUT/checkpoints, if any), 'none', or a checkpoint directory",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=list(BACKENDS),
        help="process group (default: the config's backend); auto = NCCL on GPU, gloo on CPU, "
        "horovod under horovodrun; without a launcher every choice but horovod runs one process",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto picks this rank's GPU when CUDA is available",
    )
    parser.add_argument(
        "--stop_after",
        type=int,
        default=None,
        help=f"checkpoint and exit (status {PREEMPTED_EXIT_CODE}) after this many steps of this "
        "invocation, as on preemption",
    )
    parser.add_argument(
        "--allow_partial",
        action="store_true",
        help="train on the shards there are when --data's shards are not those its manifest.json lists "
        "(missing, empty, extra) or it has no manifest (a run stopped mid-write); a warning names what "
        "is missing. Without it such data is refused (exit 2). Same as --set allow_partial=true",
    )
    parser.add_argument(
        "--wandb",
        default=None,
        choices=["offline", "online", "disabled"],
        help="override wandb.mode (offline needs no account; upload later with `wandb sync`)",
    )


def run_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides from the common options (``--set`` first, flags after, so flags win)."""
    flags = [f"wandb.mode={args.wandb}"] if args.wandb else []
    return list(args.set) + flags + (["allow_partial=true"] if args.allow_partial else [])


_BAD_INPUT = (ConfigError, CheckpointError, FileNotFoundError, StoreUnreachableError, CorruptTFRecordError, SchemaError)


def launch(prog: str, backend: str, device: str, train: Callable[[Dist], int]) -> int:
    """Join the process group, run ``train``, leave the group; bad input exits 2 with one line."""
    try:
        dist = init_distributed(backend, device=device)
    except DistributedError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    try:
        return train(dist)
    except _BAD_INPUT as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    finally:
        dist.shutdown()
