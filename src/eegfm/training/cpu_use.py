"""How a training rank uses its share of the machine's cores: torch's intra-op threads beside the
loader's workers (``loader.num_workers``, sized by ``data.workers.auto_num_workers``), and the one
line that says so at start."""

from __future__ import annotations

import torch

from eegfm.core.machine import Cpus, CpuUse, cpu_use_line, omp_threads
from eegfm.training.data import AUTO

THREADS_OPTION = "--threads N"
WORKERS_OPTION = "--set loader.num_workers=N"


def rank_threads(share: int, workers: int, cuda: bool) -> int:
    """torch's intra-op threads for a rank with ``share`` cores and ``workers`` loader workers.

    On the CPU every core: the step is the work, and one worker costs it little (its reading and
    hand-off take 110-190 µs of CPU a window, at the hundred-odd windows/s a ``cpu-tiny`` step
    takes). On a GPU the cores the workers leave, at least one: the rank mostly launches kernels,
    and threads beyond its share would take cores from the workers that feed the device.
    """
    return max(1, share) if not cuda else max(1, share - workers)


def set_rank_threads(threads: int | str, workers: int, cuda: bool, cpus: Cpus) -> CpuUse:
    """Set torch's intra-op threads: ``threads`` (``--threads``), else OMP_NUM_THREADS's (the user's
    or torchrun's), else :func:`rank_threads` of the rank's share of ``cpus``."""
    if threads != AUTO:
        count, given_by = int(threads), "--threads"
    elif (count := omp_threads()) is not None:
        given_by = "OMP_NUM_THREADS"
    else:
        count, given_by = rank_threads(cpus.per_rank, workers, cuda), None
    torch.set_num_threads(count)
    return CpuUse(count, "torch thread", THREADS_OPTION, given_by)


def use_cpus(threads: int | str, loader, device: torch.device, cpus: Cpus | None = None) -> str:
    """Set the rank's torch threads beside its built ``loader``'s workers; the line saying how the
    rank uses its cores."""
    cpus = cpus or Cpus.here()
    workers = loader.config.num_workers
    uses = [
        set_rank_threads(threads, workers, device.type == "cuda", cpus),
        CpuUse(workers, "loader worker", WORKERS_OPTION, None if loader.auto_workers else "loader.num_workers"),
    ]
    split = cpus.bound or cpus.local_ranks > 1
    return cpu_use_line(cpus.per_rank, uses, cpus.describe() if split else "")
