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
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eegfm.contract import layout

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks (FLOP/s) of the accelerators eegfm is run on.
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def bf16_peak(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU from its name (None for one not in ``BF16_PEAK``)."""
    return next((v for k, v in BF16_PEAK.items() if k in device_name), None)


def _simulate_and_preprocess(root: Path, shards_per_site: int = 0, subjects: int = 2, minutes: float = 6) -> Path:
    """The simulated corpus (3 sites x ``subjects`` x ``minutes``), preprocessed;
    ``shards_per_site`` > 0 splits each site's windows over that many files (a loader with more
    workers than files reads each file on several workers)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    corpus, out, key = root / "corpus", root / "tfrecords", root / "key"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.simulate",
            "--output",
            str(corpus),
            "--sites",
            "3",
            "--subjects-per-site",
            str(subjects),
            "--recordings-per-subject",
            "1",
            "--minutes",
            str(minutes),
            "--format",
            "edf",
            "--seed",
            "0",
            "--quiet",
        ],
        check=True,
        cwd=REPO,
        env=env,
    )
    key.write_text(os.urandom(32).hex())
    # No labels.csv: pretraining data are unlabeled 10 s windows.
    (corpus / "edf" / "labels.csv").unlink(missing_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(corpus / "edf"),
            "--output",
            str(out),
            "--pseudonym_key_file",
            str(key),
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--num_shards",
            str(shards_per_site),
        ],
        check=True,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return out


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


def pretraining_step(
    device: torch.device, *, preset: str = "base", batch: int = 64, n_times: int = 2560, overrides: dict | None = None
):
    """(model, step, sync): one pretraining step (forward, backward, fused AdamW on CUDA) in bf16
    autocast on random EEG, ``step(module)`` running it through ``module`` (the model, or its
    compiled form); ``overrides`` change the preset's config (e.g. ``{"gnn_impl": "dense"}``)."""
    import torch

    from eegfm.model.modeling import create_pretraining_model

    cuda = device.type == "cuda"
    model = create_pretraining_model(preset, **(overrides or {})).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    generator = torch.Generator(device).manual_seed(0)
    eeg = torch.randn(batch, 19, n_times, device=device, generator=generator) * 30.0
    mask = torch.ones(batch, 19, device=device)

    def step(module: torch.nn.Module) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = module(eeg, channel_mask=mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    return model, step, sync


@contextlib.contextmanager
def _tf32_matmuls(enabled: bool):
    """TF32 tensor cores for CUDA float32 products inside the block, as before outside it."""
    import torch

    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed


def step_throughput(
    device: torch.device,
    *,
    preset: str = "base",
    batch: int = 64,
    n_times: int = 2560,
    steps: int = 20,
    warmup: int = 3,
    compile: bool = False,
    peak: float | None = None,
    overrides: dict | None = None,
    then: Callable | None = None,
    compile_mode: str | None = None,
    tf32: bool = True,
) -> dict:
    """:func:`pretraining_step` timed over ``steps`` after ``warmup``; model FLOPs per step counted
    by ``torch.utils.flop_counter`` on the eager model, MFU against ``peak`` FLOP/s (None: not
    reported); ``compile_mode`` is ``torch.compile``'s ``mode`` (e.g. ``"reduce-overhead"``: CUDA
    graphs); ``tf32``: TF32 tensor cores for float32 products, as the GPU training presets set it.
    ``then(step, forward, sync)``, if given, runs after the timing on the same warm model, and
    what it returns is reported as ``then``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with _tf32_matmuls(tf32):
        cuda = device.type == "cuda"
        model, step, sync = pretraining_step(device, preset=preset, batch=batch, n_times=n_times, overrides=overrides)
        if compile:
            torch._dynamo.reset()  # a fresh, static-shape compilation for this batch size
        forward = torch.compile(model, mode=compile_mode) if compile else model
        with FlopCounterMode(display=False) as counter:
            step(model)
        flops = counter.get_total_flops()
        started = time.perf_counter()
        for _ in range(warmup):  # with compile: the compilation itself
            step(forward)
        sync()
        warmup_s = time.perf_counter() - started
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(forward)
        sync()
        seconds = (time.perf_counter() - start) / steps
        tokens = batch * 19 * (n_times // model.config.patch_size)
        return {
            "preset": preset,
            "batch": batch,
            "window_s": n_times / 256,
            "compile": compile,
            "tf32": tf32,
            **({"compile_mode": compile_mode} if compile and compile_mode else {}),
            **({"overrides": overrides} if overrides else {}),
            "tokens_per_step": tokens,
            "tokens_per_s": round(tokens / seconds),
            "samples_per_s": round(batch / seconds, 1),
            "step_ms": round(seconds * 1e3, 2),
            "warmup_s": round(warmup_s, 1),
            "flops_per_step": flops,
            "achieved_tflops": round(flops / seconds / 1e12, 3),
            "mfu": None if peak is None else round(flops / seconds / peak, 4),
            "max_allocated_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if cuda else None,
            **({"then": then(step, forward, sync)} if then is not None else {}),
        }


def _gpu(steps: int, batches: tuple[int, ...], compile_modes: tuple[bool, ...]) -> dict | None:
    """``step_throughput`` of the ``base`` preset for each batch size, eager and compiled, with the
    model overrides of the ``base`` training preset (its GNN form)."""
    import torch

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
    import torch

    from benchmarks.train_loader import loader_benchmark, preset_workers

    cuda = torch.cuda.is_available()
    result: dict = {"benchmark": "train", "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 3 sites x 6 files let up to 18 workers read a file each on a GPU machine. num_workers: auto
        # gives each worker at least 4 batches an epoch, so the 216 windows simulated here get one
        # worker; --data with a larger corpus measures the preset's full count.
        data = args.data or _simulate_and_preprocess(tmp, shards_per_site=6 if cuda else 0)
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
