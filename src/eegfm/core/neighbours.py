"""Threads that make room for busy neighbours: between steps, a command whose threads came from the
machine looks at how many cores the other processes kept busy since it last looked, and uses the
cores they left: at least one, at most its share.

Why: a command sizes its threads when it starts, before a neighbour started at the same moment is
busy. Two copies of a ``cpu-tiny`` pretraining on two cores, two threads each, took 1.46x their time
alone, where one thread each took 1.13-1.27x (``benchmarks/cotenancy.py``, docs/performance.md,
"Beside other work"): four threads on two cores stall at every parallel kernel's barrier while a
descheduled thread waits for its turn.

The busy time is the container's own accounting where a CFS quota sets the cores (cgroup v2's
``cpu.stat``, v1's ``cpuacct.usage``), else the machine's (``/proc/stat``); this process's own
time, its children's included (loader workers), through psutil. Where neither can be read (not
Linux) the count stays as it started. A neighbour that keeps less than :data:`IGNORED_CORES` busy
(a shell, a monitor, an idle server) costs no thread.

A run's float sums follow its thread count (torch splits reductions between threads), so a run
beside busy neighbours differs from one alone by rounding; ``--threads N`` or ``EEGFM_THREADS``
fixes the count, and with it the bits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from eegfm.core.machine import CGROUP_ROOT, cgroup_cpu_limit, read_cgroup

IGNORED_CORES = 0.3  # a neighbour's background below this many cores is not worth a thread
PERIOD_S = 1.0  # how often to look: long enough to average over many kernels, short beside a run
# The first look comes sooner: copies started together oversubscribe the cores until it.
FIRST_PERIOD_S = 0.25


def free_threads(total: int, share: int, others_busy: float) -> int:
    """The threads to use when the machine has ``total`` cores, this process may use ``share`` and
    the other processes kept ``others_busy`` cores busy: the cores they leave, rounding up a
    remainder under :data:`IGNORED_CORES`, at least one and at most ``share``."""
    return max(1, min(share, math.floor(total - others_busy + IGNORED_CORES)))


def cgroup_busy_s(root: str = CGROUP_ROOT) -> float | None:
    """CPU seconds the container's processes have used: cgroup v2's ``usage_usec``, else v1's
    ``cpuacct.usage`` (nanoseconds); None where neither is readable."""
    v2 = dict(line.split(" ", 1) for line in (read_cgroup(root, "cpu.stat") or "").splitlines() if " " in line)
    if v2.get("usage_usec", "").strip().isdigit():
        return int(v2["usage_usec"]) / 1e6
    for folder in ("cpuacct", "cpu,cpuacct"):
        if (v1 := read_cgroup(root, folder, "cpuacct.usage") or "").isdigit():
            return int(v1) / 1e9
    return None


def machine_busy_s() -> float | None:
    """CPU seconds the machine's cores have been busy (not idle or waiting on I/O), from
    ``/proc/stat``; None where it cannot be read."""
    import psutil

    try:
        times = psutil.cpu_times()
    except (OSError, AttributeError):
        return None
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def own_busy_s() -> float:
    """CPU seconds this process and its live children (loader workers, job workers) have used."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system and the children it has waited for
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # it ended between the listing and the read
            continue
    return total


def busy_clock() -> Callable[[], float | None]:
    """Where this process reads the busy time of the cores it shares: its container's where a CFS
    quota sets them, else the machine's."""
    return cgroup_busy_s if cgroup_cpu_limit() is not None else machine_busy_s


class NeighbourWatch:
    """Follows the cores the other processes keep busy: :meth:`threads` says, at most every
    ``period_s`` (the first time :data:`FIRST_PERIOD_S` after it is made), how many threads this
    process should use now. ``total``: the cores it shares (the machine's, or its container's
    quota); ``share``: the most it may use."""

    def __init__(
        self,
        total: int,
        share: int,
        period_s: float = PERIOD_S,
        busy: Callable[[], float | None] | None = None,
        own: Callable[[], float] = own_busy_s,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.share, self.period_s = total, share, period_s
        self.busy, self.own, self.clock = busy or busy_clock(), own, clock
        self.others_busy: float | None = None  # cores the others kept busy over the last period
        self._last: tuple[float, float, float] | None = None
        self.threads()  # the first reading, at the start; the first decision FIRST_PERIOD_S after it

    def threads(self) -> int | None:
        """The threads to use now, where a period has passed since the last look; else None (and
        None where the busy time cannot be read)."""
        now = self.clock()
        period = self.period_s if self.others_busy is not None else min(self.period_s, FIRST_PERIOD_S)
        if self._last is not None and now - self._last[0] < period:
            return None
        busy = self.busy()
        if busy is None:
            return None
        last, self._last = self._last, (now, busy, self.own())
        if last is None:
            return None
        elapsed = now - last[0]
        others = (busy - last[1]) - (self._last[2] - last[2])
        self.others_busy = max(0.0, others / elapsed) if elapsed > 0 else 0.0
        return free_threads(self.total, self.share, self.others_busy)
