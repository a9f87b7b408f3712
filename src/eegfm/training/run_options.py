"""The options every training command shares on its command line (``add_run_arguments``), what
they name (:class:`RunSpec`) and the config overrides they make (``run_overrides``).

Only the standard library and ``core.config``: each command's ``--help`` builds its parser from
here without importing torch (tests/test_commands.py); the launch is ``training.command``'s.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from eegfm.core.config import ConfigError, check_option, user_path

# The process groups ``training.distributed`` joins ("none": one process, whatever the launcher).
BACKENDS = ("auto", "none", "gloo", "nccl", "horovod")
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped by a signal", so schedulers restart the job


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


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a training job reads and writes and how it launches, beside its config: ``data`` (the
    pipeline's output folders), ``output`` (the run folder), ``resume`` (auto, none or a checkpoint),
    ``backend`` (None: the config's), ``device`` and ``stop_after`` (steps of this invocation)."""

    data: tuple[str, ...]
    output: Path
    resume: str = "auto"
    backend: str | None = None
    device: str = "auto"
    stop_after: int | None = None

    def __post_init__(self) -> None:
        if not self.data:
            raise ConfigError("--data: expected one or more folders; got none")
        check_option("--backend", self.backend, (None, *BACKENDS))
        check_option("--device", self.device, ("auto", "cpu", "cuda"))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSpec:
        """From a training command's parsed options (:func:`add_run_arguments` and its ``--output``)."""
        return cls(tuple(args.data), Path(args.output), args.resume, args.backend, args.device, args.stop_after)


def run_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides from the common options (``--set`` first, flags after, so flags win)."""
    flags = [f"wandb.mode={args.wandb}"] if args.wandb else []
    return list(args.set) + flags + (["allow_partial=true"] if args.allow_partial else [])
