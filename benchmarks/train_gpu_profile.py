"""Where a GPU pretraining step spends its time; prints one JSON object.

For each variant (batch size, eager or ``torch.compile``, config overrides such as
``gnn_impl=dense`` or ``dropout=0``), ``benchmarks.pretraining_step.step_throughput`` gives step time,
tokens/s and MFU, and then, on the same warm model, ``torch.profiler`` over ``--profile-steps``
steps gives the CUDA kernel time by kind (matrix products, attention, normalisation, elementwise,
gather/scatter, optimizer, copies) and the top kernels; ``gpu_busy`` is kernel time over wall
time (below 1: the GPU waits for the CPU to launch work).

    python benchmarks/train_gpu_profile.py [--batches 256] [--variants eager compile]
        [--set gnn_impl=dense --set dropout=0.0]

Needs CUDA; without it, the JSON object says it was skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch.profiler import ProfilerActivity

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pretraining_step import bf16_peak, step_throughput  # noqa: E402
from eegfm.model.config import EEGFMConfig  # noqa: E402
from eegfm.training.config import ConfigError, parse_overrides  # noqa: E402

# First match wins: kernel names of cuBLAS/CUTLASS, flash/efficient attention, Triton (torch.compile)
# and ATen's own kernels.
KINDS = (
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("attention", r"flash|fmha|attention|efficient_attention|softmax"),
    ("matmul", r"gemm|cutlass|sm90_xmma|nvjet|matmul|cublas|wgmma|_mm_|splitk"),
    ("gather_scatter", r"scatter|gather|index|embedding"),
    ("norm", r"layer_norm|layernorm|native_layer|_norm_|welford|reduce|sum"),
    ("copy", r"copy|cat|transpose|permute|contiguous|memcpy|memset|fill"),
)


class Kernel(NamedTuple):
    name: str
    us: float  # device time over the profiled steps, microseconds
    count: int


def kind_of(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, lowered)), "elementwise/other")


def profile(step, forward, sync, steps: int, top: int) -> dict:
    with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step(forward)
        sync()
        wall_us = (time.perf_counter() - start) * 1e6
    # Device-side events less user annotations: "Optimizer.step#AdamW.step" spans the optimizer's
    # kernels on the GPU timeline and would count them twice.
    totals: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA or getattr(event, "is_user_annotation", False):
            continue
        entry = totals.setdefault(event.name, [0.0, 0])
        entry[0] += event.self_device_time_total
        entry[1] += 1
    kernels = [Kernel(name, us, count) for name, (us, count) in totals.items()]
    total = sum(k.us for k in kernels) or 1.0
    by_kind: dict[str, float] = {}
    for kernel in kernels:
        kind = kind_of(kernel.name)
        by_kind[kind] = by_kind.get(kind, 0.0) + kernel.us
    ranked = sorted(kernels, key=lambda k: -k.us)[:top]
    return {
        "gpu_busy": round(total / wall_us, 3),
        "kernel_ms_per_step": round(total / steps / 1e3, 3),
        "launches_per_step": round(sum(k.count for k in kernels) / steps),
        "by_kind": {k: round(v / total, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [
            {
                "kernel": k.name[:110],
                "share": round(k.us / total, 3),
                "calls_per_step": round(k.count / steps, 1),
                "kind": kind_of(k.name),
            }
            for k in ranked
        ],
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="base", help="model preset (default: base)")
    parser.add_argument("--batches", type=int, nargs="+", default=[256], help="windows per step to measure")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["eager", "compile"],
        choices=["eager", "compile"],
        help="eager and/or torch.compile",
    )
    parser.add_argument(
        "--compile-mode",
        default=None,
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode for the compile variant (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="config override for every variant (repeatable), e.g. gnn_impl=dense",
    )
    parser.add_argument(
        "--no-tf32",
        dest="tf32",
        action="store_false",
        help="keep float32 products (the InfoNCE logits) off TF32 tensor cores "
        "(default: TF32 on, as the base and large-gpu training presets run)",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--profile-steps", type=int, default=5, help="profiled steps per variant")
    parser.add_argument("--top", type=int, default=12, help="kernels listed per variant")
    return parser


def _checked_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The ``--set`` overrides, parsed; exits through ``parser.error`` where they or ``--preset`` make
    no valid model config."""
    try:  # the training CLIs' --set parsing, and the model config's checks, before any GPU work
        overrides = parse_overrides(args.overrides)
        EEGFMConfig.from_preset(args.preset, **overrides)
    except (ConfigError, ValueError) as error:
        parser.error(f"--preset/--set: {error}")
    return overrides


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    overrides = _checked_overrides(parser, args)
    if not torch.cuda.is_available():  # `make bench` runs every script: report, don't fail
        print(json.dumps({"benchmark": "train_gpu_profile", "skipped": "needs a CUDA GPU; none is visible"}))
        return
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = bf16_peak(name)
    runs = []
    for batch in args.batches:
        for variant in args.variants:

            def profiled(step, forward, sync):
                return profile(step, forward, sync, args.profile_steps, args.top)

            try:
                run = step_throughput(
                    device,
                    preset=args.preset,
                    batch=batch,
                    steps=args.steps,
                    compile=variant == "compile",
                    peak=peak,
                    overrides=overrides,
                    then=profiled,
                    compile_mode=args.compile_mode,
                    tf32=args.tf32,
                )
            except Exception as error:  # report it and go on with the other variants
                run = {
                    "batch": batch,
                    "compile": variant == "compile",
                    "error": f"{type(error).__name__}: {str(error)[:500]}",
                }
            if "then" in run:
                run["profile"] = run.pop("then")
            runs.append(run)
            print(
                json.dumps({k: run.get(k) for k in ("batch", "compile", "step_ms", "tokens_per_s", "mfu", "error")}),
                file=sys.stderr,
                flush=True,
            )
            torch.cuda.empty_cache()
    print(
        json.dumps(
            {
                "benchmark": "train_gpu_profile",
                "device": name,
                "torch": torch.__version__,
                "preset": args.preset,
                "overrides": overrides,
                "tf32": args.tf32,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
