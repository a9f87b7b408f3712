"""Local ``multi_processing`` runs: Beam's SDK workers forked from the job's warm state.

Beam's multi_processing DirectRunner starts every SDK worker as a new interpreter
(``python -m apache_beam.runners.worker.sdk_worker_main``, through a shell). Each imports Beam and,
as the job's DoFns are unpickled, numpy, scipy.fft and ``pipelines``: about 1.5 s of CPU per
worker before it processes anything, spent while the main process is busy too. On a laptop-sized
run that costs more than a second worker saves.

Here the job forks one *zygote* after its imports and before Beam starts any server or thread.
Beam's worker command becomes ``python -S pipelines/worker_launcher.py``, which starts in
milliseconds, hands the environment Beam gave it to the zygote over a Unix socket and waits; the
zygote forks a worker that already has every module loaded and runs Beam's own
``sdk_worker_main``. The launcher exits with the worker's status, and if Beam kills the launcher
the zygote kills its worker, so Beam's process management sees what it always does. The zygote
and its workers go when the run ends (or when the main process dies: the zygote watches a pipe).

Used only with the local runner in multi_processing mode on platforms with ``fork``;
``--cold_workers`` turns it off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shlex
import signal
import socket
import struct
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from eegfm.core.logs import get_logger
from eegfm.pipelines.worker_launcher import WORKER_ENV, ZYGOTE_ENV

log = get_logger("warm_workers")
LAUNCHER = Path(__file__).with_name("worker_launcher.py")


def worker_command() -> str:
    """Beam's worker command line for warm workers. Beam runs it through a shell and kills that
    process when it gives up on a worker: ``exec`` makes it the launcher itself."""
    return f"exec {shlex.quote(sys.executable)} -S {shlex.quote(str(LAUNCHER))}"


class Zygote:
    """A forked process that forks Beam SDK workers on request; :meth:`close` ends it."""

    def __init__(self, target: Callable[[dict[str, str]], None] | None = None) -> None:
        """``target(env)`` is what a worker runs (default: Beam's SDK harness)."""
        target = target or _beam_harness
        # What the workers run must be imported before the fork, or each worker imports it again.
        import apache_beam.runners.worker.sdk_worker_main  # noqa: F401

        self._dir = tempfile.mkdtemp(prefix="eegfm-zygote-")
        self.address = os.path.join(self._dir, "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        listener.listen(64)
        alive_read, self._alive = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the zygote
            os.close(self._alive)
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's Ctrl-C ends us via the pipe
                _serve(listener, alive_read, target)
                code = 0
            except BaseException:  # noqa: BLE001 - report and leave; never return into the job's code
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(alive_read)
        listener.close()
        self._previous = os.environ.get(ZYGOTE_ENV)
        os.environ[ZYGOTE_ENV] = self.address  # Beam copies os.environ into the launcher's

    def close(self) -> None:
        if self._previous is None:
            os.environ.pop(ZYGOTE_ENV, None)
        else:
            os.environ[ZYGOTE_ENV] = self._previous
        os.close(self._alive)  # EOF: the zygote kills any worker left and exits
        os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def _read_request(conn: socket.socket) -> dict[str, str]:
    conn.settimeout(30)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("<I", data[:4])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("worker launcher closed the connection mid-request")
        data += chunk
    request = json.loads(data[4:].decode())
    return {k: str(v) for k, v in request.items() if k in WORKER_ENV}


def _serve(listener: socket.socket, alive: int, target: Callable[[dict[str, str]], None]) -> None:
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(alive, selectors.EVENT_READ, "alive")
    workers: dict[int, socket.socket] = {}
    exits: dict[int, int] = {}  # worker pid -> read end of a pipe whose write end only it holds
    try:
        while True:
            for key, _ in selector.select(timeout=0.2):
                if key.data == "alive":  # the job closed its end (done, or died)
                    return
                if key.data == "accept":
                    conn, _ = listener.accept()
                    try:
                        env = _read_request(conn)
                    except (OSError, ValueError, ConnectionError):
                        conn.close()
                        continue
                    # The pipe reads end-of-file the moment the worker exits: Beam stops workers
                    # one after another, each waiting for its launcher, and polling for exits
                    # cost up to the 0.2 s select timeout per worker.
                    exit_read, exit_write = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(exit_read)
                        _run_worker(target, env, [listener, conn, *workers.values()], [alive, *exits.values()])
                    os.close(exit_write)
                    log.debug("forked warm Beam worker %s (pid %d)", env.get("WORKER_ID", "?"), pid)
                    workers[pid], exits[pid] = conn, exit_read
                    selector.register(conn, selectors.EVENT_READ, pid)
                    selector.register(exit_read, selectors.EVENT_READ, ("exited", pid))
                elif isinstance(key.data, tuple):  # a worker exited: reap it and tell its launcher
                    _reap(workers, exits, selector, block=True, pid=key.data[1])
                else:  # the launcher went away (Beam killed it): so does its worker
                    selector.unregister(key.fileobj)  # reaped below or on a later pass
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(key.data, signal.SIGKILL)
            _reap(workers, exits, selector)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(workers, exits, selector, block=True)


def _reap(workers: dict[int, socket.socket], exits: dict[int, int], selector: selectors.BaseSelector,
          block: bool = False, pid: int = -1) -> None:
    """Reap exited workers (``pid``: that one only) and send each launcher its worker's status."""
    while workers:
        try:
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if done == 0:
            return
        exit_read = exits.pop(done, None)
        if exit_read is not None:
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(exit_read)
            os.close(exit_read)
        conn = workers.pop(done, None)
        if conn is not None:
            with contextlib.suppress(OSError, KeyError, ValueError):
                selector.unregister(conn)
                conn.sendall(struct.pack("<i", os.waitstatus_to_exitcode(status)))
            conn.close()


def _beam_harness(env: dict[str, str]) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):  # the job's stderr handler: Beam relays worker logs
        root.removeHandler(handler)
    os.environ.update(env)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


def _run_worker(target: Callable[[dict[str, str]], None], env: dict[str, str],
                inherited: list[socket.socket], inherited_fds: list[int]) -> None:
    """In the forked worker: ``target(env)``, then exit with its status; never returns."""
    code = 1
    try:
        for sock in inherited:
            sock.close()
        for fd in inherited_fds:
            os.close(fd)
        # Ctrl-C stops the job, whose unwinding ends the workers (the zygote kills them): a worker
        # interrupted on its own would only print a traceback of Beam's harness.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        target(env)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@contextlib.contextmanager
def zygote_for(multi_processing: bool, enabled: bool = True) -> Iterator[Zygote | None]:
    """A zygote for the run's duration where warm workers apply, else None (Beam's cold workers)."""
    if not (multi_processing and enabled and hasattr(os, "fork") and hasattr(socket, "AF_UNIX")):
        yield None
        return
    if threading.active_count() > 1:  # forking a threaded process is unsafe: fall back
        log.info("warm workers off: %d threads running before the job starts", threading.active_count())
        yield None
        return
    zygote = Zygote()
    try:
        yield zygote
    finally:
        zygote.close()


def quiet_worker_threads() -> None:
    """After Ctrl-C: Beam's thread for each worker process reports that process's end, which the
    interrupted job brings about, as an error ("Worker subprocess exited with return code ..."),
    one traceback per worker. Those reports are dropped; any other thread error still shows."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, RuntimeError)
                and str(args.exc_value).startswith("Worker subprocess exited with return code")):
            previous(args)

    threading.excepthook = hook
