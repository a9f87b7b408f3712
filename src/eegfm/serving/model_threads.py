"""How many intra-op threads the model gets in eegfm-predict and in each eegfm-serve worker, and
the help that says so."""

from __future__ import annotations

from eegfm.core.machine import CpuUse
from eegfm.core.threads import process_threads


def threads_help(shared: str = "") -> str:
    """--threads's help; ``shared``: how eegfm-serve divides the default between its processes."""
    return (
        "intra-op CPU threads of the model, torch's or ONNX Runtime's (default: EEGFM_THREADS, else "
        "OMP_NUM_THREADS where set, else "
        f"the cores this process may use: its CPU affinity within the machine's or container's CPU quota{shared})"
    )


def model_threads(cores: int, processes: int = 1) -> int:
    """The model's intra-op threads in each of ``processes`` (eegfm-serve's --workers): their share
    of the cores. A process scores one batch at a time and the pipeline's steps before it run with
    one BLAS thread, so the forward pass is where the cores go."""
    return max(1, cores // max(1, processes))


def threads_use(args) -> CpuUse:
    """The model's threads per process: --threads, else EEGFM_THREADS (shared by eegfm-serve's
    workers), else OMP_NUM_THREADS, else :func:`model_threads` of the cores this process may use."""
    what = "onnxruntime thread" if args.backend.startswith("onnx") else "torch thread"
    processes = getattr(args, "workers", 1)  # eegfm-serve's
    per = "per worker" if processes > 1 else ""
    chosen = process_threads(args.threads)
    if chosen.given_by in ("--threads", "OMP_NUM_THREADS"):
        return CpuUse(chosen.count, what, "--threads N", chosen.given_by, per)
    return CpuUse(model_threads(chosen.count, processes), what, "--threads N", chosen.given_by, per)
