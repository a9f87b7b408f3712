"""Progress of a local run, which Beam's DirectRunner does not report until the end.

Each finished input appends one line, its EEG seconds (numbers only), to a file in a private
temporary folder (a short ``O_APPEND`` write is atomic: workers need no lock). A thread of the
launcher counts the lines: a progress bar on a terminal, else a log line every ``log_every`` s.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from typing import IO

import psutil
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from eegfm.core.logs import get_logger

log = get_logger("preprocess")


PROGRESS_PREFIX = "eegfm-progress-"
# eegfm-progress-HOST-PID-START-...: the host (a CRC of its name), pid and start time of the owner.
_OWNED = re.compile(re.escape(PROGRESS_PREFIX) + r"([0-9a-f]{8})-(\d+)-(\d+)-")


def host_tag() -> str:
    """This host in progress folder names: a CRC of its name (the name itself may say whose it is)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


@contextlib.contextmanager
def progress_file() -> Iterator[str]:
    """A new progress file in a private temp folder, named by this process so a later run can tell
    the folder of a killed run (``clear_stale_progress``); the folder is removed at the end."""
    owner = f"{host_tag()}-{os.getpid()}-{int(psutil.Process().create_time())}"
    with tempfile.TemporaryDirectory(prefix=f"{PROGRESS_PREFIX}{owner}-") as folder:
        yield os.path.join(folder, "done")


def _running(pid: int, start: int) -> bool:
    """Whether process ``pid`` started at ``start`` (s since the epoch) still runs (a pid is reused)."""
    try:
        return abs(psutil.Process(pid).create_time() - start) < 2.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # not ours to inspect: it runs
        return True


def _bytes_below(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def clear_stale_progress(temp: str | None = None) -> int:
    """Remove the progress folders in ``temp`` (the temp folder) of runs on this host, by this user,
    whose process no longer runs (killed: a stopped run removes its own), logging their number and
    size; the number removed. A folder of another host (a shared temp folder) or of no known owner
    (an older version's) is left alone."""
    temp = temp or tempfile.gettempdir()
    removed, size = 0, 0
    try:
        entries = list(os.scandir(temp))
    except OSError:
        return 0
    for entry in entries:
        owner = _OWNED.match(entry.name)
        try:
            mine = entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid()
        except OSError:
            continue
        if not (owner and mine and owner[1] == host_tag()) or _running(int(owner[2]), int(owner[3])):
            continue
        folder_size = _bytes_below(entry.path)
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed, size = removed + 1, size + folder_size
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
