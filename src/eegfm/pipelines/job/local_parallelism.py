"""How many processes a local run uses when the command line does not say.

Beam's DirectRunner runs one in-memory worker unless told otherwise, which leaves every core but
one idle. A ``multi_processing`` worker is a new interpreter that imports the job (about 1.5 s on
this project's 2-core reference machine), so it pays off only on inputs large enough: measured with
``benchmarks/preprocess.py`` on eegmat (156 MB, 2.1 EEG-hours) one in-memory worker took 5.9 s and
two processes 7.4 s, and on eight copies of it (1.25 GB) 24.2 s against 17.7 s (2 cores); two
threads (``multi_threading``) were no faster than one process on the small input and slower than two
processes on the large one (20.2 s: the GIL). The break-even lies near 200 MB of eegmat-like EDF.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from eegfm.core.stores import is_remote

# Inputs from this size on run in one process per core (see the module docstring).
MULTI_PROCESS_MIN_BYTES = 200 * 2**20


@dataclass(frozen=True)
class LocalParallelism:
    """A local run's ``--direct_running_mode`` and ``--direct_num_workers``, and why."""

    running_mode: str
    num_workers: int
    reason: str


def input_bytes(paths: Iterable[str]) -> int | None:
    """The total size of the local files among ``paths``; None if any is remote (its size would
    cost a request per object, and a remote corpus is read as slowly as it is large)."""
    total = 0
    for path in paths:
        if is_remote(path):
            return None
        try:
            total += os.path.getsize(path)
        except OSError:  # unreadable: quarantined later, with why
            continue
    return total


def choose_parallelism(size_bytes: int | None, cores: int) -> LocalParallelism:
    """One process per core for inputs of at least :data:`MULTI_PROCESS_MIN_BYTES` or of unknown
    size, else one in-memory worker."""
    if cores < 2:
        return LocalParallelism("in_memory", 1, "1 core")
    if size_bytes is not None and size_bytes < MULTI_PROCESS_MIN_BYTES:
        return LocalParallelism(
            "in_memory",
            1,
            f"{cores} cores, {size_bytes / 2**20:.0f} MB of input: under {MULTI_PROCESS_MIN_BYTES // 2**20} MB, "
            "starting worker processes costs more than it saves",
        )
    size = "input in an object store" if size_bytes is None else f"{size_bytes / 2**30:.2f} GB of input"
    return LocalParallelism("multi_processing", cores, f"{cores} cores, {size}")
