"""One process tree, one fate (``core.process_tree``): a launcher running a job in a session of its own,
the job starting a worker process as Beam's runner does; whatever ends the launcher ends them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eegfm.core.process_tree import (
    EXHAUSTED_WORKER_EXIT,
    JobFailed,
    JobStalled,
    StallWatchdog,
    Stopped,
    exhaustion_hint,
    group_members,
    run_in_own_session,
)

# The launcher: SIGTERM/SIGHUP (and Ctrl-C) end it with 128 + the signal's number, as a shell reports it.
_LAUNCHER = """
import signal, subprocess, sys
from pathlib import Path
from eegfm.core.process_tree import Stopped, run_in_own_session, stop_on_signals

# Ctrl-C as a shell gives a command: the test runner may ignore or block SIGINT.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

def job(path):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # as Beam starts one
    Path(path).write_text(f"{__import__('os').getpid()} {worker.pid}")
    worker.wait()

try:
    with stop_on_signals():
        run_in_own_session(lambda: job(sys.argv[1]))
except Stopped as err:
    sys.exit(128 + err.signum)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except FileNotFoundError:
        return False


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(map(_alive, pids))


def _started(marker: Path) -> tuple[subprocess.Popen, list[int]]:
    # Its own process group: a signal sent to the launcher's pid reaches it alone.
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(marker)], start_new_session=True)
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert launcher.poll() is None and time.monotonic() < deadline, "the job started no worker"
        time.sleep(0.02)
    return launcher, [int(pid) for pid in marker.read_text().split()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_the_launcher_alone_ends_the_job_and_its_worker(tmp_path, signum):
    launcher, (job, worker) = _started(tmp_path / "pids")
    os.kill(launcher.pid, signum)  # issue 78 #1: SIGTERM ended the launcher (143) and left the job running
    assert launcher.wait(timeout=30) == 128 + signum
    # The launcher returns once its job's processes are gone: none is left to write after it.
    assert not _alive(job) and not _alive(worker)
    assert group_members(job) == []


def test_the_launchers_death_ends_the_job_and_its_worker(tmp_path):
    launcher, (job, worker) = _started(tmp_path / "pids")
    os.kill(launcher.pid, signal.SIGKILL)  # no handler runs: the job sees its parent go
    launcher.wait(timeout=30)
    assert _gone_within([job, worker], 5.0)


_THREAD_UNDER_A_LIMIT = """
import resource, sys, threading
from eegfm.core.process_tree import JobFailed, run_in_own_session

def job():
    go = threading.Event()

    def starts_a_thread():  # as Beam's gRPC server starts one per call
        go.wait()
        threading.Thread(target=lambda: None).start()

    threading.Thread(target=starts_a_thread, name="serve").start()
    with open("/proc/self/status") as fh:
        size = next(int(line.split()[1]) for line in fh if line.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    go.set()
    threading.Event().wait()  # the runner waits for the thread's work for ever

try:
    run_in_own_session(job)
except JobFailed as err:
    print(err.exitcode, err.reason)
"""


def test_a_thread_that_cannot_start_under_a_memory_limit_fails_the_job_with_one_line():
    # Issue 78 #2: under ulimit -v Beam could not start a thread and the run hung for ever.
    done = subprocess.run([sys.executable, "-c", _THREAD_UNDER_A_LIMIT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        "70 a thread of the job (serve) failed: RuntimeError: can't start new thread (a memory or thread "
        "limit, ulimit -v or -u, too low for this many worker processes?)"
    )


_WORKER_UNDER_A_LIMIT = """
import resource, threading
from eegfm.core.process_tree import end_worker_on_exhaustion

end_worker_on_exhaustion()
parse = threading.Thread(target=lambda: int("not a number"), name="parse")  # Python's report; the worker lives
parse.start()
parse.join()
go = threading.Event()

def reads():  # as a worker's gRPC reader starts a thread per stream
    go.wait()
    for _ in range(3):  # the first may take the stack the parse thread left
        threading.Thread(target=threading.Event().wait, daemon=True).start()

threading.Thread(target=reads, name="read_inputs").start()
with open("/proc/self/status") as fh:
    size = next(int(line.split()[1]) for line in fh if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
go.set()
threading.Event().wait(120)  # the worker waits for what the reader would have read
"""


def test_a_worker_whose_thread_dies_of_a_memory_limit_ends_at_once_with_one_line():
    # A thread of a Beam worker process that died under ulimit -v left the run waiting for the
    # stall watchdog: nothing in the worker ends it.
    done = subprocess.run([sys.executable, "-c", _WORKER_UNDER_A_LIMIT], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXHAUSTED_WORKER_EXIT, done.stderr[-2000:]
    assert "ValueError: invalid literal" in done.stderr  # another error: reported as Python reports it
    assert done.stderr.strip().splitlines()[-1] == (
        f"a thread of worker process {done.stderr.rsplit('worker process ', 1)[1].split()[0]} (read_inputs) "
        "failed: RuntimeError: can't start new thread (a memory or thread limit, ulimit -v or -u, too low "
        "for this many worker processes?)"
    )
    # Beam's runner reports such a worker by its status, and the job's line says why.
    assert exhaustion_hint(RuntimeError(f"Worker subprocess exited with return code {EXHAUSTED_WORKER_EXIT}"))
    assert not exhaustion_hint(RuntimeError("Worker subprocess exited with return code 1"))


def _idle() -> None:
    time.sleep(60)


def _busy() -> None:
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        pass


def test_a_job_that_makes_no_progress_is_stopped_and_a_busy_one_is_not():
    start = time.monotonic()
    with pytest.raises(JobStalled, match=r"no progress for \d s: no input finished, 0\.\d s of CPU"):
        run_in_own_session(_idle, StallWatchdog(1.0))
    assert time.monotonic() - start < 20
    run_in_own_session(_busy, StallWatchdog(1.0))  # a whole core: progress


def test_a_failed_job_is_reported_with_its_exit_status():
    with pytest.raises(JobFailed, match="exit status 3"):
        run_in_own_session(lambda: sys.exit(3))


def test_a_stop_keeps_its_signal_when_beam_adds_its_step_to_the_message():
    again = type(Stopped(signal.SIGTERM))("SIGTERM [while running 'ProcessRecordings']")
    assert isinstance(again, KeyboardInterrupt) and again.signum == signal.SIGTERM
