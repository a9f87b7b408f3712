"""training.cpu_use: a training rank's torch threads beside its loader workers, from the machine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from eegfm.core.machine import Cpus
from eegfm.core.neighbours import NeighbourWatch
from eegfm.training import cpu_use
from eegfm.training.cpu_use import follow_neighbours, rank_threads, set_rank_threads, use_cpus


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    cpu_use._watch["rank"] = None


@pytest.mark.parametrize(
    "share, workers, expected",
    [
        (2, 0, 2),  # CPU on two cores: no worker (auto), the step takes both
        (4, 1, 3),  # never more threads and workers than cores
        (1, 0, 1),
        (16, 15, 1),  # GPU: the cores the loader workers leave
        (32, 8, 24),  # workers capped by memory or the corpus: the rest go to the rank
        (4, 4, 1),
    ],
)
def test_a_rank_threads_are_the_cores_its_workers_leave(share, workers, expected):
    assert rank_threads(share, workers) == expected


def test_the_threads_come_from_the_machine_unless_given(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("EEGFM_THREADS", raising=False)
    here = Cpus.here()
    use = set_rank_threads("auto", 0, here)
    assert use.count == torch.get_num_threads() == here.per_rank and use.given_by is None
    assert torch.get_num_interop_threads() == 1  # a command's parallelism is its intra-op threads
    assert set_rank_threads(1, 1, here).given_by == "--threads" and torch.get_num_threads() == 1
    monkeypatch.setenv("EEGFM_THREADS", "3")  # the process's whole share: the worker's core comes out of it
    use = set_rank_threads("auto", 1, Cpus(8, 8))
    assert (use.count, use.given_by, torch.get_num_threads()) == (2, "EEGFM_THREADS", 2)
    monkeypatch.delenv("EEGFM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's, or torchrun's for several ranks: kept
    use = set_rank_threads("auto", 1, Cpus(8, 8))
    assert (use.count, use.given_by, torch.get_num_threads()) == (1, "OMP_NUM_THREADS", 1)


def test_one_line_says_how_the_rank_uses_its_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("EEGFM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    auto = SimpleNamespace(config=SimpleNamespace(num_workers=1), auto_workers=True)
    line = use_cpus("auto", auto, torch.device("cpu"), Cpus(3, 3))
    assert line == (
        "using 3 CPU cores: 2 torch threads (--threads N to change), "
        "1 loader worker (--set loader.num_workers=N to change); waiting threads sleep (OMP_WAIT_POLICY=PASSIVE); "
        "fewer torch threads while other processes keep cores busy"
    )
    given = SimpleNamespace(config=SimpleNamespace(num_workers=0), auto_workers=False)
    line = use_cpus(1, given, torch.device("cpu"), Cpus(8, 16, 2))
    assert line == (
        "using 8 CPU cores (8 CPUs bound to this rank): 1 torch thread (from --threads), "
        "0 loader workers (from loader.num_workers; --set loader.num_workers=N to change); "
        "waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)"
    )


def test_only_threads_from_the_machine_follow_the_neighbours(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("EEGFM_THREADS", raising=False)
    set_rank_threads("auto", 1, Cpus(4, 4))
    watch = cpu_use._watch["rank"]
    assert (watch.total, watch.share) == (3, 3)  # the loader worker's core is not the step's to take
    set_rank_threads(2, 0, Cpus(4, 4))  # --threads: a count the user fixed, whatever the neighbours do
    assert cpu_use._watch["rank"] is None
    set_rank_threads("auto", 0, Cpus(2, 4))  # bound by a launcher or taskset: its cores are its own
    assert cpu_use._watch["rank"] is None
    set_rank_threads("auto", 0, Cpus(4, 4, local_ranks=2))  # the launcher's ranks split the machine
    assert cpu_use._watch["rank"] is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    set_rank_threads("auto", 0, Cpus(4, 4))
    assert cpu_use._watch["rank"] is None


def test_the_threads_step_down_for_a_busy_neighbour_and_back_up_when_it_goes():
    now, busy, own = [0.0], [0.0], [0.0]
    cpu_use._watch["rank"] = NeighbourWatch(4, 4, busy=lambda: busy[0], own=lambda: own[0], clock=lambda: now[0])
    torch.set_num_threads(4)

    def second(neighbours: float, mine: float) -> None:
        now[0] += 1.0
        busy[0] += neighbours + mine
        own[0] += mine
        follow_neighbours()

    follow_neighbours()  # the first look: nothing to compare with yet
    second(0.1, 3.9)  # a shell's background: no thread lost
    assert torch.get_num_threads() == 4
    second(2.0, 3.0)  # two busy neighbours on the four cores
    assert torch.get_num_threads() == 2
    now[0] += 0.5  # within the period: no new look
    follow_neighbours()
    assert torch.get_num_threads() == 2
    second(0.0, 2.0)  # they ended
    assert torch.get_num_threads() == 4
