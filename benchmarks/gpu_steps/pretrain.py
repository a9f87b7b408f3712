"""Pretraining windows/s and MFU of the ``base`` model in bf16, eager or ``torch.compile``d.

One step is forward, backward and fused AdamW on random 10 s windows, as the ``base`` training
preset runs it (its model overrides, bf16 autocast, TF32 for float32 products):
``benchmarks.pretraining_step.step_throughput``, which counts the step's FLOPs with
``torch.utils.flop_counter`` and divides the achieved FLOP/s by the GPU's dense bf16 peak
(``benchmarks.pretraining_step.bf16_peak``). Each batch size is one run, recorded as soon as it is done, so
a compilation that outlasts the step's time keeps the runs before it. A dry run checks the same
code on the CPU with the ``tiny`` model, 2 windows of 2 s, one step.
"""

from __future__ import annotations

from typing import Any

from benchmarks.gpu_steps.common import Record, cuda_or_dry_run

PRESET, MFU_BATCH, CUDA_GRAPHS_BATCH = "base", 1024, 64
DRY = {"preset": "tiny", "batches": (2,), "n_times": 512, "steps": 1, "warmup": 1}


def plan(batches: tuple[int, ...], steps: int) -> dict[str, Any]:
    return {
        "preset": PRESET,
        "batches": list(batches),
        "variants": [
            "eager",
            "torch.compile",
            f"torch.compile reduce-overhead (CUDA graphs) at batch {CUDA_GRAPHS_BATCH}",
        ],
        "window": "19 channels x 10 s at 256 Hz",
        "timed_steps": steps,
        "warmup_steps": 3,
        "precision": "bf16 autocast, TF32 float32 products, fused AdamW",
    }


def parameters(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Parameter counts: the pretraining model timed here, and the same encoder as a 6-class
    classifier (the form the peers are built in)."""
    # eegfm's model (torch) only in the step's own process: the launcher imports this module for its plan.
    from eegfm.model import count_parameters, create_model
    from eegfm.model.modeling import create_pretraining_model

    return {
        "preset": preset,
        "pretraining_model": count_parameters(create_pretraining_model(preset, **overrides)),
        "classifier_hms6": count_parameters(create_model(preset, head="hms6", **overrides)),
    }


def run(record: Record, *, dry_run: bool, compile: bool, batches: list[int], steps: int, **_: Any) -> None:
    # torch and eegfm only in the step's own process: the launcher imports this module without them.
    import torch

    from benchmarks.pretraining_step import bf16_peak, step_throughput
    from eegfm.training.config import load_config

    cuda = cuda_or_dry_run(record, dry_run)
    if cuda is None:
        return
    if compile and dry_run:
        record.not_run("dry run: torch.compile runs only on the GPU (minutes of compilation)")
        return
    overrides = load_config(PRESET).model_overrides
    device = torch.device("cuda" if cuda and not dry_run else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak(name)
    shape = DRY if dry_run else {"preset": PRESET, "batches": tuple(batches), "n_times": 2560, "steps": steps}
    record.set("device", name)
    record.set("bf16_peak_flops", peak)
    record.set("overrides", overrides)
    record.set("parameters", parameters(shape["preset"], overrides))
    failed = 0
    # Compiled, the MFU target's batch first: a compilation that runs out of time loses the others.
    order = sorted(shape["batches"], key=lambda b: (not compile or b != MFU_BATCH, b))
    runs = [(batch, None) for batch in order]
    if compile and not dry_run:  # CUDA graphs at the preset's batch: is `compile_mode: reduce-overhead` faster?
        runs.append((CUDA_GRAPHS_BATCH, "reduce-overhead"))
    for batch, mode in runs:
        try:
            result = step_throughput(
                device,
                preset=shape["preset"],
                batch=batch,
                n_times=shape["n_times"],
                steps=shape["steps"],
                warmup=shape.get("warmup", 3),
                compile=compile,
                peak=peak,
                overrides=overrides,
                compile_mode=mode,
            )
            result["windows_per_s"] = result["samples_per_s"]
            result["compile_mode"] = mode
        except Exception as error:  # one failing batch (out of memory, a compiler error) keeps the others
            failed += 1
            result = {
                "batch": batch,
                "compile": compile,
                "compile_mode": mode,
                "error": f"{type(error).__name__}: {str(error)[:500]}",
            }
        record.add("runs", result)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ran = len(runs) - failed
    record.set("status", "ok" if not failed else "partial" if ran else "failed")
