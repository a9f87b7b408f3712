"""One process tree, one fate: a job run in a forked child that leads a process session of its own,
ended with every process it started (Beam's worker processes) whatever ends the launcher.

- SIGTERM and SIGHUP raise :class:`Stopped` in the launcher's main thread (:func:`stop_on_signals`),
  as SIGINT raises KeyboardInterrupt; unwinding, the launcher kills the job's process group and
  waits until none of its processes is left (:func:`end_group`).
- The launcher's death, SIGKILL included: the kernel sends the job SIGTERM (Linux's
  ``PR_SET_PDEATHSIG``) and a thread of the job sees its parent change; either kills its group.
- A thread of the job that dies of an uncaught exception (a worker process that could not start,
  a thread that could not be created under a memory limit) ends the job with one line: Beam's runner
  would wait for it for ever.
- :func:`end_worker_on_exhaustion`: in a worker process of the job (Beam's, which the runner starts
  as a new interpreter), a thread that dies of a memory or thread limit ends that process with one
  line, so the runner sees its worker gone rather than waiting for the dead thread's answer.
- :func:`exit_with_parent`: a worker process (``core.job_pool``) that ends with the process that
  started it, SIGKILL included.
- :class:`StallWatchdog`: a job whose processes neither compute nor read nor write for a while,
  and finish no input, ends with one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_S = 0.25


class Stopped(KeyboardInterrupt):
    """A signal reached the launcher: it unwinds as Ctrl-C unwinds it. Made again from its message
    (the signal's name first), as Beam re-raises an error from a step with the step's name added."""

    def __init__(self, signum: int | str):
        if isinstance(signum, str):
            text, signum = signum, signal.Signals[signum.split()[0]].value
        else:
            text = signal.Signals(signum).name
        super().__init__(text)
        self.signum = signum


class JobFailed(RuntimeError):
    """The job's process ended with an error; ``reason`` is its one line where it gave one."""

    def __init__(self, exitcode: int, reason: str = ""):
        self.exitcode, self.reason = exitcode, reason
        super().__init__(reason or f"exit status {exitcode}")


class JobStalled(RuntimeError):
    """The job made no progress for the watchdog's time: its processes were ended."""


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGHUP, signal.SIGINT)) -> Iterator[None]:
    """Within the block, each of ``signums`` raises :class:`Stopped` in the main thread; once, as a
    second one must not cut short the clean-up the first started. A signal ignored on entry (nohup's
    SIGHUP, a background job's SIGINT) or handled otherwise stays so; outside the main thread nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def raise_once(signum, _frame):
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    previous = {s: signal.getsignal(s) for s in signums}
    ours = {s for s, handler in previous.items() if handler in (signal.SIG_DFL, signal.default_int_handler)}
    for signum in ours:
        signal.signal(signum, raise_once)
    try:
        yield
    finally:
        for signum in ours:
            signal.signal(signum, previous[signum])


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that have not ended (zombies have)."""
    return list(_group_stats(pgid))


def _group_stats(pgid: int) -> dict[int, int]:
    """pid -> CPU ticks of the live processes of group ``pgid``; where /proc is missing, the group's
    leader with 0 ticks while the group exists."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return {}
        return {pgid: 0}
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found[int(name)] = int(fields[11]) + int(fields[12])
    return found


def _io_bytes(pids) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/io") as fh:
            total += sum(int(line.split()[1]) for line in fh if line.startswith(("rchar", "wchar")))
    return total


def end_group(pgid: int, timeout: float = 10.0) -> list[int]:
    """SIGKILL to process group ``pgid``, then wait until none of its processes is left; the pids
    still there after ``timeout`` s (in an uninterruptible wait), if any."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # one forked meanwhile
        time.sleep(0.02)
    return left


class StallWatchdog:
    """Whether a job's process group goes on: within every ``limit_s`` it must finish an input
    (``finished()`` grows), use ``min_cpu`` of a core or read or write ``min_io`` bytes. A job
    waiting for a worker that never answers uses about 1 % of a core and no I/O (measured)."""

    def __init__(self, limit_s: float, finished: Callable[[], int] | None = None, min_cpu=0.25, min_io=2**20):
        self.limit_s, self.finished, self.min_cpu, self.min_io = limit_s, finished, min_cpu, min_io
        self._mark: tuple[float, int, int, int] | None = None  # time, ticks, I/O bytes, inputs finished
        self._next = 0.0

    def check(self, pgid: int) -> None:
        """:class:`JobStalled` where the job made no progress in the last ``limit_s``."""
        if self.limit_s <= 0 or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + min(5.0, self.limit_s / 10)  # a look at /proc costs milliseconds
        stats = _group_stats(pgid)
        now, ticks, io = time.monotonic(), sum(stats.values()), _io_bytes(stats)
        done = self.finished() if self.finished else 0
        if self._mark is None or done != self._mark[3]:
            self._mark = (now, ticks, io, done)
            return
        since, ticks0, io0, _ = self._mark
        if now - since < self.limit_s:
            return
        cpu = (ticks - ticks0) / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.0
        if cpu < self.min_cpu * (now - since) and io - io0 < self.min_io:
            raise JobStalled(
                f"no progress for {now - since:.0f} s: no input finished, {cpu:.1f} s of CPU and "
                f"{(io - io0) / 1e3:.0f} kB of I/O in all its processes; stopped rather than left waiting"
            )
        self._mark = (now, ticks, io, done)


def run_in_own_session(job: Callable[[], None], watchdog: StallWatchdog | None = None, on_start=None) -> None:
    """Run ``job`` in a forked child leading a session of its own; return when it ends, after every
    process of its group has ended. :class:`JobFailed` where it failed, :class:`JobStalled` where
    ``watchdog`` stopped it; an interrupt (KeyboardInterrupt, :class:`Stopped`) ends the group, then
    goes on. ``on_start(pid)``: told the child's pid (its process group) once it runs."""
    if "fork" not in multiprocessing.get_all_start_methods():  # Windows: no fork, no sessions
        job()
        return
    read_end, write_end = os.pipe()
    handle, worker_reasons = tempfile.mkstemp(prefix="eegfm-worker-reasons-")
    os.close(handle)
    child = multiprocessing.get_context("fork").Process(
        target=_lead_a_session, args=(job, os.getpid(), write_end, worker_reasons), name="job"
    )
    try:
        child.start()
        os.close(write_end)
        write_end = -1
        if on_start is not None:
            on_start(child.pid)
        while child.exitcode is None:
            child.join(_POLL_S)
            if watchdog is not None and child.exitcode is None:
                watchdog.check(child.pid)
    except BaseException:
        _end(child)
        raise
    finally:
        if write_end >= 0:
            os.close(write_end)
        reason = _read_reason(read_end)
        worker_reason = _first_line(worker_reasons)
    _end(child)  # what a failed job left, a worker of it say
    if child.exitcode:
        raise JobFailed(child.exitcode, worker_reason or reason)  # a worker's line says what its loss set off


def _first_line(path: str) -> str:
    """The first line in ``path``, which is then removed."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().strip()
    except OSError:
        return ""
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _end(child) -> None:
    if child.pid is None:
        return
    left = end_group(child.pid)
    child.kill()  # where it was stopped before its setsid, in no group of its own yet
    child.join()
    if left:
        print(f"processes {left} of the job did not end within 10 s of SIGKILL", file=sys.stderr)


def _read_reason(fd: int) -> str:
    try:
        os.set_blocking(fd, False)
        return os.read(fd, 4096).decode(errors="replace").strip()
    except OSError:  # nothing written
        return ""
    finally:
        os.close(fd)


_REASON_FD = -1  # in the job's process: where its one line goes to the launcher


def tell_launcher(reason: str) -> None:
    """In the job's process: ``reason`` is the one line the launcher's :class:`JobFailed` says (the first
    one told; elsewhere a no-op)."""
    global _REASON_FD
    if _REASON_FD >= 0:
        with contextlib.suppress(OSError):
            os.write(_REASON_FD, reason.encode()[:4000])
            os.close(_REASON_FD)
        _REASON_FD = -1


EXHAUSTED_WORKER_EXIT = 71  # a worker process whose thread died of a memory or thread limit
# In a job's processes: the file where a worker process that ends itself writes its line, which the
# launcher's JobFailed then says (the job's own line would name the thread that saw the worker go).
WORKER_REASONS_ENV = "EEGFM_WORKER_REASONS"


def exhaustion_hint(err: BaseException) -> str:
    """What to say of an error that a memory or thread limit causes, or ''. A worker process that
    :func:`end_worker_on_exhaustion` ended is one: Beam's runner says it "exited with return code" 71."""
    text = str(err)
    if (
        isinstance(err, MemoryError)
        or "can't start new thread" in text
        or f"exited with return code {EXHAUSTED_WORKER_EXIT}" in text
    ):
        return " (a memory or thread limit, ulimit -v or -u, too low for this many worker processes?)"
    return ""


def end_worker_on_exhaustion() -> None:
    """In a worker process of the job (Beam's SDK worker, from a DoFn's ``setup``): a thread that dies
    of a memory or thread limit ends the process at once, with one line on its stderr and status
    :data:`EXHAUSTED_WORKER_EXIT`. Without it the worker's other threads wait for that thread's
    answer for ever (a gRPC reader, say), and the runner waits for them. Ended, the worker is seen
    gone, and the job's thread that watches it ends the job (:func:`_end_the_job`); under
    :func:`run_in_own_session` the launcher's :class:`JobFailed` says the worker's line. Other errors
    keep Python's report and the process. A process whose hook is set already (the job's own, where
    a DoFn runs in the job's process) keeps it."""
    if threading.excepthook is not threading.__excepthook__:
        return

    def end(args) -> None:
        if args.exc_value is None or not (hint := exhaustion_hint(args.exc_value)):
            threading.__excepthook__(args)
            return
        name = args.thread.name if args.thread else "?"
        text = " ".join(f"{args.exc_type.__name__}: {args.exc_value}".split())[:300]
        line = f"a thread of worker process {os.getpid()} ({name}) failed: {text}{hint}"
        print(line, file=sys.stderr)
        if path := os.environ.get(WORKER_REASONS_ENV):
            with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        _exit_now(EXHAUSTED_WORKER_EXIT)

    # Python's documented switch for a thread's uncaught exception; Beam offers none of its own.
    threading.excepthook = end


def _lead_a_session(job: Callable[[], None], parent: int, reason_fd: int, worker_reasons: str) -> None:
    global _REASON_FD
    os.setsid()
    _REASON_FD = reason_fd
    os.environ[WORKER_REASONS_ENV] = worker_reasons  # the job's worker processes inherit it
    _die_with(parent)
    threading.excepthook = _end_the_job
    try:
        job()
    except SystemExit as err:
        _exit_now(err.code if isinstance(err.code, int) else 1)
    except BaseException as err:  # an interrupt sent to the job's process alone, say
        tell_launcher(f"{type(err).__name__} in the job's process")
        _exit_now(1)
    _exit_now(0)


def _exit_now(code: int) -> None:
    """End the job's process now: not after Python joins its threads (one waiting on a dead worker
    never ends), nor after freeing a failed job's traceback (a gRPC server's finalizer waits for its
    threads the same way)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _die_with(parent: int) -> None:
    """Kill this process's whole group (itself included) when ``parent`` ends."""
    for signum in (signal.SIGTERM, signal.SIGHUP):  # not the launcher's handlers, inherited by the fork
        signal.signal(signum, lambda *_: os.killpg(0, signal.SIGKILL))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:  # also where the signal's handler would wait on a main thread stuck in C
        while os.getppid() == parent:
            time.sleep(_POLL_S)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def exit_with_parent(parent: int) -> None:
    """End this process (alone: it shares its parent's process group) within a quarter of a second
    of ``parent``'s end, a SIGKILL of the parent included. A thread watches for the parent to
    change: Linux's ``PR_SET_PDEATHSIG`` fires when the parent's *thread* that started this
    process ends, and a pool may start its workers from any of its threads."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _end_the_job(args) -> None:
    """``threading.excepthook`` in the job's process: a thread that died ends the job with its one line."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    text = " ".join(f"{args.exc_type.__name__}: {args.exc_value}".split())[:300]
    tell_launcher(f"a thread of the job ({name}) failed: {text}{exhaustion_hint(args.exc_value)}")
    os._exit(70)  # the launcher ends the rest of the group
