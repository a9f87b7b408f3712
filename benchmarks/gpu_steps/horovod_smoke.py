"""A Horovod smoke run on one GPU: the training code's own Horovod path, with NCCL collectives.

``training.distributed.init_distributed("horovod")`` in a single process (no ``horovodrun``: one
rank), an allreduce of a tensor on the GPU, then a few pretraining steps of the ``base`` model
through ``Dist.wrap_model`` / ``Dist.wrap_optimizer`` (Horovod's ``DistributedOptimizer``) in bf16
autocast. Met when Horovod was built with NCCL, the allreduce is right and every loss is finite.
The pinned Horovod is built from source for the pinned CPU torch (``scripts/install_horovod.sh``);
a GPU machine needs one built for its own torch with ``HOROVOD_GPU_OPERATIONS=NCCL``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks.gpu_steps.common import Record, cuda_or_dry_run

PRESET, BATCH, STEPS = "base", 64, 5
DRY = {"preset": "tiny", "batch": 2, "steps": 2, "n_times": 512}


def plan() -> dict[str, Any]:
    return {
        "ranks": 1,
        "collectives": "NCCL (Horovod built with HOROVOD_GPU_OPERATIONS=NCCL)",
        "run": f"allreduce on the GPU, then {STEPS} pretraining steps of {PRESET} at batch {BATCH} "
        "through Dist.wrap_optimizer",
        "target": "NCCL built, allreduce right, losses finite",
    }


def _steps(dist, shape: dict[str, Any]) -> dict[str, Any]:
    """Pretraining steps through the Horovod-wrapped optimizer; their losses and windows/s."""
    # torch and eegfm only in the step's own process: the launcher imports this module without them.
    import torch

    from eegfm.model.modeling import create_pretraining_model
    from eegfm.training.config import load_config

    torch.manual_seed(0)
    model = create_pretraining_model(shape["preset"], **load_config(PRESET).model_overrides).to(dist.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    optimizer = dist.wrap_optimizer(optimizer, model, 1)
    model = dist.wrap_model(model)
    eeg = 30.0 * torch.randn(shape["batch"], 19, shape["n_times"], device=dist.device)
    mask = torch.ones(shape["batch"], 19, device=dist.device)
    losses = []
    start = time.perf_counter()
    for _ in range(shape["steps"]):
        with torch.autocast(dist.device.type, dtype=torch.bfloat16):
            loss = model(eeg, channel_mask=mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()  # as training.steps: Horovod's wrapper takes no arguments
        losses.append(float(loss))  # synchronises
    seconds = time.perf_counter() - start
    return {
        "preset": shape["preset"],
        "batch": shape["batch"],
        "losses": [round(v, 4) for v in losses],
        "windows_per_s": round(shape["batch"] * shape["steps"] / seconds, 1),
    }


def run(record: Record, *, dry_run: bool, **_: Any) -> None:
    import torch

    try:
        import horovod
        import horovod.torch as hvd
    except Exception as error:  # not installed, or built for another torch
        record.not_run(
            f"horovod.torch cannot be imported ({type(error).__name__}: {str(error)[:300]}); "
            "scripts/install_horovod.sh builds it (HOROVOD_GPU_OPERATIONS=NCCL for GPU collectives)"
        )
        return
    cuda = cuda_or_dry_run(record, dry_run)
    if cuda is None:
        return
    # after Horovod's import check: the step records not_run without it.
    from eegfm.training.distributed import init_distributed

    dist = init_distributed("horovod", device="cuda" if cuda and not dry_run else "cpu")
    built = {"nccl": bool(hvd.nccl_built()), "gloo": bool(hvd.gloo_built()), "mpi": bool(hvd.mpi_built())}
    built["cuda"] = bool(hvd.cuda_built())
    record.set("horovod", {"version": horovod.__version__, "built_with": built, "size": dist.world_size})
    summed = hvd.allreduce(torch.arange(4.0, device=dist.device), op=hvd.Sum, name="gpu.smoke")
    allreduce_ok = summed.cpu().tolist() == [0.0, 1.0, 2.0, 3.0]  # one rank: the sum is the tensor
    record.set("allreduce", {"device": str(summed.device), "right": allreduce_ok})
    steps = _steps(dist, DRY if dry_run else {"preset": PRESET, "batch": BATCH, "steps": STEPS, "n_times": 2560})
    record.set("steps", steps)
    finite = all(math.isfinite(v) for v in steps["losses"])
    record.set(
        "targets",
        [
            {"what": "Horovod built with NCCL", "target": "true", "value": built["nccl"], "met": built["nccl"]},
            {"what": "allreduce on the device right", "target": "true", "value": allreduce_ok, "met": allreduce_ok},
            {"what": "losses finite", "target": "true", "value": finite, "met": finite},
        ],
    )
    dist.shutdown()
    record.set("status", "ok")
