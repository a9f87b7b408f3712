"""Fair threads: how an eegfm process shares the machine with its neighbours.

Two rules, both set by every console script before it does any work:

1. Waiting threads sleep soon. OpenMP runtimes spin a waiting thread for a while before it
   sleeps (libgomp, which torch's CPU wheels bundle, about 300,000 spins per wait; Intel's 200 ms),
   so beside other busy processes each pool burns the cores the others need: four copies of small
   parallel torch work on two cores took 12x one alone with libgomp spinning, 3.3x with
   ``OMP_WAIT_POLICY=PASSIVE`` (``benchmarks/openmp_waits.py``, docs/performance.md). Sleeping at
   once (``GOMP_SPINCOUNT=0``) has its own cost alone: every one of a model's many small kernels
   then wakes the pool's other thread through the kernel, and two torch threads trained
   ``cpu-small`` no faster than one (150 steps in 33 s either way). A short spin, 1,000 turns
   (microseconds), keeps the pool awake between back-to-back kernels and still sleeps beside
   neighbours: 25 s alone, and four copies each within 11 % of the copies that slept at once. So:
   ``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT=1000`` (libgomp) and ``KMP_BLOCKTIME=0`` (Intel's
   runtime; libgomp ignores it). A runtime reads them when it loads, so :func:`sleep_while_waiting`
   runs in ``eegfm/__init__.py``, before any eegfm module imports torch or numpy; a variable the
   user set is kept (``GOMP_SPINCOUNT=0`` where a machine is shared with many busy neighbours).
2. One count of threads for the whole process: ``--threads``, else ``EEGFM_THREADS``, else
   ``OMP_NUM_THREADS`` (the user's, or torchrun's for several ranks), else the cores this process
   may use (:class:`~eegfm.core.machine.Cpus`). A command's pools (torch intra-op threads, loader
   workers, onnxruntime's threads, Beam workers) are carved out of it, never added to it, and
   :func:`fair_threads` holds torch's inter-op pool to one thread and already-loaded BLAS libraries
   (threadpoolctl) to the count. Standard library only, apart from the libraries it limits once
   they are loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, MutableMapping

from eegfm.core.machine import Cpus, omp_threads

THREADS_VARIABLE = "EEGFM_THREADS"
# Each runtime's documented switch for "a waiting thread sleeps soon"; see the module docstring.
SLEEP_WHILE_WAITING = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}


def sleep_while_waiting(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each of :data:`SLEEP_WHILE_WAITING` the user has not set; the ones set. Child processes
    (loader workers, Beam's worker processes) inherit them."""
    environ = os.environ if environ is None else environ
    chosen = {name: value for name, value in SLEEP_WHILE_WAITING.items() if name not in environ}
    environ.update(chosen)
    return chosen


@dataclasses.dataclass(frozen=True)
class Threads:
    """The threads a process uses in all: ``count``, from ``given_by`` ("--threads",
    :data:`THREADS_VARIABLE`, "OMP_NUM_THREADS"; None: the cores ``cpus`` allows)."""

    count: int
    given_by: str | None
    cpus: Cpus


def env_threads(environ: MutableMapping[str, str] | None = None) -> int | None:
    """The count :data:`THREADS_VARIABLE` gives; None where unset. Anything but a positive whole
    number is refused, naming the variable."""
    value = (os.environ if environ is None else environ).get(THREADS_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VARIABLE}: expected a positive whole number; got {value!r}")
    return int(value)


def pool_threads(cpus: Cpus | None = None) -> Threads:
    """What a process's pools of workers and processes are carved from: :data:`THREADS_VARIABLE`,
    else ``cpus`` (this process's) share of the cores. OMP_NUM_THREADS is not read here: torchrun
    sets it to 1 for every rank, a count of intra-op threads, not of a GPU rank's loader workers."""
    cpus = cpus or Cpus.here()
    if (count := env_threads()) is not None:
        return Threads(count, THREADS_VARIABLE, cpus)
    return Threads(cpus.per_rank, None, cpus)


def process_threads(option: int | None = None, cpus: Cpus | None = None) -> Threads:
    """The process's compute threads: ``option`` (``--threads``), else :data:`THREADS_VARIABLE`,
    else OMP_NUM_THREADS, else ``cpus`` (this process's) share of the cores."""
    if option is not None:
        if int(option) < 1:
            raise ValueError(f"--threads: expected a positive whole number; got {option!r}")
        return Threads(int(option), "--threads", cpus or Cpus.here())
    pool = pool_threads(cpus)
    if pool.given_by is None and (count := omp_threads()) is not None:
        return Threads(count, "OMP_NUM_THREADS", pool.cpus)
    return pool


def fair_threads(option: int | None = None) -> Threads:
    """Every console script's first call: waiting threads sleep (set again here for a command run
    in a process that imported eegfm some other way), and the libraries already loaded use at most
    :func:`process_threads`: torch's intra-op pool that many, its inter-op pool one (a command's
    parallelism is its intra-op threads, workers and processes), BLAS that many."""
    sleep_while_waiting()
    threads = process_threads(option)
    if "torch" in sys.modules:
        limit_torch(threads.count)
    if "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits  # a core dependency; loads nothing new

        threadpool_limits(limits=threads.count, user_api="blas")
    return threads


def limit_torch(intra_op: int) -> None:
    """torch's intra-op threads; its inter-op pool one thread, where it has not started (it can be
    sized once, before any inter-op work: a second command in one process keeps the first's)."""
    import torch

    torch.set_num_threads(intra_op)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # the pool already ran: its size is fixed for this process
            pass


@contextlib.contextmanager
def at_most(threads: int) -> Iterator[None]:
    """Inside the block, torch's intra-op pool and BLAS use at most ``threads`` threads (then as
    before): a command's own work while its job pool's workers hold every core."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(min(before, threads))
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)
