"""braindecode's CBraMod and LaBraM-base trained on the GPU: the reference for eegfm's windows/s.

Each peer is built as ``benchmarks/model.py`` builds it (braindecode's defaults: CBraMod 12 layers
of width 200, LaBraM-base 12 of width 200; a 6-class output; 10 s at their native 200 Hz, 200-sample
patches) and timed like eegfm's step: forward, backward and fused AdamW in bf16 autocast on random
windows, eager, at each batch size. The loss is the mean square of the outputs (no labels). The
pinned braindecode (0.8.1) has neither model; ``requirements/bench.txt`` pins 1.8.1, which has.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.gpu_steps.common import Record, cuda_or_dry_run

N_CHANS, SECONDS, SFREQ = 19, 10, 200
PEERS = ("CBraMod", "LaBraM-base")
MAX_STEPS = 10  # timed steps per run: two models x three batches share the step's budget


def plan(batches: tuple[int, ...], steps: int) -> dict[str, Any]:
    return {
        "models": list(PEERS),
        "batches": list(batches),
        "variant": "eager",
        "window": f"{N_CHANS} channels x {SECONDS} s at {SFREQ} Hz",
        "timed_steps": min(steps, MAX_STEPS),
        "precision": "bf16 autocast, fused AdamW",
    }


def peer_classes() -> tuple[type, type]:
    """braindecode's (CBraMod, Labram); ImportError where this braindecode lacks them."""
    import importlib.util
    import warnings

    if importlib.util.find_spec("torchaudio") is None:  # the pinned CPU stack has none (benchmarks/model.py)
        # benchmarks.model loads torch: only in the step's own process, as braindecode below.
        from benchmarks.model import _install_torchaudio_placeholder

        _install_torchaudio_placeholder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from braindecode.models import CBraMod, Labram
    return CBraMod, Labram


def build(name: str, cbramod: type, labram: type):
    """(model, call(model, x)) for one peer, with braindecode's defaults and a 6-class output."""
    kwargs = {"n_chans": N_CHANS, "n_outputs": 6, "n_times": SECONDS * SFREQ, "sfreq": SFREQ}
    if name == "CBraMod":
        return cbramod(**kwargs), lambda m, x: m(x)
    # benchmarks.model loads torch: only in the step's own process.
    from benchmarks.model import TEN_TEN_NAMES

    return labram(**kwargs), lambda m, x: m(x, ch_names=TEN_TEN_NAMES)


def throughput(model, call, device, batch: int, steps: int, warmup: int = 3) -> dict[str, Any]:
    """Windows/s of forward + backward + AdamW in bf16 autocast, as ``benchmarks.pretraining_step`` times eegfm."""
    import torch

    cuda = device.type == "cuda"
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    generator = torch.Generator(device).manual_seed(0)
    x = 30.0 * torch.randn(batch, N_CHANS, SECONDS * SFREQ, device=device, generator=generator)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = call(model, x).float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    return {
        "batch": batch,
        "windows_per_s": round(batch / seconds, 1),
        "step_ms": round(seconds * 1e3, 2),
        "max_allocated_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if cuda else None,
    }


def run(record: Record, *, dry_run: bool, batches: list[int], steps: int, **_: Any) -> None:
    import importlib.metadata

    import torch

    try:
        version = importlib.metadata.version("braindecode")
    except importlib.metadata.PackageNotFoundError:
        version = None
    record.set("braindecode", version)
    try:
        cbramod, labram = peer_classes()
    except Exception as error:
        found = f"braindecode {version} has no CBraMod/Labram" if version else "braindecode is not installed"
        record.not_run(
            f"{found} ({type(error).__name__}: {str(error)[:200]}); the pinned 0.8.1 "
            "lacks them, requirements/bench.txt pins 1.8.1 (make bench-deps here; on a GPU machine carry "
            "its wheels in .whl/)"
        )
        return
    cuda = cuda_or_dry_run(record, dry_run)
    if cuda is None:
        return
    device = torch.device("cuda" if cuda and not dry_run else "cpu")
    sizes, timed = ((2,), 1) if dry_run else (tuple(batches), min(steps, MAX_STEPS))
    failed = 0
    for name in PEERS:
        torch.manual_seed(0)
        model, call = build(name, cbramod, labram)
        record.add("models", {"name": name, "parameters": sum(p.numel() for p in model.parameters())})
        for batch in sizes:
            try:
                result = {"model": name, **throughput(model, call, device, batch, timed, warmup=1 if dry_run else 3)}
            except Exception as error:  # out of memory at one batch keeps the others
                failed += 1
                result = {"model": name, "batch": batch, "error": f"{type(error).__name__}: {str(error)[:500]}"}
            record.add("runs", result)
            if cuda:
                torch.cuda.empty_cache()
        del model
    total = len(PEERS) * len(sizes)
    record.set("status", "ok" if not failed else "partial" if failed < total else "failed")
