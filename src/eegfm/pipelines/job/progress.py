"""Progress of a local run, which Beam's DirectRunner does not report until the end.

Each finished input appends one line, its EEG seconds (numbers only), to a file in a private
temporary folder (a short ``O_APPEND`` write is atomic: workers need no lock). A thread of the
launcher counts the lines: a progress bar on a terminal, else a log line every ``log_every`` s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO

from filelock import FileLock, Timeout
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from eegfm.core.logs import get_logger

log = get_logger("preprocess")


PROGRESS_PREFIX = "eegfm-progress-"
# Held by the run that owns a progress folder: the kernel drops it with the process (SIGKILL included).
_OWNER_LOCK = "owner.lock"


@contextlib.contextmanager
def progress_file() -> Iterator[str]:
    """A new progress file in a private temp folder that holds a lock while the run goes on, so a
    later run can tell the folder of a killed run (``clear_stale_progress``); removed at the end."""
    with tempfile.TemporaryDirectory(prefix=PROGRESS_PREFIX) as folder:
        with FileLock(os.path.join(folder, _OWNER_LOCK), timeout=0, thread_local=False):
            yield os.path.join(folder, "done")


def _bytes_below(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _remove_if_unowned(folder: str) -> int | None:
    """Remove a progress folder whose owner lock no process holds: its bytes, or None if it is in use
    or has no owner lock (an older version's, or one being made: its owner unknown)."""
    owner = os.path.join(folder, _OWNER_LOCK)
    if not os.path.isfile(owner):
        return None
    lock = FileLock(owner, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except (Timeout, OSError):  # its run goes on (or the lock cannot be taken: leave it)
        return None
    try:
        size = _bytes_below(folder)
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.release()
    return None if os.path.exists(folder) else size


def clear_stale_progress(temp: str | None = None) -> int:
    """Remove this user's progress folders in ``temp`` (the temp folder) whose run no longer runs
    (killed: a stopped run removes its own), logging their number and size; the number removed."""
    temp = temp or tempfile.gettempdir()
    removed, size = 0, 0
    try:
        entries = [e for e in os.scandir(temp) if e.name.startswith(PROGRESS_PREFIX)]
    except OSError:
        return 0
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                freed = _remove_if_unowned(entry.path)
                if freed is not None:
                    removed, size = removed + 1, size + freed
    if removed:
        log.info("removed %d progress folder(s) (%.1f kB) of killed runs from the temp folder", removed, size / 1e3)
    return removed


def record_done(path: str | None, eeg_seconds: float) -> None:
    """Count one finished input (processed or quarantined); never fails the job."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{max(0.0, float(eeg_seconds)):.3f}\n".encode())
        finally:
            os.close(fd)
    except (OSError, ValueError) as err:  # a full disk or a bad number must not lose a recording
        log.debug("progress not recorded (%s)", err)


def read_progress(path: str, since: int = 0) -> tuple[int, float, int]:
    """``(inputs finished, EEG seconds read, offset)`` in the complete lines from byte ``since`` on;
    ``offset``, after the last complete line, is the next call's ``since``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            data = fh.read()
    except FileNotFoundError:
        return 0, 0.0, since
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].split(b"\n")[:-1]
    return len(lines), sum(float(line) for line in lines if line), since + complete


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_line(done: int, total: int, eeg_seconds: float, elapsed: float) -> str:
    """The log line for ``done`` of ``total`` inputs after ``elapsed`` seconds."""
    line = (
        f"progress: {done}/{total} recordings ({100.0 * done / max(1, total):.0f}%), "
        f"{eeg_seconds / 3600.0:.2f} EEG-hours read, {_duration(elapsed)} elapsed"
    )
    if 0 < done < total:
        line += f", about {_duration(elapsed / done * (total - done))} left"
    return line


class ProgressReporter:
    """Counts ``path``'s lines while the ``with`` block runs: a tqdm bar when ``stream`` is a
    terminal, else ``progress_line`` every ``log_every`` seconds; the last line either way."""

    def __init__(
        self, path: str, total: int, *, stream: IO[str] | None = None, log_every: float = 30.0, poll: float = 0.5
    ):
        self.path, self.total, self.log_every, self.poll = path, total, log_every, poll
        self.stream = sys.stderr if stream is None else stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = self._redirect = None
        self._start = 0.0
        self._done, self._seconds, self._offset = 0, 0.0, 0  # counted so far, and where reading resumes

    def __enter__(self) -> ProgressReporter:
        self._start = time.monotonic()
        if self.stream.isatty():
            self._bar = tqdm(
                total=self.total, desc="recordings", unit="recording", file=self.stream, dynamic_ncols=True, leave=False
            )
            self._redirect = logging_redirect_tqdm()  # this process's log lines go above the bar
            self._redirect.__enter__()
        self._thread = threading.Thread(target=self._watch, name="eegfm-progress", daemon=True)
        self._thread.start()
        return self

    @property
    def done(self) -> int:
        """Inputs finished, as last counted (a stall watchdog's measure of progress)."""
        return self._done

    def _read(self) -> tuple[int, float]:
        """Inputs finished and EEG seconds so far (each poll reads only the lines added since)."""
        done, seconds, self._offset = read_progress(self.path, self._offset)
        self._done, self._seconds = self._done + done, self._seconds + seconds
        return self._done, self._seconds

    def _draw(self, done: int, seconds: float, refresh: bool = False) -> None:
        self._bar.set_postfix_str(f"{seconds / 3600.0:.2f} EEG-h", refresh=False)
        self._bar.update(min(done, self.total) - self._bar.n)
        if refresh:
            self._bar.refresh()

    def _watch(self) -> None:
        logged = time.monotonic()
        while not self._stop.wait(self.poll):
            done, seconds = self._read()
            if self._bar is not None:
                self._draw(done, seconds)
            elif time.monotonic() - logged >= self.log_every:
                logged = time.monotonic()
                log.info(progress_line(min(done, self.total), self.total, seconds, logged - self._start))
            if done >= self.total:  # what is left runs after the last recording: say what it is
                if self._bar is not None:
                    self._draw(self.total, seconds, refresh=True)
                log.info(
                    "all %d recordings read (%.2f EEG-hours); scoring artifacts and writing the TFRecord shards",
                    self.total,
                    seconds / 3600.0,
                )
                return

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        done, seconds = self._read()
        if self._bar is not None:
            self._draw(done, seconds, refresh=True)  # the final count, before the bar is cleared
            self._redirect.__exit__(None, None, None)
            self._bar.close()
        log.info(progress_line(min(done, self.total), self.total, seconds, time.monotonic() - self._start))
