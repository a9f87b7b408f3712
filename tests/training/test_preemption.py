import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from eegfm.training.preemption import PreemptionHandler

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


_PREEMPTED_LOOP = """
import signal, sys, time
from eegfm.training.preemption import PreemptionHandler

with PreemptionHandler() as preemption:
    print("ready", flush=True)
    for step in range(2000):
        if preemption.requested:
            print(f"stopping at step {step} on {preemption.received.name}", flush=True)
            break
        time.sleep(0.01)
print("restored", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
"""


def test_sigterm_sets_the_flag_and_the_loop_exits_cleanly():
    process = _run_python(_PREEMPTED_LOOP)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "on SIGTERM" in output and "restored True" in output


def test_second_signal_goes_to_the_previous_handler_and_close_restores_it():
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    original = signal.signal(signal.SIGUSR1, previous)
    try:
        with PreemptionHandler(signals=(signal.SIGUSR1,)) as preemption:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert preemption.requested and calls == []
            os.kill(os.getpid(), signal.SIGUSR1)
            assert calls == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is previous
        with PreemptionHandler(signals=(signal.SIGUSR1,)):
            assert signal.getsignal(signal.SIGUSR1) is not previous
        assert signal.getsignal(signal.SIGUSR1) is previous
    finally:
        signal.signal(signal.SIGUSR1, original)


def test_a_forked_child_ignores_sigint_and_dies_of_sigterm_as_without_the_handler():
    # Loader workers are forked while the handler is installed: Ctrl-C is the training process's
    # to handle, and a worker that DataLoader terminates must end.
    with PreemptionHandler() as preemption:
        statuses = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            pid = os.fork()
            if pid == 0:
                try:
                    os.kill(os.getpid(), signum)
                    time.sleep(0.05)  # the handler runs between bytecodes
                finally:
                    os._exit(7)
            statuses[signum] = os.waitpid(pid, 0)[1]
        assert not preemption.requested
    assert os.WIFEXITED(statuses[signal.SIGINT]) and os.WEXITSTATUS(statuses[signal.SIGINT]) == 7
    assert os.WIFSIGNALED(statuses[signal.SIGTERM]) and os.WTERMSIG(statuses[signal.SIGTERM]) == signal.SIGTERM
