"""Benchmark: the training input pipeline and the training loop's scaling; prints one JSON object.

1. Loader: windows/s of ``training.data.EEGLoader`` (0 and 2 workers) against the raw
   read + snappy-decompress bound of the same files (``contract.tfrecord.read_records``), and
   against what a training step consumes (target: >= 50 % of the bound and >= 10x the step).
2. Scaling: ``torchrun`` pretraining samples/s with 1 and 2 CPU ranks (gloo, one thread per
   rank, the same per-rank batch): efficiency = samples/s(2) / (2 x samples/s(1)), target >= 0.8.
3. GPU (only when CUDA is available): ``base`` preset forward+backward+AdamW in bf16 (TF32 for
   float32 products, as the GPU training presets run), tokens/s
   and model-FLOPs utilisation (FLOPs counted by ``torch.utils.flop_counter`` for one step,
   divided by the device's dense bf16 peak) for each of ``--gpu-batches``, eager and with
   ``torch.compile``; ``best`` is the fastest. Target >= 35 %. The loader is then also measured
   with the workers the ``base`` preset's ``num_workers: auto`` gives on that machine, and
   ``gpu.loader`` compares its float16 windows/s with the samples/s of every GPU run: a GPU step
   consumes far more than a CPU one, and the loader must stay >= 10x ahead of it too.

    python benchmarks/train.py [--data OUTPUT_OF_PREPROCESS] [--steps 60] [--rounds 3] [--skip-scaling]

Without ``--data`` a small multi-site corpus is simulated and preprocessed first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpora import simulate_and_preprocess  # noqa: E402
from eegfm.contract import layout  # noqa: E402


def _pretrain_throughput(data: Path, out: Path, ranks: int, steps: int, batch: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        "-m",
        "eegfm.training.pretrain",
        "--data",
        str(data),
        "--output",
        str(out),
        "--config",
        "cpu-tiny",
        "--max_steps",
        str(steps),
        "--set",
        f"loader.batch_size={batch}",
        "--set",
        "optim.warmup_steps=1",
        "--set",
        "log_every=1",
        "--set",
        f"save_every={steps * 10}",
        "--set",
        "wandb.mode=disabled",
        "--set",
        "backend=gloo",
        "--set",
        "deterministic=false",
        "--set",
        "val_fraction=0",
    ]  # training throughput only: no validation passes
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"pretraining with {ranks} ranks failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / layout.METRICS).read_text().splitlines()]
    rows = [row for row in rows if "samples_per_s" in row]  # training lines, not validation-only ones
    steady = rows[len(rows) // 3 :]  # skip start-up (allocator warm-up, first batches)
    sps = sum(r["samples_per_s"] for r in steady) / len(steady)
    return {
        "ranks": ranks,
        "steps": steps,
        "per_rank_batch": batch,
        "samples_per_s": round(sps, 2),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(max(r["memory/peak_rss_mb"] for r in rows)),
    }


def _gpu(steps: int, batches: tuple[int, ...], compile_modes: tuple[bool, ...]) -> dict | None:
    """``step_throughput`` of the ``base`` preset for each batch size, eager and compiled, with the
    model overrides of the ``base`` training preset (its GNN form)."""
    # torch and the model (6 s) only once the arguments are parsed: --help answers at once.
    import torch

    from benchmarks.pretraining_step import bf16_peak, step_throughput
    from eegfm.training.config import load_config

    if not torch.cuda.is_available():
        return None
    overrides = load_config("base").model_overrides
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = bf16_peak(name)
    runs = []
    for batch in batches:
        for compiled in compile_modes:
            try:
                runs.append(
                    step_throughput(device, batch=batch, steps=steps, compile=compiled, peak=peak, overrides=overrides)
                )
            except Exception as error:  # one failing variant (say, a compiler error) keeps the others' numbers
                runs.append(
                    {
                        "preset": "base",
                        "batch": batch,
                        "compile": compiled,
                        "error": f"{type(error).__name__}: {str(error)[:500]}",
                    }
                )
            torch.cuda.empty_cache()
    measured = [run for run in runs if "error" not in run]
    best = max(measured, key=lambda run: run["tokens_per_s"]) if measured else None
    return {"device": name, "bf16_peak_flops": peak, "runs": runs, "best": best, "target_mfu": ">= 0.35"}


def loader_vs_gpu(loader: dict, gpu: dict, workers: int) -> dict:
    """How far the loader (float16 batches, ``workers`` workers: the GPU presets') stays ahead of
    each GPU run's samples/s, and of the hungriest one."""
    case = loader["loader"][f"workers={workers},float16"]
    rate = case["windows_per_s"]
    measured = [run for run in gpu["runs"] if "error" not in run]
    hungriest = max(measured, key=lambda run: run["samples_per_s"])
    return {
        "workers": workers,
        "windows_per_s": rate,
        "times_step_per_run": [
            {"batch": run["batch"], "compile": run["compile"], "times_step": round(rate / run["samples_per_s"], 2)}
            for run in measured
        ],
        "times_hungriest_step": round(rate / hungriest["samples_per_s"], 2),
        "target": ">= 10",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="a preprocessing output folder (default: simulate one)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per scaling run")
    parser.add_argument("--batch", type=int, default=8, help="windows per rank per step in the scaling runs")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved 1-rank/2-rank scaling runs; the median of each is reported"
    )
    parser.add_argument("--skip-scaling", action="store_true", help="only the loader (and GPU) parts")
    parser.add_argument(
        "--gpu-batches",
        type=int,
        nargs="+",
        default=[64, 256],
        help="GPU part: windows per step to measure (each eager and compiled)",
    )
    parser.add_argument("--gpu-steps", type=int, default=20, help="GPU part: timed steps per measurement")
    parser.add_argument("--no-compile", action="store_true", help="GPU part: eager only, no torch.compile")
    args = parser.parse_args()
    # torch (5 s) only once the arguments are parsed: --help answers at once.
    import torch

    from benchmarks.train_loader import loader_benchmark, preset_workers

    cuda = torch.cuda.is_available()
    result: dict = {"benchmark": "train", "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 3 sites x 6 files let up to 18 workers read a file each on a GPU machine. num_workers: auto
        # gives each worker at least 4 batches an epoch, so the 216 windows simulated here get one
        # worker; --data with a larger corpus measures the preset's full count.
        data = args.data or simulate_and_preprocess(tmp, shards_per_site=6 if cuda else 0)
        result["data"] = str(args.data) if args.data else "simulated: 3 sites x 2 subjects x 6 min, 10 s windows"
        if not args.skip_scaling:
            # Interleaved rounds, median of each: one short run on a shared machine is noisy.
            runs: dict[int, list[dict]] = {1: [], 2: []}
            for round_ in range(args.rounds):
                for ranks in (1, 2):
                    runs[ranks].append(
                        _pretrain_throughput(data, tmp / f"r{round_}-{ranks}", ranks, args.steps, args.batch)
                    )
            one, two = (sorted(runs[r], key=lambda run: run["samples_per_s"])[len(runs[r]) // 2] for r in (1, 2))
            efficiency = two["samples_per_s"] / (2 * one["samples_per_s"])
            result["scaling"] = {
                "one_rank": one,
                "two_ranks": two,
                "efficiency": round(efficiency, 3),
                "efficiency_per_round": [
                    round(b["samples_per_s"] / (2 * a["samples_per_s"]), 3) for a, b in zip(runs[1], runs[2])
                ],
                "rounds": args.rounds,
                "target_efficiency": ">= 0.8",
            }
            step_demand = one["samples_per_s"]
        else:
            step_demand = None
        # On a GPU machine, also the workers the GPU presets run with there (num_workers: auto).
        preset = preset_workers(data)
        workers = tuple(sorted({0, 2, preset})) if cuda else (0, 2)
        result["loader"] = loader_benchmark(data, workers=workers, consumed_per_s=step_demand)
    result["gpu"] = _gpu(args.gpu_steps, tuple(args.gpu_batches), (False,) if args.no_compile else (False, True))
    if result["gpu"] is not None and result["gpu"]["best"] is not None:
        result["gpu"]["loader"] = loader_vs_gpu(result["loader"], result["gpu"], preset)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
