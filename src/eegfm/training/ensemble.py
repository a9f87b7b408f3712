"""Fit an ensemble of fine-tuned models: ``python -m eegfm.training.ensemble --members A B --data D --output O``.

The members (fine-tuning run folders or their ``model/`` folders: the eegfm encoder, the
spectrogram CNN ...) are loaded, the data is split exactly as fine-tuning splits it
(``finetune.plan.plan_data`` with the same ``--config`` / ``--set``; a member whose run.json
records another split is refused, since its training windows would then be scored as held out),
every member predicts the validation (and test) windows, and the stacking weights are fitted on
the VALIDATION windows only (``model.ensemble.fit_stacking``). The output is a run folder like
fine-tuning's: ``model/`` (ensemble.json and the members, with the preprocessing recipe, so
``eegfm-predict --model O`` and the server load it), ``eval.json`` (every member and the ensemble
side by side on validation and test: KL, balanced accuracy ...; the selective-prediction summary
with the members as the uncertainty samples, drawn to ``selective.png``) and ``run.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Only what the parser needs: --help, a usage error and shell completion import no torch
# (tests/test_commands.py); the config and the stacking (ensemble_fit) are imported by the
# functions that use them.
from eegfm.core.allocator import keep_freed_memory
from eegfm.core.config import ConfigError, check_range, user_file_path, user_path
from eegfm.core.logs import setup_logging
from eegfm.core.tasks import FINETUNE_TASKS
from eegfm.core.threads import fair_threads

if TYPE_CHECKING:
    from eegfm.training.config import FinetuneConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-ensemble",
        description="Stack fine-tuned models (eegfm encoder, spectrogram CNN ...) into one ensemble model "
        "folder: weights fitted on the validation windows of fine-tuning's split, every member and the "
        "ensemble compared on validation and test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--members",
        required=True,
        nargs="+",
        type=user_path,
        metavar="DIR",
        help="fine-tuning run folders (or their model/ folders) of the members, all with the same labels",
    )
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        type=user_path,
        metavar="DIR",
        help="the pipeline output folder(s) the members were fine-tuned on (the split is computed again)",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=user_file_path,
        help="run folder to write: model/ (ensemble.json, members/, preprocess.json), eval.json, run.json",
    )
    parser.add_argument(
        "--config",
        type=user_path,
        default="cpu-tiny",
        help="the fine-tuning config preset or YAML the members used: its split settings (val_fraction, "
        "test_fraction, seed, split_group ...), task and loader are read",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable) as the members' fine-tuning did, e.g. --set test_fraction=0.2",
    )
    parser.add_argument(
        "--bias",
        choices=("fit", "none"),
        default="none",
        help="keep the per-class offset at 0 (none), or fit it beside the member weights (fit: for a "
        "validation split large enough to fit six offsets; on the simulated benchmark's 30-window "
        "folds it doubled the held-out KL)",
    )
    parser.add_argument(
        "--bias_l2",
        type=float,
        default=1e-4,
        help="L2 penalty on the per-class offset; larger values shrink it towards the members' own prior",
    )
    parser.add_argument(
        "--record_task",
        default=None,
        help="the `task` value of the windows; None: the task's own (hms6 -> hms6)",
    )
    return parser


@dataclasses.dataclass(frozen=True)
class StackJob:
    """What a stacking reads and writes beside its fine-tuning config: the ``members``' run (or
    model) folders, the ``data`` they were fine-tuned on, the ``output`` run folder, the windows'
    ``record_task`` (None: the config task's), and whether the per-class offset is fitted
    (``fit_bias``) under an L2 penalty of ``bias_l2``."""

    members: tuple[str, ...]
    data: tuple[str, ...]
    output: Path
    record_task: str | None = None
    fit_bias: bool = False
    bias_l2: float = 1e-4

    def __post_init__(self) -> None:
        check_range("--bias_l2", self.bias_l2, 0.0, 1e6)


def stack(cfg: FinetuneConfig, job: StackJob) -> int:
    """The stacking job (:func:`fit_ensemble` into ``job.output``, created); 0 done, 2 bad input
    (one line on stderr)."""
    from eegfm.training.ensemble_fit import fit_ensemble

    try:
        record_task = job.record_task or FINETUNE_TASKS.get(cfg.task)
        if record_task is None:
            raise ConfigError(f"--record_task: task {cfg.task!r} needs the `task` value its windows carry")
        job.output.mkdir(parents=True, exist_ok=True)
        stacking = {"fit_bias": job.fit_bias, "l2": job.bias_l2}
        fit_ensemble(job.members, list(job.data), job.output, cfg, record_task, **stacking)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"ensemble: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    keep_freed_memory()  # a training step's freed tensors stay for the next: core/allocator.py
    args = build_parser().parse_args(argv)
    setup_logging("INFO")
    from eegfm.training.config import load_config  # after --help: it imports torch

    try:
        cfg = load_config(args.config, "finetune", list(args.set))
        members, data = tuple(map(str, args.members)), tuple(map(str, args.data))
        job = StackJob(members, data, args.output, args.record_task, args.bias == "fit", args.bias_l2)
    except (ConfigError, ValueError) as err:
        print(f"ensemble: {err}", file=sys.stderr)
        return 2
    return stack(cfg, job)


if __name__ == "__main__":
    sys.exit(main())
