"""One run at a time in an output folder: an exclusive file lock held for the life of the process.

Two runs writing to one folder (a job launched twice, an old pod still running) would interleave
shards, manifests or checkpoints. ``filelock`` takes a ``flock``, which the kernel drops with the
process (SIGKILL included) and which processes forked from the holder share.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

RUN_LOCK = ".eegfm-run.lock"  # holds the holder's pid, host and start time, for the refusal
_HELD: dict[str, FileLock] = {}  # run folder -> its lock, kept for the life of the process


def hold_run_lock(run_dir: str | os.PathLike[str]) -> str | None:
    """Hold an exclusive lock on the local folder ``run_dir`` (made if need be) until this process
    ends or releases it: None, or the problem if another process holds it."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _HELD:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_LOCK
    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        holder = path.read_text(errors="replace").strip() if path.exists() else ""
        return (
            f"{run_dir}: another run is writing to this folder ({holder or 'a process'}); "
            f"wait for it to end, or give another --output"
        )
    path.write_text(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    _HELD[key] = lock
    return None


def release_run_lock(run_dir: str | os.PathLike[str]) -> None:
    """Give up the lock :func:`hold_run_lock` took on ``run_dir`` (a no-op where it took none): a
    run that ends in a process that goes on (a notebook, a test) must not keep the folder."""
    lock = _HELD.pop(os.path.realpath(run_dir), None)
    if lock is not None:
        lock.release(force=True)
