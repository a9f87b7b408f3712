"""The CPUs this process may use: the one place eegfm's commands read them from, and the one line
each command logs at start saying how it uses them.

``Cpus.here()`` counts the cores in this process's affinity mask (``taskset``, a launcher's
binding) within the machine's, or its container's CFS quota; a launcher's local world size
(torchrun, horovodrun, mpirun) splits an unbound machine between its ranks. Standard library only:
the core install (Dataflow workers) has no torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

# The launchers' "processes on this machine", in the order they are trusted.
LOCAL_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "HOROVOD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")


@dataclasses.dataclass(frozen=True)
class Cpus:
    """``usable``: the cores this process may run on; ``total``: the machine's (or its container's
    quota); ``local_ranks``: the processes a launcher started on this machine."""

    usable: int
    total: int
    local_ranks: int = 1

    @classmethod
    def here(cls) -> Cpus:
        total = min(os.cpu_count() or 1, cgroup_cpu_limit() or 1 << 30)
        usable = min(total, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total)
        sizes = [os.environ.get(name, "") for name in LOCAL_SIZE_VARIABLES]
        local = next((int(size) for size in sizes if size.isdigit() and int(size) > 0), 1)
        return cls(usable, total, local)

    @property
    def bound(self) -> bool:
        """Whether a launcher (or taskset) bound this process to some of the machine's cores."""
        return self.usable < self.total

    @property
    def per_rank(self) -> int:
        """This process's share: the cores it is bound to, else the machine's over the local ranks."""
        return self.usable if self.bound else max(1, self.total // max(1, self.local_ranks))

    def describe(self) -> str:
        """Where ``per_rank`` comes from, for a log line."""
        if self.bound:
            return f"{self.usable} CPUs bound to this rank"
        return f"{self.total} CPUs / {self.local_ranks} local rank(s)"


CGROUP_ROOT = "/sys/fs/cgroup"


def read_cgroup(root: str, *parts: str) -> str | None:
    """The stripped text of the cgroup file ``root/parts...``; None where it cannot be read."""
    try:
        with open(os.path.join(root, *parts)) as fileobj:
            return fileobj.read().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: str = CGROUP_ROOT) -> int | None:
    """The CPUs a container's CFS quota allows (rounded up), from cgroup v2's ``cpu.max`` or v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None without a quota."""
    limit = read_cgroup(root, "cpu.max")  # v2: "<quota> <period>" or "max <period>"
    quota, period = limit.split()[:2] if limit and len(limit.split()) >= 2 else (None, None)
    if quota is None:
        for folder in ("cpu", "cpu,cpuacct"):
            quota = read_cgroup(root, folder, "cpu.cfs_quota_us")
            period = read_cgroup(root, folder, "cpu.cfs_period_us")
            if quota is not None and period is not None:
                break
    try:
        quota_us, period_us = int(quota), int(period)
    except (TypeError, ValueError):  # "max", -1 or nothing: no quota
        return None
    return max(1, math.ceil(quota_us / period_us)) if quota_us > 0 and period_us > 0 else None


def omp_threads() -> int | None:
    """The threads ``OMP_NUM_THREADS`` asks for (set by the user, or by torchrun for several ranks:
    a setting every command keeps); None where it is unset or not a positive whole number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclasses.dataclass(frozen=True)
class CpuUse:
    """One way a command uses the cores: ``count`` of ``what`` (singular: "torch thread") ``per``
    something ("per worker"), from the machine unless ``given_by`` names what set it; ``option``
    says how to change it ("--threads N")."""

    count: int
    what: str
    option: str
    given_by: str | None = None
    per: str = ""

    def __str__(self) -> str:
        noun = self.what if self.count == 1 else f"{self.what}s"
        per = f" {self.per}" if self.per else ""
        if self.given_by is None:
            how = f"{self.option} to change"
        elif self.option.startswith(self.given_by):
            how = f"from {self.given_by}"
        else:
            how = f"from {self.given_by}; {self.option} to change"
        return f"{self.count} {noun}{per} ({how})"


def cpu_use_line(cores: int, uses: Sequence[CpuUse], why: str = "") -> str:
    """The start-up line: ``using 2 CPU cores: 2 torch threads (--threads N to change), ...``;
    ``why``: where the count of cores comes from, where it is not simply this machine's."""
    where = f" ({why})" if why else ""
    line = f"using {cores} CPU core{'' if cores == 1 else 's'}{where}: " + ", ".join(map(str, uses))
    return f"{line}; {waiting_threads()}"


def waiting_threads() -> str:
    """How OpenMP's waiting threads behave here, for the start-up line (core/threads.py sets
    OMP_WAIT_POLICY=PASSIVE where the user has not chosen)."""
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    how = "sleep" if policy.upper() == "PASSIVE" else "spin before sleeping"
    return f"waiting threads {how} (OMP_WAIT_POLICY={policy or 'unset'})"
