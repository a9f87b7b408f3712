"""One run at a time in an output folder: an exclusive ``flock`` held until the run's last process ends.

Two runs writing to one folder (a job launched twice, an old pod still running, a job's process
left behind by a killed launcher) would interleave shards, manifests or checkpoints. The lock is a
``flock`` on a descriptor of our own: the kernel drops it when the last descriptor sharing it
closes, SIGKILL included. A process forked while :func:`shared_with_forks` is on (a launcher's job
process) shares it, so the folder stays held until that process is gone too; any other fork
closes its copy (a data loader's worker must not keep a folder its run gave back).

The lock file names the holder (pid, host, start, the job's process group once forked) and a run
token; a process of the run checks the token before it writes (:func:`check_run_lock`), so one left
behind never writes over a later run's outputs, whatever killed its launcher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

RUN_LOCK = ".eegfm-run.lock"  # holds the holder's pid, host, start time and run token, for the refusal


@dataclasses.dataclass
class _Held:
    fd: int
    token: str
    text: str


_HELD: dict[str, _Held] = {}  # run folder -> its lock, kept until released
_SHARED = False  # forks now keep the locks (shared_with_forks)


class RunLockLost(RuntimeError):
    """This run no longer holds its output folder: another run took it, so nothing more is written."""


def _close_in_forked_child() -> None:
    if _SHARED:
        return
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)  # closing a copy never unlocks: the parent's descriptor still holds it
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


@contextlib.contextmanager
def shared_with_forks() -> Iterator[None]:
    """Processes forked in this block keep this process's run locks until they end."""
    global _SHARED
    _SHARED = True
    try:
        yield
    finally:
        _SHARED = False


def hold_run_lock(run_dir: str | os.PathLike[str]) -> str | None:
    """Hold an exclusive lock on the local folder ``run_dir`` (made if need be) until this process
    (and the processes forked sharing it) end or it is released: None, or the problem if another
    process holds it."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _HELD:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        os.close(fd)
        return (
            f"{run_dir}: another run is writing to this folder ({holder or 'a process'}); "
            f"wait for it to end, or give another --output"
        )
    except BaseException:
        os.close(fd)
        raise
    token = secrets.token_hex(8)
    text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}; run {token}"
    _HELD[key] = _Held(fd, token, text)
    _write(fd, text)
    return None


def _write(fd: int, text: str) -> None:
    # Through the locked descriptor: a run that just took the lock names itself before anything else.
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def run_token(run_dir: str | os.PathLike[str]) -> str:
    """The token of the lock this process holds on ``run_dir``; '' where it holds none."""
    held = _HELD.get(os.path.realpath(run_dir))
    return held.token if held else ""


def name_job_group(run_dir: str | os.PathLike[str], pgid: int) -> None:
    """Add the job's process group to what the lock file says of its holder."""
    held = _HELD.get(os.path.realpath(run_dir))
    if held is not None:
        _write(held.fd, f"{held.text}; job process group {pgid}")


def check_run_lock(run_dir: str, token: str) -> None:
    """:class:`RunLockLost` unless the lock file in ``run_dir`` still names the run ``token`` (a
    later run rewrites it as it takes the folder); nothing to check for an empty token."""
    if not token:
        return
    try:
        text = Path(run_dir, RUN_LOCK).read_text(errors="replace")
    except OSError:
        text = ""
    if not text.rstrip().split("; job process group")[0].endswith(f"; run {token}"):
        raise RunLockLost(
            f"{run_dir}: another run holds this folder now ({text.strip() or 'its lock file is gone'}); "
            "this run's process writes nothing more"
        )


def release_run_lock(run_dir: str | os.PathLike[str]) -> None:
    """Give up the lock :func:`hold_run_lock` took on ``run_dir`` (a no-op where it took none): a
    run that ends in a process that goes on (a notebook, a test) must not keep the folder. The
    descriptor is closed, not unlocked: a forked process sharing it keeps the folder until it ends."""
    held = _HELD.pop(os.path.realpath(run_dir), None)
    if held is not None:
        os.close(held.fd)
