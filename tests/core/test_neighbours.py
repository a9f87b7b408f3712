"""core.neighbours: the cores a process's neighbours keep busy, measured from the machine's and
the container's CPU accounting, and the threads they leave."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from eegfm.core.neighbours import (
    FIRST_PERIOD_S,
    IGNORED_CORES,
    NeighbourWatch,
    cgroup_busy_s,
    free_threads,
    machine_busy_s,
    own_busy_s,
)

SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


@pytest.mark.parametrize(
    "total, share, others, expected",
    [
        (2, 2, 0.0, 2),  # alone
        (2, 2, 0.2, 2),  # a background under IGNORED_CORES costs no thread
        (2, 2, 1.0, 1),  # a busy neighbour: the core it leaves
        (2, 2, 1.5, 1),  # three busy neighbours on two cores: never fewer than one
        (2, 2, 7.0, 1),
        (16, 4, 2.0, 4),  # never more than the process's share
        (16, 16, 5.4, 10),
    ],
)
def test_the_threads_are_the_cores_the_others_leave(total, share, others, expected):
    assert free_threads(total, share, others) == expected


def test_a_neighbour_just_under_the_ignored_share_costs_no_thread():
    assert free_threads(4, 4, IGNORED_CORES - 0.01) == 4
    assert free_threads(4, 4, IGNORED_CORES + 0.01) == 3


def test_own_time_counts_the_children_and_the_machine_counts_everyone():
    machine, mine = machine_busy_s(), own_busy_s()
    child = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=1.0)])
    try:
        while child.poll() is None:
            time.sleep(0.05)
            during = own_busy_s()  # while it runs: a live child's CPU time is this process's too
    finally:
        child.wait()
    assert during - mine >= 0.5
    assert machine_busy_s() - machine >= 0.9  # the child's second, whatever else runs beside it


def test_a_watch_reads_the_cores_the_others_kept_busy():
    now, busy, own = [10.0], [100.0], [5.0]
    watch = NeighbourWatch(8, 8, period_s=2.0, busy=lambda: busy[0], own=lambda: own[0], clock=lambda: now[0])
    assert watch.threads() is None and watch.others_busy is None  # it read at its start: no period yet
    now[0], busy[0], own[0] = 12.0, 110.0, 9.0  # 10 core-seconds busy, 4 of them its own
    assert watch.threads() == 5 and watch.others_busy == pytest.approx(3.0)
    now[0] = 13.0
    assert watch.threads() is None  # within the period
    unreadable = NeighbourWatch(8, 8, busy=lambda: None)
    assert unreadable.threads() is None and unreadable.threads() is None


def test_the_first_decision_comes_a_quarter_second_after_the_start():
    now, busy = [0.0], [0.0]
    watch = NeighbourWatch(2, 2, busy=lambda: busy[0], own=lambda: 0.0, clock=lambda: now[0])  # reads at the start
    now[0], busy[0] = FIRST_PERIOD_S, FIRST_PERIOD_S  # a copy started with it kept a core busy since
    assert watch.threads() == 1
    now[0] += FIRST_PERIOD_S  # then once a period
    assert watch.threads() is None


def test_the_container_accounting_is_read_from_cgroup_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert cgroup_busy_s(str(v2)) == 2.5
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpuacct.usage").write_text("1500000000\n")
    assert cgroup_busy_s(str(tmp_path / "v1")) == 1.5
    assert cgroup_busy_s(str(tmp_path / "none")) is None
