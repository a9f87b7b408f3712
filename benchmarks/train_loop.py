"""The real pretraining loop's throughput, against the bare step it runs; prints one JSON object.

``benchmarks/train.py`` times the loader and the model step apart. This runs the loop itself,
``torchrun -m eegfm.training.pretrain`` with a training preset (loader workers, hand-off, host-to-device
copies, the step, logging, checkpoints at the end), and reads the throughput it logs:

- ``intervals``: samples/s of every ``--log-every``-step interval, as ``metrics.jsonl`` has them;
- ``steady``: their median from step ``--skip-steps`` on (compilation, the loader's start and the
  learning-rate warm-up come first), in windows and tokens per second, and the median share of
  the wall time the loop waited for its next batch (``data_wait_fraction``, the slowest rank's:
  near 0 while the loader keeps up);
- ``step``: with ``--compare-step``, ``benchmarks.pretraining_step.step_throughput`` of the same model, batch
  per rank, compile setting and model overrides on the same device, in this process after the
  loop, on random 10 s windows in bf16 autocast (the GPU presets' precision): what one rank would
  reach if the data and the loop cost nothing. ``loop_over_step`` is the loop's samples/s per rank
  over it (1.0: the loop adds nothing to the step).

A pipeline output is usually far smaller than a pretraining corpus, and each loader worker ends
its epoch with an incomplete batch (dropped by the GPU presets' ``drop_last``), so ``--copies N``
links the site folders N times into a temporary corpus (no data is copied) to give every worker
many batches per epoch, as on a real corpus.

    python benchmarks/train_loop.py (--data DIR | --synthetic WINDOWS) [--config base] [--copies 40] [--nproc 1]
                                    [--max-steps 120] [--skip-steps 40] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpora import link_corpus  # noqa: E402
from benchmarks.synthetic_corpus import WINDOWS_PER_FILE, write_corpus  # noqa: E402
from eegfm.contract import layout  # noqa: E402

NEEDS_INPUT = "a preprocessed folder (--data) or --synthetic N"  # make bench skips it


def steady_state(metrics: list[dict], skip_steps: int) -> dict:
    """Median samples/s and tokens/s of the logged intervals ending after ``skip_steps``."""
    kept = [m for m in metrics if m["step"] > skip_steps and "samples_per_s" in m]
    if not kept:
        raise ValueError(
            f"skip_steps: no logged interval ends after step {skip_steps} "
            f"(last logged step: {metrics[-1]['step'] if metrics else None}); "
            "run more steps or skip fewer"
        )
    return {
        "from_step": skip_steps,
        "intervals": len(kept),
        "samples_per_s": round(statistics.median(m["samples_per_s"] for m in kept), 1),
        "tokens_per_s": round(statistics.median(m["tokens_per_s"] for m in kept)),
        "data_wait_fraction": round(statistics.median(m.get("data_wait_fraction", math.nan) for m in kept), 4),
    }


def _pretrain_command(corpus: Path, output: Path, args: argparse.Namespace) -> list[str]:
    # Training throughput only: no held-out subjects, no validation passes (--set val_fraction=... restores them).
    overrides = [
        f"log_every={args.log_every}",
        "wandb.mode=disabled",
        "val_fraction=0",
        f"optim.warmup_steps={max(1, min(args.max_steps // 4, 100))}",
        f"save_every={args.max_steps}",
        *args.set,
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    return [
        *launcher,
        "-m",
        "eegfm.training.pretrain",
        "--data",
        str(corpus),
        "--output",
        str(output),
        "--config",
        args.config,
        "--max_steps",
        str(args.max_steps),
        *[item for override in overrides for item in ("--set", override)],
    ]


def _compare_step(run: dict, config: str, overrides: list[str], batch: int) -> dict:
    """The bare step of the loop's model and settings, timed in this process."""
    # torch and the model only here: the loop itself runs under torchrun, in a subprocess.
    import torch

    from benchmarks.pretraining_step import bf16_peak, step_throughput
    from eegfm.training.config import load_config

    cfg = load_config(config, "pretrain", overrides)
    device = torch.device(run["device"])  # rank 0's
    peak = bf16_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    return step_throughput(
        device,
        preset=cfg.model,
        batch=batch,
        compile=cfg.compile,
        peak=peak,
        overrides=cfg.model_overrides,
        tf32=cfg.tf32,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a pipelines.job.preprocess output folder")
    source.add_argument(
        "--synthetic",
        type=int,
        metavar="WINDOWS",
        help="instead of --data, write a corpus of this many 10 s windows of noise in files "
        f"of {WINDOWS_PER_FILE} (benchmarks/synthetic_corpus.py; needs no Beam) into a temporary "
        "folder",
    )
    parser.add_argument("--config", default="base", help="training preset (default: base)")
    parser.add_argument(
        "--copies",
        type=int,
        default=None,
        help="link the corpus this many times (default: 40 for --data, 1 for --synthetic), so "
        "every loader worker has many batches an epoch, as on a real corpus",
    )
    parser.add_argument("--nproc", type=int, default=1, help="ranks on this machine (torchrun --nproc_per_node)")
    parser.add_argument("--max-steps", type=int, default=120, help="optimizer steps to run (default 120)")
    parser.add_argument(
        "--skip-steps",
        type=int,
        default=40,
        help="steps left out of the steady state: compilation, loader start, warm-up (default 40)",
    )
    parser.add_argument("--log-every", type=int, default=10, help="steps per logged interval (default 10)")
    parser.add_argument(
        "--compare-step",
        action="store_true",
        help="also time the bare step of the same model and settings, in this process",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for the run, e.g. loader.batch_size=512 (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the training run may take")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits through ``parser.error`` on an option out of its range."""
    if args.synthetic is not None and args.synthetic < 1:
        parser.error(f"--synthetic: expected an integer >= 1; got {args.synthetic}")
    for name in ("copies", "nproc", "max_steps", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1; got {getattr(args, name)}")
    if not 0 <= args.skip_steps < args.max_steps:
        parser.error(f"--skip-steps: expected an integer in [0, --max-steps={args.max_steps}); got {args.skip_steps}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.copies is None:
        args.copies = 40 if args.data is not None else 1
    _check_args(parser, args)
    # training.config loads torch (6 s): not for --help or a bad argument.
    from eegfm.training.config import load_config

    cfg = load_config(args.config, "pretrain", args.set)  # a bad override fails here, not in torchrun
    result: dict = {
        "benchmark": "train_loop",
        "config": args.config,
        "overrides": args.set,
        "nproc": args.nproc,
        "copies": args.copies,
        "batch_size": cfg.loader.batch_size,
        "compile": cfg.compile,
        "drop_last": cfg.loader.drop_last,
        "max_steps": args.max_steps,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if args.synthetic is not None:
            data = tmp / "synthetic"
            write_corpus(data, args.synthetic)
            result["synthetic_windows"] = args.synthetic
        result["windows"] = link_corpus(data, args.copies, tmp / "corpus")
        env = dict(os.environ, WANDB_SILENT="true")
        started = time.perf_counter()
        done = subprocess.run(
            _pretrain_command(tmp / "corpus", tmp / "run", args),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        result["wall_s"] = round(time.perf_counter() - started, 1)
        if done.returncode:
            raise SystemExit(f"training.pretrain failed ({done.returncode}):\n{done.stderr[-3000:]}")
        metrics = [json.loads(line) for line in (tmp / "run" / layout.METRICS).read_text().splitlines() if line]
        metrics = [m for m in metrics if "samples_per_s" in m]  # training lines, not validation-only ones
        run = json.loads((tmp / "run" / layout.RUN).read_text())
    result["device"] = run["device"]
    result["intervals"] = [
        {
            "step": m["step"],
            "samples_per_s": round(m["samples_per_s"], 1),
            "loss": round(m["loss"], 4),
            "data_wait_fraction": round(m.get("data_wait_fraction", math.nan), 4),
        }
        for m in metrics
    ]
    result["steady"] = steady_state(metrics, args.skip_steps)
    last = metrics[-1]
    result["memory"] = {k: round(v) for k, v in last.items() if k.startswith("memory/")}
    if args.compare_step:
        per_rank = cfg.loader.batch_size
        step = _compare_step(run, args.config, args.set, per_rank)
        result["step"] = {k: step[k] for k in ("batch", "compile", "step_ms", "samples_per_s", "tokens_per_s", "mfu")}
        result["loop_over_step"] = round(result["steady"]["samples_per_s"] / args.nproc / step["samples_per_s"], 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
