"""A request's work off the event loop: its upload's private folder, the worker threads that unpack,
read and score it, and their end when the client leaves or the server stops.

The event loop answers every connection, ``/health`` among them: a zip of 100,000 members deleted on
it held ``/health`` for 16-30 s, and a SIGTERM for minutes. Work nobody waits for any more went on
too, with its temporary files. So here:

- the work runs in a worker thread, which calls `checkpoint` between zip members, decompressed
  blocks, pipeline windows and recordings, and stops there (`Abandoned`) once its request is
  abandoned;
- a request is abandoned when its client disconnects (its ASGI ``receive`` is watched once the
  body has been read) or when the server's stop deadline (`stopping.STOP`) passes (answered 503);
- the folder is removed as soon as the work has stopped, in a worker thread, never on the event
  loop; if the work does not reach a checkpoint within ``CLEANUP_WAIT`` seconds (or the server is
  stopping), by a process of its own at once (`_remove_apart`), and by the work when it ends;
- then glibc's malloc gives the memory the request freed back to the system (`trim_heap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from eegfm.serving.api.logged import UPLOAD_PREFIX
from eegfm.serving.api.stopping import CANCELLED, POLL_SECONDS, STOP
from eegfm.serving.api.uploads import UploadError

CLEANUP_WAIT = 2.0  # seconds an abandoned request waits for its work to stop before removing its folder


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators return memory themselves
        return None


_MALLOC_TRIM = _malloc_trim()


def trim_heap() -> None:
    """The free memory of every malloc arena given back to the system. glibc keeps what a request's
    threads freed for later allocations (its mmap threshold rises to the largest buffer freed, up to
    32 MiB, so a request's arrays come from heaps it does not shrink): four JSON bodies of 30 MB
    at once left the idle server 140-220 MB larger, and the adversarial pass's 1.1 GB. A fixed
    threshold (``MALLOC_MMAP_THRESHOLD_``) would too, but slowed the pipeline by half (page faults
    on every large array); trimming once a request ends costs a few milliseconds."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    trim_heap()


_REMOVERS: list[subprocess.Popen] = []  # kept until they end: a Popen dropped while running warns


def _remove_apart(folder: Path) -> None:
    """``folder`` removed by ``rm -rf`` in a process of its own, not waited for. Abandoned work in a
    pure-Python loop (a zip's listing, which has no checkpoint) holds the GIL: a thread removing
    files waits for it after each system call, about 5 ms (the switch interval), 50 s for 10,000
    files and a SIGTERM's 503s past --graceful_timeout, where a process takes a tenth of a second
    and finishes even if this one exits now."""
    _REMOVERS[:] = [remover for remover in _REMOVERS if remover.poll() is None]
    try:
        command = ["rm", "-rf", "--", str(folder)]
        _REMOVERS.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
    except OSError:  # no rm (a minimal image): a thread, however slow
        threading.Thread(target=shutil.rmtree, args=(folder, True), daemon=True).start()


class RequestWork:
    """One request's folder and worker threads (see the module docstring); made by `request_work`."""

    def __init__(self, receive, folder: Path) -> None:
        self.receive, self.root = receive, folder
        self.folder = folder / "upload"
        self.folder.mkdir()
        self.cancelled = threading.Event()
        self._closed = threading.Event()
        self._running: list[threading.Event] = []  # each thread's "finished"
        self._watch: asyncio.Task | None = None
        self.client_left = False

    async def run(self, function, *args):
        """``function(*args)`` in a worker thread. UploadError 503 when the server's stop deadline
        passes first, 400 when the client disconnects first; either way the work is told to stop."""
        finished = threading.Event()
        self._running.append(finished)
        context = contextvars.copy_context()
        context.run(CANCELLED.set, self.cancelled)

        def work():
            try:
                return context.run(function, *args)
            finally:
                finished.set()
                if self._closed.is_set():  # the request left before this work stopped: its files go now
                    shutil.rmtree(self.root, ignore_errors=True)

        task = asyncio.ensure_future(anyio.to_thread.run_sync(work, abandon_on_cancel=True))
        try:
            return await self._outcome(task)
        finally:
            if not task.done():
                self.cancelled.set()
                task.cancel()

    async def _outcome(self, task: asyncio.Future):
        """``task``'s result, or UploadError once the server is stopping or the client has left."""
        # the body has been read: from now on receive() says only whether the client is still there
        self._watch = self._watch or asyncio.ensure_future(self._watch_client())
        while not task.done():
            left = STOP.left()
            if left <= 0:
                raise UploadError(503, "the server is stopping; the request did not end in its --graceful_timeout")
            if self.client_left:
                raise UploadError(400, "the client disconnected before its reply")
            await asyncio.wait({task, self._watch}, timeout=min(left, POLL_SECONDS), return_when="FIRST_COMPLETED")
        if self.client_left:  # its reply would go nowhere
            raise UploadError(400, "the client disconnected before its reply")
        return task.result()

    async def _watch_client(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_left = True
                self.cancelled.set()
                return

    async def remove(self, path: Path) -> None:
        """``path`` (a folder below this request's) removed in a worker thread."""
        await anyio.to_thread.run_sync(shutil.rmtree, path, True, abandon_on_cancel=True)

    async def close(self) -> None:
        """Stop the work still running, wait for it a little, and remove the folder (see the module
        docstring): never on the event loop, never waiting for work that does not stop."""
        self.cancelled.set()
        self._closed.set()
        if self._watch is not None:
            self._watch.cancel()
        deadline = time.monotonic() + min(CLEANUP_WAIT, max(0.0, STOP.left()))
        while not self._ended() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._ended():
            await anyio.to_thread.run_sync(_remove, self.root, abandon_on_cancel=True)
        else:
            _remove_apart(self.root)

    def _ended(self) -> bool:
        return all(finished.is_set() for finished in self._running)


@contextlib.asynccontextmanager
async def request_work(request) -> AsyncIterator[RequestWork]:
    """A `RequestWork` for ``request``: a private folder (its ``folder``), removed with its work."""
    work = RequestWork(request.receive, Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX)))
    try:
        yield work
    finally:
        await work.close()
