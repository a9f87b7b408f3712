"""Independent jobs of one command side by side: worker processes, each with its share of the
command's threads (``core.threads``), never more workers than threads.

Why: a small network uses a second thread poorly (many small kernels, each a wake-up of the
pool's other thread). Two ``cpu-small`` fine-tuning runs started together on two cores each took
1.13x one alone, and two EEGNet fits of one thread each train 1.33x the windows a second of one
fit on two threads (docs/performance.md): a benchmark's independent fits finish sooner side by side.

- :func:`plan`: the workers and threads each for ``jobs`` jobs out of ``threads`` threads.
- :class:`JobPool`: ``submit(fn, *args)`` returns a future; ``beside(fn, *args)`` runs a driver on
  a thread of the command, one that submits jobs of its own as it goes (EEGNet's search), so that
  its jobs and the command's share the workers. The parts a job marks with
  ``core.stopwatch`` reach the command's recording, as time side by side. A pool of one worker runs
  each job in this process when it is submitted: no process to start, the same threads as before,
  the same order of work, and a failing job's error raised by ``submit`` itself.
- Jobs wait in this process and go to a worker as one falls free: those submitted ``first``
  (the next step of a chain of jobs, such as EEGNet's search, or the pretraining that later runs
  wait for) before the others, each kind in the order submitted. With one queue in submission
  order, a 60-person ``folder`` benchmark's EEGNet search started 9 minutes in, behind every
  fine-tuning run that needs no pretraining, and its later rounds waited behind the ones
  submitted meanwhile: its last 2-4 minutes ran alone on one of the two cores.
- Workers are spawned, not forked (the command already holds torch's and Beam's threads, which a
  fork would copy half-way), with the command's log level and their share of threads in
  ``EEGFM_THREADS`` before they import anything. Each dies with the command, SIGKILL included
  (``process_tree.exit_with_parent``): a job left running would write into a rerun's folder.
- A worker that dies (the kernel's OOM killer, say) fails its job and every job not yet done,
  with an error naming the job; leaving the pool on an error stops the jobs not started and kills
  the running ones rather than waiting for them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from eegfm.core import stopwatch
from eegfm.core.logs import get_logger
from eegfm.core.threads import THREADS_VARIABLE

log = get_logger(__name__)

WAITING = "waiting for jobs side by side"  # the stopwatch's part for the command's wait


@dataclasses.dataclass(frozen=True)
class Plan:
    """``workers`` processes with ``threads`` threads each (1 worker: jobs run in the command)."""

    workers: int
    threads: int

    def describe(self) -> str:
        if self.workers == 1:
            return f"one at a time, {self.threads} thread(s)"
        return f"{self.workers} side by side, {self.threads} thread(s) each"


def plan(jobs: int, threads: int, max_workers: int | None = None) -> Plan:
    """As many workers as there are threads to give each one (at most ``jobs`` and
    ``max_workers``), the threads shared out evenly; the spare ones, if any, go unused rather
    than oversubscribe a core."""
    if threads < 1:
        raise ValueError(f"threads: expected a positive whole number; got {threads}")
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers: expected a positive whole number; got {max_workers}")
    workers = max(1, min(jobs, threads, max_workers or threads))
    return Plan(workers, threads // workers)


class JobPool:
    """Jobs run by :func:`plan`'s workers (see the module docstring). A context manager: leaving it
    waits for the submitted jobs, or, on an error, stops them."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._drivers: list[concurrent.futures.Future] = []  # :meth:`beside`'s
        self._before: set[int] = set()
        self._jobs: list[concurrent.futures.Future] = []  # every job submitted, for leaving the pool
        # Jobs not yet handed to a worker (``first``, then the others) and how many the workers hold:
        # the executor gets one job per free worker, so its own queue never decides the order.
        self._waiting = {True: collections.deque(), False: collections.deque()}
        self._running = 0
        self._lock = threading.RLock()  # re-entered where a job ends as it is handed over

    def __enter__(self) -> JobPool:
        if self.plan.workers > 1:
            self._before = {child.pid for child in multiprocessing.active_children()}
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.plan.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.plan.threads, logging.getLogger().level, os.getpid()),
            )
        log.info("independent jobs: %s", self.plan.describe())
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self._executor is None:
            return
        if kind is None:
            concurrent.futures.wait(self._drivers)  # a driver may still submit jobs
            concurrent.futures.wait(list(self._jobs))
            self._executor.shutdown(wait=True)
            return
        with self._lock:
            for waiting in self._waiting.values():
                for *_, future in waiting:
                    future.cancel()
                waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            if child.pid not in self._before:  # this pool's workers only
                child.kill()
                child.join()

    def submit(self, fn: Callable[..., Any], *args: Any, name: str, first: bool = False) -> concurrent.futures.Future:
        """Run ``fn(*args)`` (a module-level function; its arguments and result picklable); the
        future of its result. ``name``: what an error says the job was; ``first``: it goes to a
        worker before the waiting jobs submitted without it."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._executor is None:  # its error raised here, at once: no later job runs, as before
            future.set_result(fn(*args))
            return future
        times = stopwatch.current()  # the callback runs on the executor's thread, outside this context
        with self._lock:
            self._jobs.append(future)
            self._waiting[first].append((fn, args, name, times, future))
            self._hand_over()
        return future

    def _hand_over(self) -> None:
        """Waiting jobs to the executor while a worker is free; a job cancelled meanwhile is skipped."""
        with self._lock:
            while self._running < self.plan.workers and (queue := self._waiting[True] or self._waiting[False]):
                fn, args, name, times, future = queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    job = self._executor.submit(_recorded, fn, args)
                except (BrokenProcessPool, RuntimeError) as error:  # a worker died, or the pool was left
                    future.set_exception(_named(error, name))
                    continue
                self._running += 1
                job.add_done_callback(lambda done, f=future, n=name, t=times: self._ended(done, f, n, t))

    def _ended(self, done, future: concurrent.futures.Future, name: str, times) -> None:
        with self._lock:
            self._running -= 1
            _deliver(done, future, name, times)
            self._hand_over()

    def beside(self, fn: Callable[..., Any], *args: Any, name: str) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on a thread of this command, beside its own work: a driver whose jobs
        go to this pool as it needs them (a search that submits its next jobs once the first end),
        side by side with the jobs the command submits meanwhile. The parts its jobs record reach
        the command's recording as side by side; its waits for them do not count (the command's
        own parts cover that time). ``fn`` must leave torch's global random state alone, which the
        command's thread may be using. With one worker it runs here and now, as :meth:`submit` runs
        a job."""
        if self._executor is None:
            return self.submit(fn, *args, name=name)
        future: concurrent.futures.Future = concurrent.futures.Future()
        outer = stopwatch.current()

        def drive() -> None:
            try:
                with stopwatch.recording() as inner:
                    result = fn(*args)
            except BaseException as error:  # the caller meets it in the future's result
                future.set_exception(error)
                return
            if outer is not None:
                outer.add_overlapping(inner.as_dict(), leave_out=(WAITING,))
            future.set_result(result)

        # A daemon: a command leaving on an error stops the driver's jobs and need not wait for it.
        threading.Thread(target=drive, name=name, daemon=True).start()
        self._drivers.append(future)
        return future

    def results(self, futures: list[concurrent.futures.Future]) -> list[Any]:
        """Each future's result, in order; the first job to fail raises its error as soon as it
        fails, not after the jobs before it end. The wait, where jobs run in workers, counts to
        the stopwatch's "waiting for jobs side by side"."""
        if self._executor is None:
            return [future.result() for future in futures]
        with stopwatch.part(WAITING):
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            failed = [f for f in done if not f.cancelled() and f.exception() is not None]
            if failed:
                raise failed[0].exception()
            return [future.result() for future in futures]


def _deliver(done, future: concurrent.futures.Future, name: str, times: stopwatch.PartTimes | None) -> None:
    """A worker's outcome into ``future``; the parts the job recorded into ``times``."""
    if done.cancelled():  # the pool was left on an error: ``future`` is running, so it fails
        future.set_exception(concurrent.futures.CancelledError(f"{name}: cancelled"))
        return
    error = done.exception()
    if error is not None:
        future.set_exception(_named(error, name) if isinstance(error, BrokenProcessPool) else error)
        return
    result, parts = done.result()
    if times is not None:
        times.add_overlapping(parts)
    future.set_result(result)


def _named(error: Exception, name: str) -> RuntimeError:
    if not isinstance(error, BrokenProcessPool):
        return RuntimeError(f"{name}: {error}")
    return RuntimeError(f"{name}: its worker process died ({error}); out of memory? try --workers 1")


def _recorded(fn: Callable[..., Any], args: tuple) -> tuple[Any, dict]:
    """In a worker: ``fn(*args)`` and the parts it marked."""
    with stopwatch.recording() as times:
        result = fn(*args)
    return result, times.as_dict()


def _start_worker(threads: int, log_level: int, parent: int) -> None:
    """A worker's first call, before it imports a job's modules: its threads, logging, fate."""
    os.environ[THREADS_VARIABLE] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from eegfm.core import process_tree
    from eegfm.core.allocator import keep_freed_memory
    from eegfm.core.logs import setup_logging
    from eegfm.core.threads import fair_threads

    process_tree.exit_with_parent(parent)
    fair_threads()
    keep_freed_memory()  # a pool's jobs train networks: core/allocator.py
    setup_logging(log_level)
