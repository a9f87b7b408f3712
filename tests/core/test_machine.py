"""core.machine: the cores this process may use, and the line each command logs about them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from eegfm.core.machine import Cpus, CpuUse, cgroup_cpu_limit, cpu_use_line, omp_threads, waiting_threads
from tests.conftest import REPO_ROOT


def test_the_cores_are_this_process_affinity_within_the_machine_and_its_quota():
    here = Cpus.here()
    assert here.total <= (os.cpu_count() or 1) and here.total <= (cgroup_cpu_limit() or here.total)
    assert here.usable == min(here.total, len(os.sched_getaffinity(0)))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to bind a process to one")
def test_a_process_bound_to_one_core_counts_one():
    """Bound as taskset or a launcher binds it: nothing patched, the kernel's own affinity mask."""
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
    code += "from eegfm.core.machine import Cpus; c = Cpus.here(); print(c.usable, c.bound, c.per_rank)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True", "1"]


def test_a_launchers_local_ranks_share_an_unbound_machine(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert Cpus.here().local_ranks == 3
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    assert Cpus.here().local_ranks == 2


@pytest.mark.parametrize(
    "cpus, per_rank, described",
    [
        (Cpus(16, 16), 16, "16 CPUs / 1 local rank(s)"),
        (Cpus(96, 96, 8), 12, "96 CPUs / 8 local rank(s)"),
        (Cpus(4, 64, 8), 4, "4 CPUs bound to this rank"),  # mpirun's binding
        (Cpus(2, 2, 4), 1, "2 CPUs / 4 local rank(s)"),  # more ranks than cores: one each
    ],
)
def test_each_rank_gets_its_binding_or_its_share(cpus, per_rank, described):
    assert cpus.per_rank == per_rank and cpus.describe() == described


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"cpu.max": "800000 100000\n"}, 8),  # cgroup v2: a Kubernetes limit of 8 CPUs
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),  # cgroup v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 2),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_a_container_cpu_quota_limits_the_machine(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(str(tmp_path)) == expected


@pytest.mark.parametrize("value, expected", [("4", 4), (" 2\n", 2), ("0", None), ("-1", None), ("two", None)])
def test_omp_num_threads_is_kept_where_it_is_a_positive_count(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert omp_threads() == expected
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert omp_threads() is None


def test_the_line_names_each_count_and_the_option_that_changes_it():
    uses = [
        CpuUse(2, "torch thread", "--threads N"),
        CpuUse(1, "loader worker", "--set loader.num_workers=N"),
    ]
    assert cpu_use_line(2, uses) == (
        "using 2 CPU cores: 2 torch threads (--threads N to change), "
        "1 loader worker (--set loader.num_workers=N to change); " + waiting_threads()
    )
    given = [
        CpuUse(3, "torch thread", "--threads N", "--threads", "per worker"),
        CpuUse(1, "torch thread", "--threads N", "OMP_NUM_THREADS"),
        CpuUse(0, "loader worker", "--set loader.num_workers=N", "loader.num_workers"),
    ]
    assert cpu_use_line(1, given, "1 CPUs bound to this rank") == (
        "using 1 CPU core (1 CPUs bound to this rank): 3 torch threads per worker (from --threads), "
        "1 torch thread (from OMP_NUM_THREADS; --threads N to change), "
        "0 loader workers (from loader.num_workers; --set loader.num_workers=N to change); " + waiting_threads()
    )


def test_the_line_says_whether_waiting_threads_sleep(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert waiting_threads() == "waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert waiting_threads() == "waiting threads spin before sleeping (OMP_WAIT_POLICY=unset)"
