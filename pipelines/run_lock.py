"""One run at a time in an output folder: an exclusive ``flock`` held for the life of the process.

Two runs writing to one folder (a job launched twice, a cron job that overlaps its last run, a
rescheduled pod whose old copy still runs on a shared volume) would interleave what they write:
shards and a manifest from different runs, or checkpoints, metrics and a W&B run. The kernel
drops the lock with the process, SIGKILL included, so a restarted job takes it again; processes
forked from the holder (loader and Beam workers) share it while they live. A run that ends
releases it (``release_run_lock``).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from pipelines.logging_setup import get_logger

log = get_logger("run_lock")

RUN_LOCK = ".eegfm-run.lock"
_HELD_LOCKS: dict[str, int] = {}  # run folder -> descriptor, open for the life of the process


def hold_run_lock(run_dir: str | os.PathLike[str]) -> str | None:
    """Hold an exclusive lock on the local folder ``run_dir`` (``run_dir/.eegfm-run.lock``, made
    with the folder if need be) until this process ends or releases it: None, or the problem if
    another process holds it. A file system without locks (some network mounts) gets a warning and None."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)  # a second open of the file in this process would conflict with the first
    if key in _HELD_LOCKS:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "a process"
        os.close(fd)
        return (f"{run_dir}: another run is writing to this folder ({holder}); wait for it to end, "
                f"or give another --output")
    except OSError as err:  # ENOLCK, EOPNOTSUPP: some network file systems
        os.close(fd)
        log.warning("%s: cannot lock the run folder (%s); nothing stops a second run from writing to it", run_dir, err)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    _HELD_LOCKS[key] = fd
    return None


def release_run_lock(run_dir: str | os.PathLike[str]) -> None:
    """Give up the lock :func:`hold_run_lock` took on ``run_dir`` (a no-op where it took none): a
    run that ends in a process that goes on (a notebook, a test) must not keep the folder. The
    lock is dropped for processes forked from this one too (loader and Beam workers)."""
    fd = _HELD_LOCKS.pop(os.path.realpath(run_dir), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
