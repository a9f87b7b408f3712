"""core.threads: waiting threads sleep, and one count of threads per process, overridable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eegfm.core.machine import Cpus
from eegfm.core.threads import (
    SLEEP_WHILE_WAITING,
    THREADS_VARIABLE,
    at_most,
    fair_threads,
    pool_threads,
    process_threads,
    sleep_while_waiting,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_wait_switches_are_set_where_the_user_has_not():
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}  # the user's: kept
    chosen = sleep_while_waiting(environ)
    assert environ["OMP_WAIT_POLICY"] == "ACTIVE" and "OMP_WAIT_POLICY" not in chosen
    assert environ["GOMP_SPINCOUNT"] == "1000" and environ["KMP_BLOCKTIME"] == "0" == chosen["KMP_BLOCKTIME"]


def test_importing_eegfm_sets_them_before_any_library_loads_its_openmp():
    """The console scripts' modules import torch and numpy at their top: the package's import runs
    first, so the switches are there when the runtimes read them."""
    env = {k: v for k, v in os.environ.items() if k not in SLEEP_WHILE_WAITING}
    probe = "import os, sys, eegfm; print(sorted({'torch', 'numpy'} & set(sys.modules)), os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**env, "PYTHONPATH": str(SRC)}, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["[]", "PASSIVE"]


def test_threads_come_from_the_option_then_the_variable_then_omp_then_the_cores(monkeypatch):
    monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = Cpus(4, 8, 1)
    assert (process_threads(None, cpus).count, process_threads(None, cpus).given_by) == (4, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert (process_threads(None, cpus).count, process_threads(None, cpus).given_by) == (2, "OMP_NUM_THREADS")
    assert pool_threads(cpus).count == 4  # torchrun's OMP_NUM_THREADS=1 counts intra-op threads, not workers
    monkeypatch.setenv(THREADS_VARIABLE, "3")
    assert (process_threads(None, cpus).count, process_threads(None, cpus).given_by) == (3, THREADS_VARIABLE)
    assert pool_threads(cpus).count == 3
    assert (process_threads(1, cpus).count, process_threads(1, cpus).given_by) == (1, "--threads")


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(THREADS_VARIABLE, value)
    with pytest.raises(ValueError, match=THREADS_VARIABLE):
        process_threads()


def test_fair_threads_limits_the_loaded_libraries(monkeypatch):
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads(), max((p["num_threads"] for p in threadpool_info()), default=1)
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    try:
        assert fair_threads().count == 1
        assert torch.get_num_threads() == 1 and torch.get_num_interop_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    finally:
        torch.set_num_threads(before[0])
        threadpool_limits(limits=before[1], user_api="blas")


def test_at_most_holds_torch_and_blas_to_the_count_inside_the_block_only():
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    torch.set_num_threads(2)
    threadpool_limits(limits=2, user_api="blas")
    try:
        before = blas()
        with at_most(1):
            assert torch.get_num_threads() == 1 and blas() <= {1}
        assert torch.get_num_threads() == 2 and blas() == before
    finally:
        fair_threads()  # the process's own count again
