"""How a training rank uses its share of the machine's cores: torch's intra-op threads beside the
loader's workers (``loader.num_workers``, sized by ``data.workers.auto_num_workers``), and the one
line that says so at start."""

from __future__ import annotations

import torch

from eegfm.core.machine import Cpus, CpuUse, cpu_use_line
from eegfm.core.threads import THREADS_VARIABLE, limit_torch, pool_threads, process_threads
from eegfm.training.data import AUTO

THREADS_OPTION = "--threads N"
WORKERS_OPTION = "--set loader.num_workers=N"


def rank_threads(share: int, workers: int) -> int:
    """torch's intra-op threads for a rank with ``share`` cores and ``workers`` loader workers: the
    cores the workers leave, at least one. Never more: a pool that outnumbers its cores thrashes
    as soon as another process needs them (docs/performance.md, "Beside other work")."""
    return max(1, share - workers)


def set_rank_threads(threads: int | str, workers: int, cpus: Cpus) -> CpuUse:
    """Set torch's intra-op threads (and its inter-op pool to one): ``threads`` (``--threads``), else
    OMP_NUM_THREADS's (the user's or torchrun's), else :func:`rank_threads` of the rank's share of
    ``cpus`` or of EEGFM_THREADS."""
    chosen = process_threads(None if threads == AUTO else int(threads), cpus)
    count, given_by = chosen.count, chosen.given_by
    if given_by in (None, THREADS_VARIABLE):
        count = rank_threads(count, workers)
    limit_torch(count)
    return CpuUse(count, "torch thread", THREADS_OPTION, given_by)


def use_cpus(threads: int | str, loader, device: torch.device, cpus: Cpus | None = None) -> str:
    """Set the rank's torch threads beside its built ``loader``'s workers; the line saying how the
    rank uses its cores."""
    pool = pool_threads(cpus)
    workers = loader.config.num_workers
    uses = [
        set_rank_threads(threads, workers, pool.cpus),
        CpuUse(workers, "loader worker", WORKERS_OPTION, None if loader.auto_workers else "loader.num_workers"),
    ]
    if pool.given_by is not None:
        return cpu_use_line(pool.count, uses, f"from {pool.given_by}")
    split = pool.cpus.bound or pool.cpus.local_ranks > 1
    return cpu_use_line(pool.count, uses, pool.cpus.describe() if split else "")
