"""Self-supervised pretraining of the eegfm encoder on the pipeline's TFRecords.

One process per device, launched by any of::

    python -m eegfm.training.pretrain --data D --output O --config cpu-tiny             # one process
    torchrun --nproc_per_node=2 -m eegfm.training.pretrain --data D --output O ...      # DDP (gloo/NCCL)
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 \\
        --max-restarts=3 -m eegfm.training.pretrain ...                                  # multi-node
    horovodrun -np 2 -H localhost:2 python -m eegfm.training.pretrain --backend horovod ...

``optim.max_steps`` optimizer steps of ``optim.grad_accum_steps`` micro-batches. All randomness is a
function of (seed, rank, step), so a run resumed from a checkpoint continues bit for bit (on CPU
with ``deterministic: true``). SIGTERM checkpoints at the step boundary and exits 143, for the
scheduler to restart with ``--resume auto``. Validation (``val_fraction`` > 0) ranks checkpoints
for ``best``; without it ``best`` follows the training loss. Outputs: see ``build_parser``. The
command is here; the run (:func:`~training.pretrain_loop.train`) is ``pretrain_loop``'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Only what the parser needs: --help, a usage error and shell completion import no torch
# (tests/test_commands.py); the config, the launch and the loop (pretrain_loop) are imported by
# the functions that use them.
from eegfm.core.allocator import keep_freed_memory
from eegfm.core.config import ConfigError, user_file_path
from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.threads import fair_threads
from eegfm.training.config_choices import AUTO
from eegfm.training.run_options import RunSpec, add_run_arguments, run_overrides

if TYPE_CHECKING:
    from eegfm.training.config import PretrainConfig
    from eegfm.training.distributed import Dist

log = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-pretrain",
        description="Self-supervised pretraining (masked reconstruction + contrastive channel "
        "prediction) of the eegfm encoder on the preprocessing pipeline's TFRecords, or of a peer "
        "encoder by masked patch modeling (--set architecture=cbramod|labram). Run it under "
        "torchrun for DDP or horovodrun (--backend horovod) for Horovod.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(parser, kind="pretrain")
    parser.add_argument(
        "--output",
        required=True,
        type=user_file_path,
        help="run folder: checkpoints/, model/ (Hugging Face; model-best/ where validation ranked an "
        "earlier checkpoint first), metrics.jsonl, curves.png (learning curves), run.json, wandb/",
    )
    parser.add_argument("--max_steps", type=int, default=None, help="override optim.max_steps")
    parser.add_argument(
        "--threads",
        type=_threads,
        default=AUTO,
        help="torch intra-op threads of each rank; auto: OMP_NUM_THREADS where set, else the rank's share of the "
        "cores this process may use (on a CPU all of them, on a GPU those its loader workers leave). The "
        "loader's workers are --set loader.num_workers=N (auto: from the machine)",
    )
    return parser


def _threads(text: str) -> int | str:
    if text == AUTO:
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number or {AUTO!r}; got {text!r}")
    return int(text)


def pretrain_config(
    config: str, overrides: Sequence[str] = (), max_steps: int | None = None
) -> tuple[PretrainConfig, str]:
    """``config`` (a preset or YAML file) with ``overrides`` and ``max_steps``, and a note for the
    log: a ``max_steps`` at or below the config's warm-up shortens the warm-up to a tenth of the
    run, unless ``overrides`` give the warm-up."""
    from eegfm.training.config import load_config

    overrides = list(overrides)
    if max_steps is None:
        return load_config(config, "pretrain", overrides), ""
    with_steps = [*overrides, f"optim.max_steps={max_steps}"]
    if any(item.split("=", 1)[0].strip() in ("optim", "optim.warmup_steps") for item in overrides):
        return load_config(config, "pretrain", with_steps), ""
    warmup = load_config(config, "pretrain", overrides).optim.warmup_steps
    if warmup < max_steps or max_steps < 1:  # below 1: the config's check names max_steps
        return load_config(config, "pretrain", with_steps), ""
    note = (
        f"--max_steps {max_steps}: the config's {warmup} warm-up steps would fill the run; "
        f"warming up for {max_steps // 10} instead (--set optim.warmup_steps=N to choose)"
    )
    return load_config(config, "pretrain", [*with_steps, f"optim.warmup_steps={max_steps // 10}"]), note


def pretrain(cfg: PretrainConfig, run: RunSpec, threads: int | str | None = AUTO, note: str = "") -> int:
    """The pretraining job: ``cfg`` on ``run``'s data into its output folder, on one process or
    under torchrun/horovodrun; its exit status (0 done, 2 bad input, 143 stopped and checkpointed).
    :func:`~training.pretrain_loop.train` holds the output's run lock while it trains. ``note``:
    logged once logging is set up."""
    from eegfm.training.command import launch
    from eegfm.training.pretrain_loop import train

    def job(dist: Dist) -> int:
        setup_logging("INFO" if dist.is_main else "WARNING")  # resume, saves, loader workers: rank 0 reports
        if note:
            log.info(note)
        return train(cfg, dist, list(run.data), run.output, run.resume, stop_after=run.stop_after, threads=threads)

    return launch("pretrain", run.backend or cfg.backend, run.device, job)


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    keep_freed_memory()  # a training step's freed tensors stay for the next: core/allocator.py
    args = build_parser().parse_args(argv)
    try:
        cfg, note = pretrain_config(args.config, run_overrides(args), args.max_steps)
        run = RunSpec.from_args(args)
    except ConfigError as err:
        print(f"pretrain: {err}", file=sys.stderr)
        return 2
    return pretrain(cfg, run, args.threads, note)


if __name__ == "__main__":
    sys.exit(main())
