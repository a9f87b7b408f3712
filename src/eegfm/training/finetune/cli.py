"""The ``python -m eegfm.training.finetune`` command: its options and the run under a launcher.

The parser is built from light modules only, so ``--help``, a usage error and shell completion
import no torch (tests/test_commands.py); the config, the launch and the training loop are
imported by the functions that use them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

from eegfm.core.allocator import keep_freed_memory
from eegfm.core.config import ConfigError, user_file_path, user_path
from eegfm.core.logs import setup_logging
from eegfm.core.tasks import FINETUNE_TASKS, TASK_CLASSES
from eegfm.core.threads import fair_threads
from eegfm.training.config_choices import FINETUNE_MODES, TASK_HEADS
from eegfm.training.run_options import RunSpec, add_run_arguments, run_overrides

if TYPE_CHECKING:
    from eegfm.training.config import FinetuneConfig
    from eegfm.training.distributed import Dist


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-finetune",
        description="Fine-tune a pretrained eegfm encoder on a labeled task (HMS six-class expert votes, "
        "eegmat rest/task, ...): linear probe, adapters or full fine-tuning with layer-wise lr decay and "
        "gradual unfreezing; subject-grouped validation split, early stopping, temperature scaling; "
        "writes a Hugging Face model folder and eval.json. Run it under torchrun for DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(parser, kind="finetune")
    parser.add_argument(
        "--pretrained",
        default=None,
        type=user_path,
        help="Hugging Face model folder with config.json: the model/ folder of training.pretrain "
        "(or its run folder; model-best/ for the checkpoint with the lowest validation loss, "
        "where pretraining wrote one), or an earlier fine-tuned model; required for --architecture "
        "eegfm, optional for architectures trained from scratch (spectrogram_cnn: continue a saved one)",
    )
    # No choices: the architectures are model.registry's, which imports torch; the config refuses
    # another name (exit 2) with the registered ones.
    parser.add_argument(
        "--architecture",
        default=None,
        help="the task model: eegfm (the pretrained encoder on raw EEG), spectrogram_cnn (an "
        "EfficientNet-style CNN on the windows' spectrogram), eeg_cnn_gru (a small 1-D CNN-GRU on raw "
        "EEG; both ensemble members, python -m eegfm.training.ensemble), cbramod or labram (peer EEG "
        "transformers built from their papers); all but eegfm from random initialisation, mode full; "
        "default: the config's architecture",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=user_file_path,
        help="run folder: model/ (Hugging Face), eval.json, confusion.png (classification), "
        "sites.png (held-out metrics by site), metrics.jsonl, curves.png (learning curves), run.json, "
        "checkpoints/, wandb/",
    )
    parser.add_argument(
        "--task",
        default=None,
        choices=sorted(TASK_HEADS),
        help="label space and head (hms6: KL to expert-vote distributions; "
        + "; ".join(
            f"{task}: {', '.join(TASK_CLASSES[record])}" for task, record in FINETUNE_TASKS.items() if task != "hms6"
        )
        + "; binary/multiclass/regression: generic heads on the windows' `label`, with --record_task); "
        "default: the config's task",
    )
    parser.add_argument(
        "--mode",
        default=None,
        choices=FINETUNE_MODES,
        help="linear probe (frozen encoder), adapters (adapter_kind/adapter_rank) or full "
        "fine-tuning; default: the config's mode",
    )
    parser.add_argument(
        "--background",
        type=user_path,
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help="pipeline output folder(s) of real recordings preprocessed with --background hms6 (every "
        "window Other, with all of its votes), read beside --data (repeatable): the task's people "
        "without its findings, which a simulator's windows lack. Their people are split into train "
        "and validation on their own; those of the corpus splits background_exclude_corpus_splits "
        "(default dev, eval: a corpus's held-out people) are left out. A folder without such windows "
        "is refused. --task hms6 only",
    )
    parser.add_argument(
        "--record_task",
        default=None,
        help="the `task` value of the windows to train on (default: "
        + ", ".join(f"{task} -> {record}" for task, record in FINETUNE_TASKS.items())
        + "; eegmmi's executed movements: eegmmi_movement; required for binary/multiclass/regression)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The run's config: ``--config`` with ``--set``, then ``--task`` and ``--mode`` on top."""
    from eegfm.training.config import load_config

    overrides = run_overrides(args)
    overrides += [f"task={args.task}"] if args.task else []
    overrides += [f"mode={args.mode}"] if args.mode else []
    overrides += [f"architecture={args.architecture}"] if args.architecture else []
    if args.task == "regression" and not any(o.partition("=")[0].strip() == "temperature_scaling" for o in overrides):
        # The presets calibrate classifiers; a regression head has no probabilities to calibrate.
        overrides.append("temperature_scaling=false")
    return load_config(args.config, "finetune", overrides)


@dataclasses.dataclass(frozen=True)
class FinetuneJob:
    """A fine-tuning run beside its config: where it reads, writes and launches (``run``), the
    model it starts from (``pretrained``; None for an architecture trained from scratch), the
    windows' task (``record_task``; None: the config task's) and ``background`` folders."""

    run: RunSpec
    pretrained: str | None = None
    record_task: str | None = None
    background: tuple[str, ...] = ()


def finetune(cfg: FinetuneConfig, job: FinetuneJob) -> int:
    """The fine-tuning job: ``cfg`` on ``job``, on one process or under torchrun/horovodrun; its
    exit status (0 done, 2 bad input, with one line on stderr; 143 stopped and checkpointed).
    :func:`~training.finetune.loop.train` holds the output's run lock while it trains."""
    from eegfm.training.command import launch
    from eegfm.training.finetune.initial_model import check_pretrained
    from eegfm.training.finetune.loop import train

    try:
        check_pretrained(job.pretrained, cfg)  # before the process group: a wrong folder fails at once
    except ConfigError as err:
        print(f"finetune: {err}", file=sys.stderr)
        return 2
    run = job.run

    def work(dist: Dist) -> int:
        setup_logging("INFO" if dist.is_main else "WARNING")  # split, epochs, calibration: rank 0 reports
        return train(
            cfg,
            dist,
            list(run.data),
            job.pretrained,
            run.output,
            run.resume,
            job.record_task,
            run.stop_after,
            background=job.background,
        )

    return launch("finetune", run.backend or cfg.backend, run.device, work)


def job_from_args(args: argparse.Namespace) -> FinetuneJob:
    """The :class:`FinetuneJob` of the parsed command line."""
    return FinetuneJob(RunSpec.from_args(args), args.pretrained, args.record_task, tuple(args.background))


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    keep_freed_memory()  # a training step's freed tensors stay for the next: core/allocator.py
    args = build_parser().parse_args(argv)
    try:
        cfg, job = config_from_args(args), job_from_args(args)
    except ConfigError as err:
        print(f"finetune: {err}", file=sys.stderr)
        return 2
    return finetune(cfg, job)
