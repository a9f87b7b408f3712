"""One pretraining step of an eegfm preset, timed: the step the training benchmarks compare with.

``step_throughput`` runs :func:`pretraining_step` (forward, backward, AdamW in bf16 autocast on
random EEG) and reports tokens/s, samples/s and model-FLOPs utilisation against a GPU's dense bf16
peak (``bf16_peak``). ``benchmarks/train.py`` (its GPU part), ``train_loop.py`` (``--compare-step``),
``train_gpu_profile.py`` and ``gpu_steps/pretrain.py`` time the step through it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from eegfm.model.modeling import create_pretraining_model

# Dense bf16 tensor-core peaks (FLOP/s) of the accelerators eegfm is run on.
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def bf16_peak(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU from its name (None for one not in ``BF16_PEAK``)."""
    return next((v for k, v in BF16_PEAK.items() if k in device_name), None)


def pretraining_step(
    device: torch.device, *, preset: str = "base", batch: int = 64, n_times: int = 2560, overrides: dict | None = None
):
    """(model, step, sync): one pretraining step (forward, backward, fused AdamW on CUDA) in bf16
    autocast on random EEG, ``step(module)`` running it through ``module`` (the model, or its
    compiled form); ``overrides`` change the preset's config (e.g. ``{"gnn_impl": "dense"}``)."""
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
