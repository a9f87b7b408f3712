"""How a training rank uses its share of the machine's cores: torch's intra-op threads beside the
loader's workers (``loader.num_workers``, sized by ``data.workers.auto_num_workers``), the one line
that says so at start, and, where the threads came from the machine, their count between steps
following the cores busy neighbours leave (:func:`follow_neighbours`, core/neighbours.py)."""

from __future__ import annotations

import torch

from eegfm.core.logs import get_logger
from eegfm.core.machine import Cpus, CpuUse, cpu_use_line
from eegfm.core.neighbours import NeighbourWatch
from eegfm.core.threads import THREADS_VARIABLE, limit_torch, pool_threads, process_threads
from eegfm.training.data import AUTO

THREADS_OPTION = "--threads N"
WORKERS_OPTION = "--set loader.num_workers=N"

log = get_logger(__name__)
# The rank's watch on its neighbours, where its threads came from the machine; process-wide, as
# torch's thread count is.
_watch: dict[str, NeighbourWatch | None] = {"rank": None}


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
    from_machine = given_by is None and not cpus.bound and cpus.local_ranks == 1
    _watch["rank"] = NeighbourWatch(max(1, cpus.total - workers), count) if from_machine else None
    return CpuUse(count, "torch thread", THREADS_OPTION, given_by)


def follow_neighbours() -> None:
    """Between steps: where the rank's threads came from the machine, use the cores the machine's
    other processes leave (at least one, at most the rank's share), looking once a second."""
    watch = _watch["rank"]
    if watch is None or (count := watch.threads()) is None or count == torch.get_num_threads():
        return
    log.info(
        "other processes keep %.1f CPU cores busy: %d torch thread%s now (%s to fix the count)",
        watch.others_busy,
        count,
        "" if count == 1 else "s",
        THREADS_OPTION,
    )
    torch.set_num_threads(count)


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
        line = cpu_use_line(pool.count, uses, f"from {pool.given_by}")
    else:
        split = pool.cpus.bound or pool.cpus.local_ranks > 1
        line = cpu_use_line(pool.count, uses, pool.cpus.describe() if split else "")
    return line + ("; fewer torch threads while other processes keep cores busy" if _watch["rank"] else "")
