"""Jobs side by side: the plan never gives more workers than threads, workers run in their own
processes with their share of threads, their stopwatch parts reach the command's recording, an
error or a dead worker reaches the caller with the job's name (no hang), leaving on an error kills
the running jobs, a driver on a thread shares the workers without its waits counted, and a
worker ends with the command that started it, SIGKILL included."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from eegfm.core import stopwatch
from eegfm.core.job_pool import JobPool, Plan, plan


def where_am_i(seconds: float) -> tuple[int, str]:
    with stopwatch.part("work", "a job"):
        time.sleep(seconds)
    return os.getpid(), os.environ.get("EEGFM_THREADS", "")


def started_at(seconds: float) -> float:
    begun = time.time()
    time.sleep(seconds)
    return begun


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_plan_gives_each_worker_its_share_and_never_more_workers_than_threads():
    assert plan(11, 2) == Plan(2, 1)
    assert plan(11, 16) == Plan(11, 1)
    assert plan(4, 16) == Plan(4, 4)
    assert plan(3, 8) == Plan(3, 2)  # two threads spare rather than a core oversubscribed
    assert plan(11, 16, max_workers=4) == Plan(4, 4)
    assert plan(5, 1) == Plan(1, 1) and plan(0, 4) == Plan(1, 4)
    with pytest.raises(ValueError, match="threads"):
        plan(2, 0)
    with pytest.raises(ValueError, match="max_workers"):
        plan(2, 2, max_workers=0)


def test_one_worker_runs_each_job_here_when_submitted():
    with stopwatch.recording() as times, JobPool(plan(3, 1)) as pool:
        futures = [pool.submit(where_am_i, 0.01, name="job") for _ in range(3)]
        assert all(f.done() for f in futures)
        results = pool.results(futures)
    assert {pid for pid, _ in results} == {os.getpid()}
    assert times.items["work", "a job"].calls == 3 and not times.overlapping


def test_workers_run_side_by_side_with_their_share_of_threads_and_report_their_parts():
    with stopwatch.recording() as times, JobPool(Plan(2, 1)) as pool:
        started = time.perf_counter()
        results = pool.results([pool.submit(where_am_i, 1.0, name=f"job {i}") for i in range(2)])
        waited = time.perf_counter() - started
    pids = {pid for pid, _ in results}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {threads for _, threads in results} == {"1"}
    assert waited < 1.9 + 3.0  # side by side (spawning the two workers takes a few seconds here)
    assert times.items["work", "a job"].calls == 2 and times.items["work", "a job"].seconds >= 2.0
    assert "work" in times.overlapping and times.groups["waiting for jobs side by side"].seconds > 0.9
    assert "side by side" in times.table()


def two_jobs(pool: JobPool) -> list[tuple[int, str]]:
    """A driver: two jobs of its own, awaited."""
    return pool.results([pool.submit(where_am_i, 0.5, name=f"driven {i}") for i in range(2)])


def test_a_driver_beside_the_command_shares_the_workers_and_only_the_command_s_wait_counts():
    with stopwatch.recording() as times, JobPool(Plan(2, 1)) as pool:
        driven = pool.beside(two_jobs, pool, name="driver")
        assert not driven.done()  # a thread of its own: the command goes on at once
        own = pool.results([pool.submit(where_am_i, 0.5, name="the command's job")])
        results = driven.result()
    assert len({pid for pid, _ in results + own}) == 2 and os.getpid() not in {pid for pid, _ in results}
    assert times.items["work", "a job"].calls == 3 and "work" in times.overlapping
    assert times.groups["waiting for jobs side by side"].calls == 1  # the driver's waits are not the command's
    with JobPool(Plan(2, 1)) as pool:
        failed = pool.beside(fail, "a bad driver", name="driver")
        with pytest.raises(ValueError, match="a bad driver"):
            failed.result(timeout=10)
    with JobPool(plan(2, 1)) as pool:  # one worker: the driver runs here and now, its jobs too
        assert {pid for pid, _ in pool.beside(two_jobs, pool, name="driver").result(timeout=0)} == {os.getpid()}


def test_a_job_error_and_a_dead_worker_reach_the_caller_with_the_job_named():
    with JobPool(Plan(1, 1)) as pool, pytest.raises(ValueError, match="a bad recording"):
        pool.submit(fail, "a bad recording", name="job one")  # here: raised at once, nothing after it runs
    started = time.perf_counter()
    with pytest.raises(ValueError, match="a bad recording"), JobPool(Plan(2, 1)) as pool:
        slow = pool.submit(where_am_i, 60.0, name="a long job")
        pool.results([slow, pool.submit(fail, "a bad recording", name="job one")])
    assert time.perf_counter() - started < 20  # raised when it failed, not after the long job before it
    with pytest.raises(RuntimeError, match="fine-tuning x seed 0: its worker process died"):
        with JobPool(Plan(2, 1)) as pool:
            pool.results([pool.submit(die, name="fine-tuning x seed 0")])


def test_jobs_submitted_first_go_to_a_free_worker_before_the_others_waiting():
    """Both workers busy, two jobs waiting, then one submitted ``first``: the worker that falls
    free takes it before them, and they follow in the order submitted."""
    with JobPool(Plan(2, 1)) as pool:
        busy = [pool.submit(started_at, seconds, name=f"busy {seconds}") for seconds in (1.0, 8.0)]
        later = [pool.submit(started_at, 0.2, name=name) for name in ("a", "b")]
        urgent = pool.submit(started_at, 0.2, name="the next step of a chain", first=True)
        starts = pool.results([*busy, urgent, *later])
    assert starts[2] < starts[3] < starts[4] < starts[1] + 8.0, starts


def test_leaving_on_an_error_kills_the_running_jobs_at_once():
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), JobPool(Plan(2, 1)) as pool:
        future = pool.submit(where_am_i, 60.0, name="a long job")
        time.sleep(4.0)  # the worker has started the job
        raise KeyboardInterrupt
    assert time.perf_counter() - started < 20
    assert not multiprocessing.active_children()  # the worker was killed, not waited for
    assert not future.done() or future.cancelled() or future.exception() is not None


def test_a_worker_ends_with_the_command_that_started_it_even_after_sigkill(tmp_path):
    script = tmp_path / "command.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from eegfm.core.job_pool import JobPool, Plan
            from tests.core.test_job_pool import where_am_i
            if __name__ == "__main__":
                with JobPool(Plan(2, 1)) as pool:
                    pid, _ = pool.submit(where_am_i, 0.0, name="quick").result()
                    print(pid, flush=True)
                    pool.submit(where_am_i, 120.0, name="long").result()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(command.stdout.readline())
    assert _alive(worker)
    command.kill()
    command.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)
