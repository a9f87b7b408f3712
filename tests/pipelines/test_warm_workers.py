from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eegfm.pipelines.warm_workers import Zygote, worker_command, zygote_for
from eegfm.pipelines.worker_launcher import ZYGOTE_ENV

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="warm workers need fork")


def _launch(zygote: Zygote | None, env: dict[str, str]) -> subprocess.Popen:
    """Start the launcher the way Beam starts a worker command: through a shell, env copied."""
    full = dict(os.environ, **env)
    if zygote is None:
        full.pop(ZYGOTE_ENV, None)
    return subprocess.Popen(worker_command(), shell=True, env=full)


def _record_env(path: str, code: int):
    def target(env: dict[str, str]) -> None:
        with open(path, "w") as fh:
            json.dump({"env": env, "pid": os.getpid(), "ppid": os.getppid()}, fh)
        sys.exit(code)
    return target


def test_launcher_hands_beams_environment_to_a_forked_worker_and_returns_its_status(tmp_path):
    seen = tmp_path / "seen.json"
    zygote = Zygote(target=_record_env(str(seen), 3))
    try:
        env = {"CONTROL_API_SERVICE_DESCRIPTOR": "url: 'localhost:1234'", "WORKER_ID": "worker_7",
               "PIPELINE_OPTIONS": "{}", "LOGGING_API_SERVICE_DESCRIPTOR": "url: 'localhost:1235'",
               "UNRELATED": "not passed"}
        launcher = _launch(zygote, env)
        assert launcher.wait(60) == 3
        got = json.loads(seen.read_text())
        assert got["ppid"] == zygote.pid  # forked by the zygote, not started by the shell
        assert got["env"] == {k: v for k, v in env.items() if k != "UNRELATED"}
    finally:
        zygote.close()
    assert not os.path.exists(zygote.address) and ZYGOTE_ENV not in os.environ


def _sleep_forever(path: str):
    def target(env: dict[str, str]) -> None:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(600)
    return target


def _gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _pid_in(path, seconds: float = 30.0) -> int:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the worker never started")


def test_killing_the_launcher_kills_its_worker_and_closing_the_zygote_ends_the_rest(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    zygote = Zygote(target=_sleep_forever(str(first)))
    try:
        launcher = _launch(zygote, {"WORKER_ID": "1"})
        worker = _pid_in(first)
        launcher.kill()  # what Beam does to a worker process it gives up on
        launcher.wait(10)
        assert _gone(worker)
    finally:
        zygote.close()

    zygote = Zygote(target=_sleep_forever(str(second)))
    launcher = _launch(zygote, {"WORKER_ID": "2"})
    worker = _pid_in(second)
    zygote.close()  # the job ends: its zygote takes any worker left with it
    assert _gone(worker) and _gone(zygote.pid)
    assert launcher.wait(10) != 0


def test_without_a_zygote_the_launcher_becomes_beams_own_worker(tmp_path):
    # No zygote address: the launcher execs Beam's sdk_worker_main, which fails fast without
    # a control address; the point is that it ran Beam's worker, not that it hung or vanished.
    launcher = subprocess.run(worker_command(), shell=True, capture_output=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != ZYGOTE_ENV})
    assert launcher.returncode != 0
    assert b"CONTROL_API_SERVICE_DESCRIPTOR" in launcher.stderr or b"sdk_worker_main" in launcher.stderr


def test_no_zygote_unless_multi_processing_enabled_and_single_threaded():
    with zygote_for(False) as zygote:
        assert zygote is None
    with zygote_for(True, enabled=False) as zygote:
        assert zygote is None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with zygote_for(True) as zygote:
            assert zygote is None  # forking a process with other threads running is unsafe
    finally:
        stop.set()
        thread.join()


def test_zygote_starts_in_a_single_threaded_job_and_is_gone_after_it():
    # A fresh interpreter, like the job's: pytest's own process has threads from other tests.
    code = (
        "import os\n"
        "from eegfm.pipelines.warm_workers import zygote_for\n"
        "from eegfm.pipelines.worker_launcher import ZYGOTE_ENV\n"
        "with zygote_for(True) as zygote:\n"
        "    assert zygote is not None and os.environ[ZYGOTE_ENV] == zygote.address\n"
        "    os.kill(zygote.pid, 0)\n"
        "assert ZYGOTE_ENV not in os.environ and not os.path.exists(zygote.address)\n"
        "try:\n"
        "    os.kill(zygote.pid, 0)\n"
        "except ProcessLookupError:\n"
        "    print('zygote gone')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "zygote gone"
